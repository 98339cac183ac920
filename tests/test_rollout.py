"""Rollout engine: inverse-CDF sampling, the forced-answering state machine, and the HF decode
loop on the tiny preset (log-probs equal a full forward, batching does not change results,
forced answering appends the closing tags, a response that closes on its own is untouched,
structural multimodal tokens are never sampled and log-probs are of the masked distribution)."""

import copy
import math

import pytest
import torch

from glmv_cli.testing.tiny import full_forward_logprobs

from glmv_cli.generation import (
    BANNED_TOKENS,
    HFEngine,
    Prompt,
    Rollout,
    SamplingParams,
    banned_token_ids,
    mask_banned,
    prompt_from_record,
    prompt_messages,
    rollout_seed,
    sample_from_logits,
    special_ids,
    vllm_available,
)
from glmv_cli.generation.sampling import _RowState



# ----------------------------------------------------------------------------- pure cores


def _row(p):
    return torch.log(torch.tensor([p], dtype=torch.float32))


def test_inverse_cdf_sampling_hand_computed():
    logits = _row([0.1, 0.2, 0.3, 0.4]).repeat(4, 1)
    u = torch.tensor([0.05, 0.25, 0.59, 0.95], dtype=torch.float64)
    tok, lp = sample_from_logits(logits, u, 1.0, 1.0)
    # cdf 0.1, 0.3, 0.6, 1.0
    assert tok.tolist() == [0, 1, 2, 3]
    assert lp.tolist() == pytest.approx([math.log(p) for p in (0.1, 0.2, 0.3, 0.4)], abs=1e-6)


def test_top_p_keeps_smallest_prefix_and_returns_untruncated_logprobs():
    logits = _row([0.1, 0.2, 0.3, 0.4]).repeat(3, 1)
    # top-p 0.5 keeps {0.4, 0.3} (mass before 0.3 is 0.4 < 0.5; before 0.2 is 0.7); kept mass 0.7
    u = torch.tensor([0.5, 0.6, 0.999], dtype=torch.float64)  # x = 0.35 -> 0.4-token; 0.42 -> 0.3-token
    tok, lp = sample_from_logits(logits, u, 1.0, 0.5)
    assert tok.tolist() == [3, 2, 2]
    assert lp.tolist() == pytest.approx([math.log(0.4), math.log(0.3), math.log(0.3)], abs=1e-6)


def test_temperature_and_greedy():
    logits = _row([0.1, 0.2, 0.3, 0.4])
    # T = 0.5 squares the probabilities: 0.01, 0.04, 0.09, 0.16 over 0.30
    tok, lp = sample_from_logits(logits, torch.tensor([0.1], dtype=torch.float64), 0.5, 1.0)
    assert tok.item() == 1  # cdf 0.0333, 0.1667 > 0.1
    assert lp.item() == pytest.approx(math.log(0.04 / 0.30), abs=1e-6)
    tok, lp = sample_from_logits(logits, torch.tensor([0.0], dtype=torch.float64), 0.0, 1.0)
    assert tok.item() == 3 and lp.item() == pytest.approx(math.log(0.4), abs=1e-6)


def test_zero_probability_tokens_are_never_sampled():
    logits = torch.tensor([[0.0, -float("inf"), 0.0, -float("inf")]])
    for u in (0.0, 0.4999, 0.5, 0.9999999):
        tok, _ = sample_from_logits(logits, torch.tensor([u], dtype=torch.float64), 1.0, 1.0)
        assert tok.item() in (0, 2)


def test_banned_tokens_are_never_sampled_and_logprobs_renormalise():
    logits = _row([0.1, 0.2, 0.3, 0.4]).repeat(4, 1)
    # token 3 banned: the rest renormalise to 1/6, 2/6, 3/6 (cdf 1/6, 1/2, 1)
    u = torch.tensor([0.1, 0.4, 0.6, 0.9999], dtype=torch.float64)
    tok, lp = sample_from_logits(logits, u, 1.0, 1.0, banned=[3])
    assert tok.tolist() == [0, 1, 2, 2]
    assert lp.tolist() == pytest.approx([math.log(1 / 6), math.log(2 / 6), math.log(0.5), math.log(0.5)], abs=1e-6)
    # greedy picks the best allowed token; top-p works on the masked distribution (0.5 keeps {2})
    tok, lp = sample_from_logits(logits[:1], u[:1], 0.0, 1.0, banned=torch.tensor([3]))
    assert tok.item() == 2 and lp.item() == pytest.approx(math.log(0.5), abs=1e-6)
    tok, lp = sample_from_logits(logits[:2], u[:2], 1.0, 0.5, banned=[3])
    assert tok.tolist() == [2, 2] and lp.tolist() == pytest.approx([math.log(0.5)] * 2, abs=1e-6)
    # T = 0.5 squares: 1, 4, 9 over 14
    tok, lp = sample_from_logits(logits[:1], torch.tensor([0.2], dtype=torch.float64), 0.5, 1.0, banned=[3])
    assert tok.item() == 1 and lp.item() == pytest.approx(math.log(4 / 14), abs=1e-6)
    # a huge banned logit changes nothing for the others
    big = logits[:1].clone()
    big[0, 3] = 1e4
    for x in (0.0, 0.5, 0.999999):
        tok, _ = sample_from_logits(big, torch.tensor([x], dtype=torch.float64), 1.0, 1.0, banned=[3])
        assert tok.item() != 3
    assert mask_banned(big, [3])[0, 3].item() == -math.inf and big[0, 3].item() == 1e4  # input untouched


END, ANS, EOS = 100, 101, 102


def _state(budget=3, answer_budget=2, max_new=10):
    return _RowState(budget, answer_budget, max_new, END, (END, ANS), frozenset({EOS}))


def _drive(st, sampled):
    """Feeds sampled tokens, taking queued forced tokens first; returns (tokens, forced flags)."""
    toks, flags, it = [], [], iter(sampled)
    while st.finish is None:
        f = st.next_forced()
        t = f if f is not None else next(it)
        toks.append(t)
        flags.append(f is not None)
        st.step(t, f is not None)
    return toks, flags


def test_state_machine_forces_after_budget_then_answer_budget():
    toks, flags = _drive(_state(), [5, 6, 7, 8, 9, 10])
    assert toks == [5, 6, 7, END, ANS, 8, 9]
    assert flags == [False, False, False, True, True, False, False]


def test_state_machine_natural_close_stop_and_length():
    st = _state(budget=3)
    toks, flags = _drive(st, [5, END, 9, 9, 9, EOS])
    assert toks == [5, END, 9, 9, 9, EOS] and not any(flags) and st.finish == "stop"
    st = _state(budget=None, max_new=4)
    toks, _ = _drive(st, [5, 6, 7, 8, 9])
    assert toks == [5, 6, 7, 8] and st.finish == "length"
    st = _state(budget=2)
    toks, flags = _drive(st, [5, 6, EOS])
    assert toks == [5, 6, END, ANS, EOS] and st.finish == "forced" and flags == [False, False, True, True, False]
    st = _state(budget=5)
    _drive(st, [5, EOS])
    assert st.finish == "stop"  # a stop while thinking is a plain stop


def test_rollout_seed_depends_on_every_part():
    s = rollout_seed(0, "a", "m", 0)
    assert s == rollout_seed(0, "a", "m", 0) and 0 <= s < 2 ** 63
    assert len({s, rollout_seed(1, "a", "m", 0), rollout_seed(0, "b", "m", 0), rollout_seed(0, "a", "n", 0),
                rollout_seed(0, "a", "m", 1)}) == 5


def test_loss_mask_and_prompt_messages():
    r = Rollout("a", 0, 1, [1], [5, 6, 7], [-1.0, -1.0, -1.0], [False, True, False], "forced")
    assert r.loss_mask() == [True, False, True] and r.loss_mask(include_forced=True) == [True] * 3
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert prompt_messages(msgs) == msgs[:2]
    with pytest.raises(ValueError, match="at least one user message"):
        prompt_messages([{"role": "system", "content": "s"}])


def test_sampling_params_validate():
    with pytest.raises(ValueError, match="top_p must be in \\(0, 1\\], got 0"):
        SamplingParams(top_p=0).validate()
    with pytest.raises(ValueError, match="style must be one of glm41v, glm45v"):
        SamplingParams(style="x").validate()


# ----------------------------------------------------------------------------- tiny model


@pytest.fixture(scope="module")
def tiny():
    from glmv_cli.modeling import load

    model, proc = load("tiny")
    return model.eval(), proc


def _prompts(model, proc):
    from glmv_cli.data.chat_tokens import encode_chat

    tok = proc.tokenizer
    out = []
    g = torch.Generator().manual_seed(0)
    for i, (q, hw) in enumerate([("How many circles?", (8, 8)), ("Read the text in the image, carefully.", (8, 12)),
                                 ("What is 2+3?", None)]):
        if hw:
            h, w = hw
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
            ids = encode_chat(tok, msgs, image_token_counts=[h * w // 4], add_generation_prompt=True)["input_ids"]
            out.append(Prompt(f"p{i}", ids, torch.randn(h * w, 1176, generator=g), torch.tensor([[1, h, w]])))
        else:
            ids = encode_chat(tok, [{"role": "user", "content": q}], add_generation_prompt=True)["input_ids"]
            out.append(Prompt(f"p{i}", ids))
    return out




def test_logprobs_match_full_forward_and_batching_does_not_matter(tiny):
    model, proc = tiny
    ps = _prompts(model, proc)
    sp = SamplingParams(max_new_tokens=12, thinking_budget=6, answer_budget=3)
    eng = HFEngine(model, proc, batch_size=12)
    batched = eng.generate(ps, sp, n=3, seed=7)
    single = HFEngine(model, proc, batch_size=1).generate(ps, sp, n=3, seed=7)
    worst = 0.0
    for p, rs, ss in zip(ps, batched, single):
        assert [r.index for r in rs] == [0, 1, 2]
        for r, s in zip(rs, ss):
            assert r.token_ids == s.token_ids and r.forced == s.forced
            assert r.logprobs == pytest.approx(s.logprobs, abs=1e-4)
            full = full_forward_logprobs(model, p, r, eng.banned_token_ids)
            worst = max(worst, (full - torch.tensor(r.logprobs)).abs().max().item())
    # left padding, images (3D rope), KV cache and row compaction reproduce the full forward
    assert worst < 1e-4
    again = HFEngine(model, proc, batch_size=12).generate(ps, sp, n=3, seed=7)
    assert [[r.token_ids for r in x] for x in again] == [[r.token_ids for r in x] for x in batched]
    other = HFEngine(model, proc, batch_size=12).generate(ps, sp, n=3, seed=8)
    assert [[r.token_ids for r in x] for x in other] != [[r.token_ids for r in x] for x in batched]


def test_forced_answering_on_tiny_model(tiny):
    model, proc = tiny
    tok = proc.tokenizer
    end, ans = tok.convert_tokens_to_ids("</think>"), tok.convert_tokens_to_ids("<answer>")
    ps = _prompts(model, proc)
    for style, tail in (("glm41v", [end, ans]), ("glm45v", [end])):
        stops = special_ids(tok, model, style)[2]
        out = HFEngine(model, proc, batch_size=8).generate(
            ps, SamplingParams(max_new_tokens=40, thinking_budget=5, answer_budget=4, style=style), n=2, seed=1)
        forced_rows = 0
        for rs in out:
            for r in rs:
                if r.finish_reason != "forced":
                    continue
                forced_rows += 1
                assert end not in r.token_ids[:5]
                assert r.token_ids[5:5 + len(tail)] == tail
                assert r.forced == [False] * 5 + [True] * len(tail) + [False] * (len(r.token_ids) - 5 - len(tail))
                # the answer part: the full budget of 4 tokens, or fewer ending in a stop token
                answer = r.token_ids[5 + len(tail):]
                assert answer and (len(answer) == 4 or answer[-1] in stops), (answer, sorted(stops))
                assert ("</think><answer>" if style == "glm41v" else "</think>") in r.text
                assert all(math.isfinite(x) and x <= 0 for x in r.logprobs)
        assert forced_rows >= 4  # a random tiny model almost never closes its thinking by itself


def test_response_that_closes_thinking_itself_is_untouched(tiny):
    model, proc = tiny
    tok = proc.tokenizer
    end = tok.convert_tokens_to_ids("</think>")
    # Make </think> likely on some steps: point its output row along the mean final hidden state
    # of a text prompt (the image prompts sit elsewhere, so they close less often).
    ps = _prompts(model, proc)
    m2 = copy.deepcopy(model)
    with torch.no_grad():
        x = torch.tensor([ps[2].input_ids])
        u = m2(input_ids=x, output_hidden_states=True).hidden_states[-1][0].mean(0)
        m2.lm_head.weight[end] = 2.5 * u / u.norm()
    eng = HFEngine(m2, proc, batch_size=24)
    budget = 6
    a = eng.generate(ps, SamplingParams(max_new_tokens=16, thinking_budget=budget, answer_budget=3), n=8, seed=3)
    b = eng.generate(ps, SamplingParams(max_new_tokens=16), n=8, seed=3)
    natural = forced = 0
    for ra, rb in zip(sum(a, []), sum(b, [])):
        if end in rb.token_ids[:budget] or (rb.finish_reason == "stop" and len(rb.token_ids) <= budget):
            natural += end in rb.token_ids
            assert ra.token_ids == rb.token_ids and not any(ra.forced)
            assert ra.logprobs == pytest.approx(rb.logprobs, abs=1e-6)
            assert ra.finish_reason == rb.finish_reason
        else:
            forced += 1
            assert ra.token_ids[:budget] == rb.token_ids[:budget]
            assert ra.forced[budget:budget + 2] == [True, True] and ra.finish_reason == "forced"
    assert natural >= 3 and forced >= 3


def test_prompt_from_record_uses_processor_grid(tiny, tmp_path):
    from PIL import Image

    from glmv_cli.data.schema import parse_record

    model, proc = tiny
    Image.new("RGB", (112, 84), (200, 30, 30)).save(tmp_path / "a.png")
    line = ('{"id": "r1", "messages": [{"role": "user", "content": "<image>How many?"}, '
            '{"role": "assistant", "content": "3"}], "images": ["a.png"], "domain": "counting", "answer": "3"}')
    (tmp_path / "d.jsonl").write_text(line + "\n")
    rec = parse_record(line, path=str(tmp_path / "d.jsonl"), line=1, mode="sft")
    p = prompt_from_record(rec, proc.tokenizer, proc.image_processor)
    n_img = p.input_ids.count(model.config.image_token_id)
    assert n_img == int(p.image_grid_thw.prod()) // 4 and p.pixel_values.shape[0] == int(p.image_grid_thw.prod())
    text = proc.tokenizer.decode(p.input_ids)
    assert text.endswith("How many?<|assistant|>\n") and "3<|endoftext|>" not in text
    out = HFEngine(model, proc).generate([p], SamplingParams(max_new_tokens=4), n=2)
    for r in out[0]:
        assert (r.finish_reason, len(r.token_ids)) == ("length", 4) or (r.finish_reason == "stop" and len(r.token_ids) <= 4)


@pytest.mark.gpu
@pytest.mark.skipif(not vllm_available(), reason="vllm is not installed")
def test_vllm_engine_contract(tmp_path):
    from glmv_cli.modeling import load, save
    from glmv_cli.generation import TextPrompt, VLLMEngine

    model, proc = load("tiny")
    save(model, proc, tmp_path / "m")
    eng = VLLMEngine(str(tmp_path / "m"), tokenizer=proc.tokenizer, gpu_memory_utilization=0.2)
    text = "[gMASK]<sop><|user|>\nWhat is 2+3?<|assistant|>\n"
    out = eng.generate([TextPrompt("a", text)], SamplingParams(max_new_tokens=16, thinking_budget=4, answer_budget=3), n=4)
    assert len(out[0]) == 4
    for r in out[0]:
        assert r.finish_reason in ("stop", "length", "forced") and len(r.forced) == len(r.token_ids)
        if r.finish_reason == "forced":
            assert r.forced[4:6] == [True, True]


def test_banned_token_ids_of_the_tiny_preset(tiny):
    model, proc = tiny
    tok, cfg = proc.tokenizer, model.config
    want = tuple(sorted(tok.convert_tokens_to_ids(t) for t in BANNED_TOKENS))
    assert len(set(want)) == 6 and cfg.image_token_id in want and cfg.video_token_id in want
    assert banned_token_ids(proc) == want and banned_token_ids(tok, cfg) == want
    assert HFEngine(model, proc).banned_token_ids == want
    assert banned_token_ids(tok, cfg, vocab_size=min(want) + 1) == (min(want),)


def test_image_token_with_a_huge_logit_is_never_sampled(tiny):
    model, proc = tiny
    img = model.config.image_token_id
    ps = _prompts(model, proc)
    m2 = copy.deepcopy(model)
    # point the image token's output row along every prompt's mean final hidden state, scaled so
    # that the unmasked policy puts nearly all its mass on <|image|>
    with torch.no_grad():
        hs = [m2(input_ids=torch.tensor([p.input_ids]), output_hidden_states=True).hidden_states[-1][0].mean(0)
              for p in ps[2:]]
        u = torch.stack(hs).mean(0)
        m2.lm_head.weight[img] = 400.0 * u / u.norm() ** 2
        p_img = m2(input_ids=torch.tensor([ps[2].input_ids])).logits[0, -1].float().softmax(-1)[img].item()
    assert p_img > 0.99
    eng = HFEngine(m2, proc, batch_size=16)
    banned = set(eng.banned_token_ids)
    out = eng.generate(ps, SamplingParams(max_new_tokens=10), n=4, seed=5)
    n_tok = 0
    for p, rs in zip(ps, out):
        for r in rs:
            assert not banned & set(r.token_ids)
            n_tok += len(r.token_ids)
            # the returned log-probs are of the masked distribution the full forward gives
            full = full_forward_logprobs(m2, p, r, eng.banned_token_ids)
            assert (full - torch.tensor(r.logprobs)).abs().max().item() < 1e-4
    assert n_tok >= 12 * 2
    # the masked distribution sums to 1 over the allowed vocabulary and is 0 on the banned ids
    with torch.no_grad():
        logits = m2(input_ids=torch.tensor([ps[2].input_ids])).logits[0]
    probs = mask_banned(logits, eng.banned_token_ids).log_softmax(-1).exp().double()
    allowed = torch.ones(probs.shape[-1], dtype=torch.bool)
    allowed[list(banned)] = False
    assert probs[:, allowed].sum(-1).tolist() == pytest.approx([1.0] * probs.shape[0], abs=1e-6)
    assert probs[:, ~allowed].abs().max().item() == 0.0
    # greedy too: without the mask every greedy row would start with <|image|>
    greedy = eng.generate(ps[2:], SamplingParams(temperature=0.0, max_new_tokens=4), n=1)
    assert not banned & set(greedy[0][0].token_ids) and greedy[0][0].token_ids
    # control: with an empty ban list the same engine emits <|image|> at nearly every step
    eng.banned_token_ids = ()
    raw = eng.generate(ps, SamplingParams(max_new_tokens=10), n=4, seed=5)
    assert sum(r.token_ids.count(img) for rs in raw for r in rs) >= n_tok // 2
