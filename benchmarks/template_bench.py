"""Benchmark of rendering conversations for a checkpoint that ships its own chat template.

``glmv pack`` renders records with glmv's Python renderer (``chat.chat_arrays``) for its presets and
with the checkpoint's jinja template otherwise (``template.ChatFormat``), carrying glmv's labels over
to the template's text. This measures, in the same run and on the same records, the cost per record
of ids + labels for:

- ``glmv``: glmv's renderer (the baseline, what a preset pays);
- ``template_equal``: the published GLM-4.5V-layout template, single-turn records (its text equals
  glmv's, so the labels are taken over as they are: one jinja render + a string compare);
- ``template_realigned``: the published GLM-4.1V-layout template on two-turn records whose first
  answer keeps its thinking (the texts differ: jinja + a difflib alignment).

Records: a user turn with one image and a ~15-word question, an assistant turn of ~40 words of
reasoning and a boxed answer; the tokenizer is the offline one (the template cost does not depend
on the vocabulary). Reports microseconds per record of CPU time (``time.process_time``).

Run: ``OMP_NUM_THREADS=1 python benchmarks/template_bench.py [--records 2000]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def records(n: int, turns: int) -> list[list[dict]]:
    out = []
    for i in range(n):
        conv = []
        for t in range(turns):
            q = f"Question {i}.{t}: how many red circles and blue squares are there in the picture above?"
            a = (f"<think>Let me count step by step. I see {i % 7} red circles on the left side and {t + 2} blue "
                 "squares near the top. Adding them gives the total, and I check the picture again to be sure "
                 f"nothing is hidden behind the shapes.</think><answer>There are <|begin_of_box|>{i % 7 + t + 2}"
                 "<|end_of_box|> shapes.</answer>")
            conv += [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]},
                     {"role": "assistant", "content": a}]
        out.append(conv)
    return out


def _time(fn, convs) -> float:
    c = time.process_time()
    for conv in convs:
        fn(conv)
    return (time.process_time() - c) / len(convs) * 1e6


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=2000)
    args = ap.parse_args(argv)

    from glmv_cli.data.chat import chat_arrays
    from glmv_cli.data.template import ChatFormat, convert_answer_form
    from glmv_cli.modeling.tokenizer import offline_tokenizer
    from glmv_cli.testing.published import TEMPLATE_41V, TEMPLATE_45V

    tok = offline_tokenizer()
    one, two = records(args.records, 1), records(args.records, 2)
    one45 = [convert_answer_form(c, "glm45v")[0] for c in one]
    f45, f41 = ChatFormat("glm45v", TEMPLATE_45V), ChatFormat("glm41v", TEMPLATE_41V)
    assert not f45.arrays(tok, one45[0], image_token_counts=[16])[2]
    assert f41.arrays(tok, two[0], image_token_counts=[16, 16])[2]
    out = {
        "records": args.records,
        "glmv_us": round(_time(lambda c: chat_arrays(tok, c, image_token_counts=[16], style="glm45v"), one45), 1),
        "template_equal_us": round(_time(lambda c: f45.arrays(tok, c, image_token_counts=[16]), one45), 1),
        "glmv_two_turn_us": round(_time(lambda c: chat_arrays(tok, c, image_token_counts=[16, 16]), two), 1),
        "template_realigned_us": round(_time(lambda c: f41.arrays(tok, c, image_token_counts=[16, 16]), two), 1),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
