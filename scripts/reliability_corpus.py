"""Runs the reliability corpus (glmv_cli.testing.corpus) and prints or writes its table.

    python scripts/reliability_corpus.py              # print the table and the counts
    python scripts/reliability_corpus.py --write-docs # also replace the table in docs/reliability.md

Every case runs in-process with a wall-clock limit; the work happens in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

BEGIN, END = "<!-- corpus table: begin -->", "<!-- corpus table: end -->"


def main() -> int:
    from glmv_cli.testing.corpus import build_fixtures, run_corpus, table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-docs", action="store_true", help="replace the table in docs/reliability.md")
    ap.add_argument("--limit-s", type=float, default=60.0, help="wall-clock limit per case (a hang)")
    ap.add_argument("--only", default="", help="run only cases whose stage contains this text")
    args = ap.parse_args()
    from glmv_cli.testing.corpus_cases import CASES

    cases = [c for c in CASES if args.only in c.stage]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fx = build_fixtures(Path(tmp) / "fx")
        t1 = time.perf_counter()
        outcomes = run_corpus(fx, Path(tmp) / "w", cases, args.limit_s)
        t2 = time.perf_counter()
        text = table(outcomes, Path(tmp))
    print(text)
    print(f"\nfixtures {t1 - t0:.1f} s, {len(outcomes)} cases {t2 - t1:.1f} s "
          f"(slowest {max(o.seconds for o in outcomes):.2f} s)")
    if args.write_docs:
        doc = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
        body = doc.read_text(encoding="utf-8")
        head, rest = body.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")
        print(f"wrote {doc}")
    return 0 if all(o.status in ("clear", "skipped") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
