"""Fixtures for tests and benchmarks: tiny GLM-4V models and packs built in memory.

Nothing under ``glmv_cli/stages`` imports this package. It ships with glmv so that the benchmarks
in ``benchmarks/`` and users' own tests can build the same tiny models the suite uses.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` of a source checkout as a module (the tests drive its ``main``)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
