"""RLCS options: paper defaults, flat/recipe round trip, flag-naming validation errors."""

from __future__ import annotations

import json

import pytest

from glmv_cli import options as O
from glmv_cli.errors import GlmvError
from glmv_cli.recipe import load_recipe
from glmv_cli.rl.config import RLCSConfig, flag, parse_domain_weights, parse_float_list


def option_fields() -> list[str]:
    return [leaf.name for leaf in O.leaves(RLCSConfig)]


def test_defaults_follow_the_paper_and_design():
    c = RLCSConfig().validate()
    assert (c.rollout.temperature, c.rollout.top_p, c.rollout.forced_answering) == (1.0, 1.0, True)
    assert (c.loss.clip_eps_low, c.loss.clip_eps_high) == (0.2, 0.28)
    assert (c.loss.kl_coef, c.loss.entropy_coef) == (0.0, 0.0)
    assert c.loss.loss_agg == "token-mean" and c.loss.mask_forced_tokens is True
    assert c.loss.adv_std_normalize is False and c.loss.dual_clip_c == 0.0
    assert c.curriculum.curriculum == "tiered" and c.curriculum.tier_boundaries == (0.05, 0.3, 0.7, 0.95)
    assert c.expansion.expansion is True and c.expansion.batch_prompts == 64


def test_every_option_has_help_and_names_are_unique():
    fields = option_fields()
    assert len(fields) == 7 + 12 + 11 + 5  # rollout, loss, curriculum, expansion
    assert all(leaf.help.endswith((".", ")")) for leaf in O.leaves(RLCSConfig))
    assert flag("clip_eps_low") == "--clip-eps-low"


def test_from_flat_accepts_kebab_keys_and_string_forms():
    c = RLCSConfig.from_flat(
        {
            "clip-eps-high": 0.3,
            "loss_agg": "seq-mean-token-mean",
            "tier_boundaries": "0.1, 0.4,0.6,0.9",
            "domain_weights": "stem=2,ocr=0.5",
            "group_size": 16,
            "kl_coef": 1,  # an int is fine for a float option
            "curriculum": "uniform",
        }
    )
    assert c.loss.clip_eps_high == 0.3 and c.loss.loss_agg == "seq-mean-token-mean"
    assert c.curriculum.tier_boundaries == (0.1, 0.4, 0.6, 0.9)
    assert c.curriculum.domain_weights == {"stem": 2.0, "ocr": 0.5}
    assert c.rollout.group_size == 16 and c.loss.kl_coef == 1.0 and isinstance(c.loss.kl_coef, float)
    assert c.curriculum.sampler_kwargs()["mode"] == "uniform"


def test_to_flat_roundtrip_and_json():
    c = RLCSConfig.from_flat({"domain_weights": {"stem": 1, "gui": 2}, "dual_clip_c": 3.0, "ppo_epochs": 2})
    flat = c.to_flat()
    assert set(flat) == set(option_fields())
    assert json.loads(json.dumps(flat)) == flat
    assert RLCSConfig.from_flat(flat) == c
    assert c.loss.loss_kwargs()["clip_ratio_c"] == 3.0
    assert RLCSConfig().loss.loss_kwargs()["clip_ratio_c"] is None


def test_unknown_key_is_an_error():
    with pytest.raises(GlmvError, match=r"^recipe\.yaml: unknown key 'clip_eps_hgh'; valid keys: adv_eps, adv_std_normalize, "):
        RLCSConfig.from_flat({"clip_eps_hgh": 0.3}, source="recipe.yaml")


@pytest.mark.parametrize(
    "values,message",
    [
        ({"clip_eps_low": 0.2, "clip_eps_high": 0.1}, "--clip-eps-high must be >= --clip-eps-low (0.2), got 0.1"),
        ({"clip_eps_low": 1.0}, "--clip-eps-low must be in [0, 1), got 1.0"),
        ({"dual_clip_c": 0.5}, "--dual-clip-c must be 0 (off) or > 1, got 0.5"),
        ({"loss_agg": "sum"}, "--loss-agg must be one of token-mean, seq-mean-token-mean, seq-mean-token-sum, got 'sum'"),
        ({"kl_estimator": "k9"}, "--kl-estimator must be one of k1, k2, k3, got 'k9'"),
        ({"kl_coef": -0.1}, "--kl-coef must be >= 0, got -0.1"),
        ({"entropy_coef": -1.0}, "--entropy-coef must be >= 0, got -1.0"),
        ({"ppo_epochs": 0}, "--ppo-epochs must be >= 1, got 0"),
        ({"mini_batches": 0}, "--mini-batches must be >= 1, got 0"),
        ({"top_p": 0.0}, "--top-p must be in (0, 1], got 0.0"),
        ({"temperature": 0.0}, "--temperature must be > 0, got 0.0"),
        ({"group_size": 1}, "--group-size must be >= 2, got 1"),
        ({"thinking_budget": 0}, "--thinking-budget must be >= 1, got 0"),
        ({"answer_budget": -5}, "--answer-budget must be >= 1, got -5"),
        ({"max_new_tokens": 0}, "--max-new-tokens must be >= 1, got 0"),
        ({"curriculum": "greedy"}, "--curriculum must be one of tiered, uniform, got 'greedy'"),
        ({"tier_boundaries": [0.5, 0.3, 0.7, 0.9]}, "--tier-boundaries must be 4 increasing values in (0, 1], got [0.5, 0.3, 0.7, 0.9]"),
        ({"tier_weight_trivial": 0.0}, "--tier-weight-trivial must be > 0, got 0.0"),
        ({"pass_rate_decay": 0.0}, "--pass-rate-decay must be in (0, 1], got 0.0"),
        ({"prior_strength": -1.0}, "--prior-strength must be >= 0, got -1.0"),
        ({"domain_weights": "stem=-1"}, "--domain-weights: weight of domain 'stem' must be >= 0, got -1.0"),
        ({"domain_weights": "stem=0,ocr=0"}, "--domain-weights must have a positive sum, got {'stem': 0.0, 'ocr': 0.0}"),
        ({"batch_prompts": 0}, "--batch-prompts must be >= 1, got 0"),
        ({"expansion_ema_alpha": 1.5}, "--expansion-ema-alpha must be in (0, 1], got 1.5"),
        ({"max_expansion_ratio": 0.9}, "--max-expansion-ratio must be >= 1, got 0.9"),
        ({"max_topup_rounds": -1}, "--max-topup-rounds must be >= 0, got -1"),
        ({"group_size": "eight"}, "--group-size: expected an integer, got 'eight' (str)"),
        ({"group_size": 8.5}, "--group-size: expected an integer, got 8.5 (float)"),
        ({"clip_eps_low": "x"}, "--clip-eps-low: expected a number, got 'x' (str)"),
        ({"forced_answering": "yes"}, "--forced-answering: expected true or false, got 'yes' (str)"),
        ({"loss_agg": 3}, "--loss-agg must be one of token-mean, seq-mean-token-mean, seq-mean-token-sum, got '3'"),
        ({"tier_boundaries": "0.1,a"}, "--tier-boundaries must be a comma-separated list of numbers, got '0.1,a'"),
        ({"domain_weights": "stem:1"}, "--domain-weights must look like 'stem=2,ocr=1', got 'stem:1'"),
        ({"domain_weights": "stem=heavy"}, "--domain-weights: weight of domain 'stem' must be a number, got 'heavy'"),
    ],
)
def test_validation_messages_name_the_flag(values, message):
    with pytest.raises(GlmvError) as e:
        RLCSConfig.from_flat(values)
    assert str(e.value) == message


def test_parsers():
    assert parse_float_list("1,2.5", "x") == (1.0, 2.5)
    assert parse_float_list([1, "2"], "x") == (1.0, 2.0)
    assert parse_domain_weights("") == {} and parse_domain_weights(None) == {}
    assert parse_domain_weights(" stem = 2 , ocr=1") == {"stem": 2.0, "ocr": 1.0}


def test_every_option_is_settable_from_a_recipe(tmp_path):
    recipe = tmp_path / "rlcs.yaml"
    recipe.write_text(
        "stage: rlcs\n"
        "clip-eps-high: 0.3\n"
        "tier_boundaries: [0.1, 0.3, 0.7, 0.9]\n"
        "domain_weights: {stem: 2, ocr: 1}\n"
        "expansion: false\n"
        "adv_std_normalize: true\n",
        encoding="utf-8",
    )
    values = load_recipe(recipe, stage="rlcs", valid=option_fields())
    c = RLCSConfig.from_flat(values, source=str(recipe))
    assert c.loss.clip_eps_high == 0.3 and c.loss.adv_std_normalize is True
    assert c.curriculum.tier_boundaries == (0.1, 0.3, 0.7, 0.9)
    assert c.curriculum.domain_weights == {"stem": 2.0, "ocr": 1.0}
    assert c.expansion.controller().max_ratio == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("clip_eps_hi: 0.3\n", encoding="utf-8")
    with pytest.raises(GlmvError, match=r"unknown key 'clip_eps_hi' for 'glmv rlcs'; valid keys: adv_eps, "):
        load_recipe(bad, stage="rlcs", valid=option_fields())


def test_rollout_options_drive_the_rollout_engine():
    from glmv_cli.generation import SamplingParams

    on = SamplingParams(**RLCSConfig().rollout.sampling_kwargs())
    on.validate()
    assert (on.temperature, on.top_p, on.thinking_budget, on.answer_budget) == (1.0, 1.0, 8192, 512)
    off = RLCSConfig.from_flat({"forced_answering": False}).rollout.sampling_kwargs()
    assert off["thinking_budget"] is None
