"""RL inputs of ``glmv rlcs``: prompt records, held-out eval records, offline difficulty grades.

RL records are chat records (``glmv_cli.data.schema``) that also carry the reference ``answer``
and the ``domain`` whose verifier scores a response. Both are checked up front, before any model
is built, because a missing reference or a domain without a verifier would otherwise only show
as a zero reward hours into a run: every record gets a message naming file, line and field, and
an unknown domain lists the domains the reward registry knows (built-in plus ``--reward-config``;
any domain with a top-level ``reward_fn``). Each reference is validated by its domain's verifier
(``glmv_cli.rewards.check_reference``): one no verifier can read (``"one"`` for counting) is an
error naming the record, an unambiguous spelling is normalised (``"1.0"`` -> ``"1"``).

``--data`` is a JSONL file or a ``glmv synth`` artifact (its ``rl.jsonl``); with a synth artifact
and no ``--eval-data``, its ``eval.jsonl`` is the held-out set.

Offline grades (``--grades``) come from a ``glmv grade-difficulty`` artifact's ``results.jsonl``
(``{"id", "domain", "grade", ...}`` per sample). A grade artifact of another dataset is refused:
when none of its ids occur in the data, when a shared id has a different domain (same ids, other
content — e.g. a synth set with another seed), or when both the grades and the data came from a
synth artifact and those artifacts differ (manifest hashes). Grades may cover a superset of the
data (extra ids are ignored) or a subset (the rest start ``unseen``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmv_cli.errors import GlmvError, where

GRADE_STAGE = "grade-difficulty"
GRADE_RESULTS = "results.jsonl"


@dataclass
class RLRecord:
    """One validated RL prompt: the parsed record plus what the reward needs."""

    id: str
    domain: str
    answer: str
    record: Any  # glmv_cli.data.schema.Record
    extra: dict | None = None
    difficulty: Any = None


@dataclass
class RLData:
    records: list[RLRecord]
    path: Path
    manifest: Any = None  # the synth artifact's Manifest when --data is an artifact
    eval_default: Path | None = None
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @property
    def domains(self) -> list[str]:
        return [r.domain for r in self.records]


def resolve_data(path: str | Path, *, what: str = "--data") -> tuple[Path, Any, Path | None]:
    """(JSONL file, synth manifest or None, default eval file or None) of ``--data``."""
    from glmv_cli.artifacts import read_manifest

    p = Path(path)
    if p.is_dir():
        m = read_manifest(p, what=what)
        f = p / "rl.jsonl"
        if not f.is_file():
            raise GlmvError(f"{what} '{p}' has no rl.jsonl (expected a glmv synth artifact or an RL JSONL file)")
        ev = p / "eval.jsonl"
        return f, m, ev if ev.is_file() else None
    if not p.is_file():
        raise GlmvError(f"{what} '{p}' does not exist")
    return p, None, None


def _answer(raw: dict[str, Any], p: Path, ln: int) -> str:
    from glmv_cli.data.schema import RecordError

    ans = raw.get("answer")
    if isinstance(ans, (int, float)) and not isinstance(ans, bool) and math.isfinite(ans):
        return str(ans)  # a numeric reference ("answer": 3) reads as its decimal text
    if ans is None:
        raise RecordError(p, ln, "answer", "missing reference answer (RL rewards verify each response against "
                          "the record's 'answer', a non-empty string)", "bad_field")
    if not isinstance(ans, str) or not ans.strip():
        got = "an empty string" if isinstance(ans, str) else f"{type(ans).__name__} {ans!r}"
        raise RecordError(p, ln, "answer", f"expected a non-empty string (or a number), got {got}", "bad_field")
    return ans


def _check_rl_record(line: str, p: Path, ln: int, reward_config: Any, seen: set[str]) -> RLRecord:
    """One JSONL line as a validated RL record, or a RecordError naming file, line and field; the
    reference is checked (and normalised, e.g. counting "1.0" -> "1") by the domain's verifier."""
    from glmv_cli.data.schema import RecordError, parse_record
    from glmv_cli.rewards.validation import check_reference

    known = reward_config.known_domains()
    rec = parse_record(line, path=str(p), line=ln, mode="pretrain")
    raw = json.loads(line)
    if rec.kind != "chat":
        raise RecordError(p, ln, "messages", "missing (an RL record needs 'messages')", "bad_field")
    if not any(m["role"] == "user" for m in rec.messages):
        raise RecordError(p, ln, "messages", "no user turn to prompt with", "bad_field")
    ans = _answer(raw, p, ln)
    dom = raw.get("domain")
    if not isinstance(dom, str) or not dom:
        raise RecordError(p, ln, "domain", "missing (a non-empty string naming the verifier's domain; known: "
                          f"{', '.join(known)})", "bad_field")
    if not reward_config.accepts(dom):
        raise RecordError(p, ln, "domain", f"unknown domain '{dom}'; known: {', '.join(known)}", "bad_field")
    extra = raw.get("extra") if isinstance(raw.get("extra"), dict) else None
    try:
        ans = check_reference(ans, dom, reward_config, extra)
    except GlmvError as e:
        raise RecordError(p, ln, "answer", str(e), "bad_field") from None
    if rec.id in seen:
        raise RecordError(p, ln, "id", f"id '{rec.id}' appears twice; ids must be unique", "bad_field")
    return RLRecord(rec.id, dom, ans, rec, extra, raw.get("difficulty"))


def load_rl_records(path: str | Path, reward_config: Any, *, on_bad: str = "fail",
                    what: str = "--data", limit: int | None = None) -> tuple[list[RLRecord], dict[str, int]]:
    """Reads and validates RL records (used by rlcs and grade-difficulty); ``on_bad='skip'`` counts
    bad ones by reason instead; ``limit`` keeps the first N usable records."""
    from glmv_cli.data.encode import image_grids
    from glmv_cli.data.jsonl import iter_lines
    from glmv_cli.data.schema import RecordError

    p = Path(path)
    out: list[RLRecord] = []
    bad: dict[str, int] = {}
    seen: set[str] = set()
    for ln, line in iter_lines(p, what):
        try:
            r = _check_rl_record(line, p, ln, reward_config, seen)
            image_grids(r.record)  # unreadable image, aspect ratio: now, not at step 1 of the run
        except RecordError as e:
            if on_bad == "fail":
                raise
            bad[e.reason] = bad.get(e.reason, 0) + 1
            continue
        seen.add(r.id)
        out.append(r)
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise GlmvError(f"{what} '{p}' has no usable RL records")
    return out, bad


def load_data(path: str | Path, reward_config: Any, *, on_bad: str = "fail") -> RLData:
    f, m, ev = resolve_data(path)
    recs, bad = load_rl_records(f, reward_config, on_bad=on_bad)
    return RLData(recs, f, m, ev, bad)


def _synth_sha(m: Any) -> str | None:
    """The synth artifact an artifact descends from (its own hash when it is one)."""
    if m is None:
        return None
    if m.stage == "synth":
        return m.sha256
    for entry in m.data.get("inputs", []):
        if entry.get("stage") == "synth":
            return entry.get("manifest_sha256")
    return None


def load_grades(grade_dir: str | Path, data: RLData) -> dict[str, float]:
    """Offline pass-rate grades by id from a grade-difficulty artifact, checked against the data."""
    from glmv_cli.artifacts import read_manifest

    m = read_manifest(grade_dir, expect_stage=GRADE_STAGE, what="--grades")
    f = Path(grade_dir) / GRADE_RESULTS
    if not f.is_file():
        raise GlmvError(f"--grades '{grade_dir}' has no {GRADE_RESULTS}")
    rows: dict[str, dict] = {}
    with open(f, encoding="utf-8") as fh:
        for ln, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise GlmvError(f"{where(f, ln)}: malformed JSON ({e.msg})") from None
            g = row.get("grade") if isinstance(row, dict) else None
            if not isinstance(row, dict) or "id" not in row or not isinstance(g, (int, float)) or not 0 <= g <= 1:
                raise GlmvError(f"{where(f, ln, 'grade')}: expected an object with 'id' and a grade in [0, 1]")
            rows[str(row["id"])] = row
    by_id = {r.id: r for r in data.records}
    shared = [i for i in rows if i in by_id]
    theirs, ours = _synth_sha(m), _synth_sha(data.manifest)
    if theirs and ours and theirs != ours:
        raise GlmvError(f"--grades '{grade_dir}' grades another dataset: it was graded on synth artifact "
                        f"{theirs[:12]}…, --data '{data.path}' comes from {ours[:12]}…; run glmv grade-difficulty "
                        "on this --data")
    if not shared:
        ex = next(iter(rows), "?")
        raise GlmvError(f"--grades '{grade_dir}' grades another dataset: none of its {len(rows)} ids (e.g. '{ex}') "
                        f"is in --data '{data.path}'; run glmv grade-difficulty on this --data")
    for i in shared:
        d = rows[i].get("domain")
        if d is not None and d != by_id[i].domain:
            raise GlmvError(f"--grades '{grade_dir}' grades another dataset: record '{i}' has domain '{d}' there "
                            f"but '{by_id[i].domain}' in --data '{data.path}'; run glmv grade-difficulty on this --data")
    return {i: float(rows[i]["grade"]) for i in shared}
