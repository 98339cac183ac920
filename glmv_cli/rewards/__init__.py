"""The reward system: answer extraction, format and language gates, domain verifiers, LLM judge.

>>> from glmv_cli.rewards import score, extract_answer
>>> r = "<think>2+2</think><answer>It is <|begin_of_box|>4<|end_of_box|></answer>"
>>> score(None, r, "4", "math")
1.0
>>> extract_answer(r)
'4'

``score`` never raises for anything inside a response: a gate failure, a verifier exception or a
timeout gives 0 (``score_detailed`` says which). ``score_many`` scores a batch with a process pool
for verifiers and a thread pool for judge calls, results identical to ``score_detailed`` in a loop.
``check_reference`` validates a record's reference at load time; ``check_answer_format`` says when
prompts ask for ``\\boxed{}`` while the config would score those answers 0. Used by grade-difficulty,
rlcs, eval and ``glmv reward``; it does not import torch or the model code.
"""

from glmv_cli.rewards.extract import GateConfig, extract_answer, format_gate, gate, language_mix
from glmv_cli.rewards.judge import Endpoint, Judge, JudgeConfig, JudgeError, parse_verdict
from glmv_cli.rewards.mathv import VerifierTimeout, fast_equal, math_equal, symbolic_equal
from glmv_cli.rewards.pool import RewardPool, score_many
from glmv_cli.rewards.scoring import (
    RewardConfig,
    RewardResult,
    config_from_dict,
    default_config,
    load_config,
    score,
    score_detailed,
)
from glmv_cli.rewards.userfn import load_reward_fn
from glmv_cli.rewards.validation import check_answer_format, check_reference
from glmv_cli.rewards.verifiers import VERIFIERS, edit_similarity, iou, levenshtein

__all__ = [
    "Endpoint", "GateConfig", "Judge", "JudgeConfig", "JudgeError", "RewardConfig", "RewardPool", "RewardResult",
    "VERIFIERS", "VerifierTimeout", "check_answer_format", "check_reference", "config_from_dict",
    "default_config", "edit_similarity", "extract_answer", "fast_equal", "format_gate", "gate", "iou",
    "language_mix", "levenshtein", "load_config", "load_reward_fn", "math_equal", "parse_verdict", "score",
    "score_detailed", "score_many", "symbolic_equal",
]
