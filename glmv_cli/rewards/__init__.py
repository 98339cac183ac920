"""The reward system: answer extraction, format and language gates, domain verifiers, LLM judge.

>>> from glmv_cli.rewards import score, extract_answer
>>> r = "<think>2+2</think><answer>It is <|begin_of_box|>4<|end_of_box|></answer>"
>>> score(None, r, "4", "math")
1.0
>>> extract_answer(r)
'4'

``score`` never raises for anything inside a response: a gate failure, a verifier exception or a
timeout gives 0 (``score_detailed`` says which). Used by grade-difficulty, rlcs and eval; it does
not import torch or the model code.
"""

from glmv_cli.rewards.extract import GateConfig, extract_answer, format_gate, gate, language_mix
from glmv_cli.rewards.judge import Endpoint, Judge, JudgeConfig, JudgeError, parse_verdict
from glmv_cli.rewards.mathv import VerifierTimeout, fast_equal, math_equal, symbolic_equal
from glmv_cli.rewards.scoring import (
    RewardConfig,
    RewardResult,
    config_from_dict,
    default_config,
    load_config,
    score,
    score_detailed,
)
from glmv_cli.rewards.verifiers import VERIFIERS, edit_similarity, iou, levenshtein

__all__ = [
    "Endpoint", "GateConfig", "Judge", "JudgeConfig", "JudgeError", "RewardConfig", "RewardResult",
    "VERIFIERS", "VerifierTimeout", "config_from_dict", "default_config", "edit_similarity",
    "extract_answer", "fast_equal", "format_gate", "gate", "iou", "language_mix", "levenshtein",
    "load_config", "math_equal", "parse_verdict", "score", "score_detailed", "symbolic_equal",
]
