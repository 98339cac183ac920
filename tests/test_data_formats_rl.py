"""Bring-your-own-data on the RL side: every layout as RL records and through 2 rlcs steps, verl's
geo3k layout with \\boxed{} prompts and a user reward function, domain mapping, the boxed check,
user reward functions' loading and error rules, and pixel limits applied like the processor."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from glmv_cli.errors import GlmvError
from glmv_cli.main import app
from glmv_cli.testing import formats as F

torch.set_num_threads(1)
runner = CliRunner()

GATE_FREE = "style: glm45v\ngates: {require_think: false, require_box: false, language_mix: false}\n"
FAST = ["--model", "tiny", "--style", "glm45v", "--no-forced-answering", "--max-new-tokens", "6",
        "--group-size", "4", "--batch-prompts", "3", "--lr", "1e-3", "--micro-batch", "8"]
# how each layout names its domain: verl's data_source is mapped, EasyR1 rows have none
DOMAIN_FLAGS = {"verl": ["--domain-map", f"{F.VERL_SOURCE}=ocr"], "easyr1": ["--default-domain", "ocr"]}
REWARD_FN = '''
import json, re
LOG = {log!r}

def score(prompt, response, reference, domain, extra):
    """verl-style: 0.9 for the right boxed answer, 0.1 credit for a response of 20+ characters."""
    m = re.search(r"\\\\boxed\\{{([^{{}}]*)\\}}", response)
    r = 0.9 * (m is not None and m.group(1).strip() == reference) + 0.1 * min(1.0, len(response) / 20)
    with open(LOG, "a") as f:
        f.write(json.dumps({{"prompt": prompt, "reference": reference, "domain": domain, "extra": extra,
                            "reward": r}}) + "\\n")
    return r


def slow(prompt, response, reference, domain, extra):
    import time
    time.sleep(5)
    return 1.0


def broken(prompt, response, reference, domain, extra):
    raise KeyError("no such field")


def text(prompt, response, reference, domain, extra):
    return "1"


def two_args(prompt, response):
    return 1.0
'''


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-layouts")
    recs = F.truth_records()
    out = {name: write(root / name, recs) for name, write in F.WRITERS.items()}
    (root / "rewards.yaml").write_text(GATE_FREE, encoding="utf-8")
    out["rewards"] = root / "rewards.yaml"
    return out


def _load(spec, layout, reward_fn=None):
    from glmv_cli.data.formats.options import DataFormatConfig, DomainConfig
    from glmv_cli.rewards import load_config
    from glmv_cli.rl.records import load_data

    dom = {"verl": DomainConfig([f"{F.VERL_SOURCE}=ocr"]), "easyr1": DomainConfig([], "ocr")}.get(layout)
    return load_data(spec, load_config(None, reward_fn=reward_fn), source=DataFormatConfig(), domains=dom)


@pytest.mark.parametrize("layout", list(F.WRITERS))
def test_rl_records_of_every_layout_prompt_like_the_glmv_jsonl(layouts, layout):
    from glmv_cli.generation import prompt_from_record
    from glmv_cli.modeling import load_processor

    proc = load_processor("tiny")
    truth, data = _load(layouts["glmv"], "glmv"), _load(layouts[layout], layout)
    assert len(data.records) == 6 and data.fingerprint and data.format
    for a, b in zip(truth.records, data.records):
        assert (b.domain, b.answer) == ("ocr", a.answer)
        want = a.record
        if layout == "easyr1":  # EasyR1 rows hold the problem alone (its format prompt lives in the config)
            want = dataclasses.replace(want, messages=[m for m in want.messages if m["role"] != "system"])
        pa = prompt_from_record(want, proc.tokenizer, proc.image_processor, style="glm45v")
        pb = prompt_from_record(b.record, proc.tokenizer, proc.image_processor, style="glm45v")
        assert pa.input_ids == pb.input_ids
        if pa.pixel_values is None:
            assert pb.pixel_values is None
        else:
            assert torch.equal(pa.pixel_values, pb.pixel_values) and torch.equal(pa.image_grid_thw, pb.image_grid_thw)


def _lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("layout", list(F.WRITERS))
def test_two_rlcs_steps_on_every_layout(tmp_path, layouts, layout):
    out = tmp_path / "run"
    res = runner.invoke(app, ["rlcs", *FAST, "--data", str(layouts[layout]), "--reward-config", str(layouts["rewards"]),
                              "--steps", "2", "--out", str(out), *DOMAIN_FLAGS.get(layout, [])],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["metrics"]["steps"] == 2 and man["metrics"]["records"] == 6
    assert man["metrics"]["data_format"] == {"verl": "verl", "easyr1": "easyr1", "sharegpt": "sharegpt"}.get(
        layout, "messages")
    ms = _lines(out / "metrics.jsonl")
    assert [m["step"] for m in ms] == [1, 2]
    # rows without an id get file:row ids (the verl and EasyR1 layouts)
    ids = {f"q{i}" for i in range(6)} if layout not in ("verl", "easyr1") else {
        f"{Path(layouts[layout]).name}:{i}" for i in range(1, 7)}
    assert all(set(m["prompt_ids"]) <= ids and m["prompt_ids"] for m in ms)
    assert sum(ms[0]["domains"]["ocr"]["tier_histogram"].values()) == 6


# ----------------------------------------------------------------------------- verl geo3k + --reward-fn


@pytest.fixture(scope="module")
def geo3k(tmp_path_factory):
    d = tmp_path_factory.mktemp("geo3k")
    recs = F.truth_records(boxed=True)
    for r in recs:
        r["reference"] = str(3 + len(r["reference"]))  # numeric answers, as geometry3k has
    path = F.write_verl(d, recs, source="hiyouga/geometry3k")
    log = d / "calls.jsonl"
    (d / "geo_rewards.py").write_text(REWARD_FN.format(log=str(log)), encoding="utf-8")
    return {"data": path, "dir": d, "log": log, "recs": recs}


def test_boxed_prompts_are_refused_up_front_without_a_way_to_score_them(tmp_path, geo3k):
    res = runner.invoke(app, ["rlcs", *FAST, "--data", str(geo3k["data"]), "--domain-map", "hiyouga/geometry3k=math",
                              "--steps", "1", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert ("error: --data: 6 of 6 prompts ask for a \\boxed{} answer (e.g. record 'verl.parquet:1' at "
            f"{geo3k['data']}:1), but the reward's format gate scores such answers 0") in res.output
    assert "--reward-fn package.module:function" in res.output and not (tmp_path / "o").exists()
    # the unmapped data_source is named with the flag that maps it
    res = runner.invoke(app, ["rlcs", *FAST, "--data", str(geo3k["data"]), "--steps", "1", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown domain 'hiyouga/geometry3k'" in res.output
    assert "--domain-map 'hiyouga/geometry3k=DOMAIN' (the row's ability is 'ocr')" in res.output
    # a gate that passes \boxed{} answers to the verifier makes the data usable too
    from glmv_cli.data.formats.options import DataFormatConfig, DomainConfig
    from glmv_cli.rewards import config_from_dict, default_config
    from glmv_cli.rl.records import check_boxed_prompts, load_data

    cfg = config_from_dict({"gates": {"forbid_boxed": False, "require_box": False}})
    recs = load_data(geo3k["data"], cfg, source=DataFormatConfig(),
                     domains=DomainConfig(["hiyouga/geometry3k=math"])).records
    check_boxed_prompts(recs, cfg)
    with pytest.raises(GlmvError, match="prompts ask for a"):
        check_boxed_prompts(recs, default_config())


def test_verl_geo3k_with_a_user_reward_function_through_rlcs(tmp_path, geo3k, monkeypatch):
    monkeypatch.syspath_prepend(str(geo3k["dir"]))
    out = tmp_path / "run"
    res = runner.invoke(app, ["rlcs", *FAST, "--data", str(geo3k["data"]), "--domain-map", "hiyouga/geometry3k=math",
                              "--reward-fn", "geo_rewards:score", "--steps", "2", "--out", str(out),
                              "--image-max-pixels", "12544"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    ms = _lines(out / "metrics.jsonl")
    assert all(m["reward"] > 0 for m in ms) and set(ms[0]["domains"]) == {"math"}
    calls = _lines(geo3k["log"])
    assert calls and all(c["domain"] == "math" and c["extra"]["data_source"] == "hiyouga/geometry3k" for c in calls)
    by_prompt = {r["question"].replace("<image>", ""): r["reference"] for r in geo3k["recs"]}
    for c in calls:  # each call got its row's ground truth and prompt text
        assert c["prompt"].endswith("Put the final answer in \\boxed{}.") and 0 < c["reward"] <= 1
        assert by_prompt[c["prompt"].replace("<image>", "")] == c["reference"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["options"]["reward_fn"] == "geo_rewards:score" and man["options"]["domain_map"] == [
        "hiyouga/geometry3k=math"]
    # the pixel limit reached the rollouts' processor and the exported model's
    assert man["metrics"]["image_size"]["longest_edge"] == 2 * 12544
    assert json.loads((out / "preprocessor_config.json").read_text())["size"]["longest_edge"] == 2 * 12544


def test_rl_on_bad_skip_counts_bad_verl_rows(tmp_path):
    from glmv_cli.data.formats.options import DataFormatConfig, DomainConfig
    from glmv_cli.rewards import default_config
    from glmv_cli.rl.records import load_data

    ds = F.verl_dataset(F.truth_records())
    rows = ds.to_list()
    rows[1]["reward_model"] = {"style": "rule", "ground_truth": None}
    rows[3]["data_source"] = "elsewhere"
    import datasets

    datasets.Dataset.from_list(rows, features=ds.features).to_parquet(str(tmp_path / "v.parquet"))
    kw = dict(source=DataFormatConfig(), domains=DomainConfig([f"{F.VERL_SOURCE}=ocr"]))
    with pytest.raises(GlmvError, match=r"v\.parquet:2: field 'answer': missing reference answer"):
        load_data(tmp_path / "v.parquet", default_config(), **kw)
    data = load_data(tmp_path / "v.parquet", default_config(), on_bad="skip", **kw)
    assert len(data.records) == 4 and data.skipped == {"bad_field": 2}


def test_user_reward_function_rules(geo3k, monkeypatch):
    from glmv_cli.rewards import load_config, score_detailed
    from glmv_cli.rewards.userfn import load_reward_fn

    monkeypatch.syspath_prepend(str(geo3k["dir"]))
    cfg = load_config(None, reward_fn="geo_rewards:score")
    ok = score_detailed("p", "so \\boxed{7}", "7", "anything", None, config=cfg)
    assert ok.reward == pytest.approx(0.9 + 0.1 * 12 / 20) and ok.verifier == "reward_fn" and ok.error is None
    assert cfg.accepts("hiyouga/geometry3k")  # a reward function scores every domain
    for name, err in (("broken", "KeyError: 'no such field'"), ("text", "reward is str, not a number")):
        r = score_detailed("p", "x", "7", "math", None, config=load_config(None, reward_fn=f"geo_rewards:{name}"))
        assert (r.reward, r.error) == (0.0, err)
    slow = load_config(None, reward_fn="geo_rewards:slow")
    slow.reward_fn_timeout_s = 0.2
    assert score_detailed("p", "x", "7", "math", None, config=slow).error == "timeout"
    for spec, msg in (("geo_rewards", "must look like 'package.module:function'"),
                      ("nope_mod:f", "importing module 'nope_mod' failed"),
                      ("geo_rewards:missing", "has no attribute 'missing'"), ("geo_rewards:LOG", "is not callable"),
                      ("geo_rewards:two_args", "must accept (prompt, response, reference, domain, extra)"),
                      ("os:system; rm", "must look like 'package.module:function'")):
        with pytest.raises(GlmvError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            load_reward_fn(spec)
    sys.modules.pop("geo_rewards", None)


def test_grade_difficulty_reads_verl_parquet_with_the_user_reward(tmp_path, geo3k, monkeypatch):
    monkeypatch.syspath_prepend(str(geo3k["dir"]))
    out = tmp_path / "g"
    res = runner.invoke(app, ["grade-difficulty", "--data", str(geo3k["data"]), "--model", "tiny", "--out", str(out),
                              "--k", "2", "--batch-size", "3", "--max-new-tokens", "4", "--domain-map",
                              "hiyouga/geometry3k=math", "--reward-fn", "geo_rewards:score", "--image-max-pixels",
                              "12544"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = _lines(out / "rollouts.jsonl")
    assert len(rows) == 6 and all(0 < r for row in rows for r in row["rewards"])
    results = _lines(out / "results.jsonl")
    assert {x["domain"] for x in results} == {"math"} and [x["id"] for x in results][0] == "verl.parquet:1"
    man = json.loads((out / "manifest.json").read_text())
    assert man["options"]["image_max_pixels"] == 12544 and man["options"]["reward_fn"] == "geo_rewards:score"


# ----------------------------------------------------------------------------- pixel limits


def test_pixel_limits_follow_the_processor_resize_rule_everywhere(tmp_path):
    from transformers.models.glm4v.image_processing_pil_glm4v import smart_resize

    from glmv_cli.data.images import ImageSizeConfig, apply_pixel_limits
    from glmv_cli.data.packed import PackedDataset
    from glmv_cli.modeling import load_processor
    from glmv_cli.stages.pack import PackOptions, pack

    big = F.png_bytes(600, 400, 1)
    (tmp_path / "big.png").write_bytes(big)
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "<image>what?"},
                                                               {"role": "assistant", "content": "a"}],
                                                  "images": ["big.png"]}) + "\n")
    limits = ImageSizeConfig(image_min_pixels=None, image_max_pixels=40_000)
    m = pack(PackOptions(model="tiny", inputs=[str(tmp_path / "d.jsonl")], out=tmp_path / "p", seq_len=1024,
                         images=limits))
    h, w = smart_resize(2, 400, 600, factor=28, min_pixels=112 * 112, max_pixels=2 * 40_000, temporal_factor=2)
    assert h * w <= 40_000
    ds = PackedDataset(m.path)
    item = ds[0]  # the reader decodes with the pack's processor config; its grid must match the stored one
    assert item["image_grid_thw"].tolist() == [[1, h // 14, w // 14]]
    assert m.options["image_max_pixels"] == 40_000
    idx = json.loads((Path(m.path) / "packs.json").read_text())
    assert idx["image_settings"]["max_pixels"] == 80_000
    proc = load_processor("tiny")
    assert apply_pixel_limits(proc.image_processor, limits) == {"shortest_edge": 112 * 112, "longest_edge": 80_000}
    from PIL import Image
    import io

    enc = proc.image_processor(images=[Image.open(io.BytesIO(big)).convert("RGB")], return_tensors="pt")
    assert enc["image_grid_thw"].tolist() == [[1, h // 14, w // 14]]
    with pytest.raises(GlmvError, match=r"--image-min-pixels \(90000\) must not be larger than --image-max-pixels"):
        pack(PackOptions(model="tiny", inputs=[str(tmp_path / "d.jsonl")], out=tmp_path / "q",
                         images=ImageSizeConfig(90_000, 40_000)))


def test_eval_adapter_applies_the_pixel_limits():
    from glmv_cli.evaluation.adapter import GlmvLM

    lm = GlmvLM(pretrained="tiny", image_max_pixels=50_176, device="cpu")
    assert lm.generator.image_processor.size["longest_edge"] == 2 * 50_176


def test_a_large_image_under_the_default_and_a_limited_processor():
    """The figures docs/data-formats.md quotes: 3000x2000 under GLM-4.1V's processor size."""
    from types import SimpleNamespace

    from glmv_cli.data.images import ImageSettings, ImageSizeConfig, apply_pixel_limits, grid_for_size, tokens_for_grid

    ip = SimpleNamespace(size={"shortest_edge": 112 * 112, "longest_edge": 28 * 28 * 15000}, patch_size=14,
                         merge_size=2, temporal_patch_size=2)
    s = ImageSettings.from_processor(ip)
    assert tokens_for_grid(grid_for_size(3000, 2000, s), s) == 7420
    apply_pixel_limits(ip, ImageSizeConfig(image_max_pixels=1003520))
    s = ImageSettings.from_processor(ip)
    g = grid_for_size(3000, 2000, s)
    assert ip.size["longest_edge"] == 2 * 1003520 and tokens_for_grid(g, s) == 1247
    assert (g[1] * 14, g[2] * 14) == (812, 1204) and 812 * 1204 <= 1003520
