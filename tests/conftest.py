"""Test environment: offline hub, CPU DeepSpeed (off a GPU), a fixed thread count per op.

CPU training is bitwise reproducible only for a fixed thread count, and the resume tests compare an
uninterrupted run with a killed-and-resumed one exactly (same op sequence). The count is
OMP_NUM_THREADS (default 1; CI has 2 cores), set here for this process and inherited by every
subprocess a test starts, so those comparisons hold for any value
(``OMP_NUM_THREADS=2 bash scripts/test.sh``).
"""

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if not torch.cuda.is_available():  # on a GPU machine DeepSpeed must find its CUDA accelerator
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing means no GPU either
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m gpu` on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    """``published(kind, digits=None)``: a checkpoint directory in the published layout of ``kind``
    (glm41v, glm45v, glm46v; ``glmv_cli.testing.published``), built once per test session. With
    ``digits`` its weights are the bigram policy ``answer_script(kind, digits)``."""
    from glmv_cli.testing.published import answer_script, build

    cache = {}

    def get(kind: str, digits=None):
        key = (kind, tuple(digits) if digits else None)
        if key not in cache:
            name = kind + ("-answers-" + "".join(digits) if digits else "")
            script = answer_script(kind, digits) if digits else None
            cache[key] = build(kind, tmp_path_factory.mktemp(name), script=script)
        return cache[key]

    return get
