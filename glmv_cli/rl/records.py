"""RL inputs of ``glmv rlcs``: prompt records, held-out eval records, offline difficulty grades.

RL records are chat records (``glmv_cli.data.schema``) that also carry the reference ``answer``
and the ``domain`` whose verifier scores a response. Both are checked up front, before any model
is built, because a missing reference or a domain without a verifier would otherwise only show
as a zero reward hours into a run: every record gets a message naming file, line and field, and
an unknown domain lists the domains the reward registry knows (built-in plus ``--reward-config``).

``--data`` is a ``glmv synth`` artifact (its ``rl.jsonl``; with no ``--eval-data`` its
``eval.jsonl`` is the held-out set) or any input :mod:`glmv_cli.data.formats` reads: JSONL, JSON
arrays, parquet / Arrow files, ``datasets`` folders and ``hf:owner/name``, in glmv, messages,
sharegpt, verl or easyr1 rows. ``--domain-map`` / ``--default-domain`` decide the domain of rows
whose own (e.g. verl's ``data_source``) is no verifier's name.

:func:`check_boxed_prompts` refuses, up front, prompts that ask for ``\\boxed{}`` answers when the
reward's format gate would score every such answer 0.

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
import re
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
    path: Path | str
    manifest: Any = None  # the synth artifact's Manifest when --data is an artifact
    eval_default: Path | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""  # SHA-256 of the data (file, folder or Hub dataset), for run fingerprints
    format: str = "glmv"

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @property
    def domains(self) -> list[str]:
        return [r.domain for r in self.records]


def resolve_data(path: str | Path, *, what: str = "--data") -> tuple[str, Any, Path | None]:
    """(data spec, synth manifest or None, default eval file or None) of ``--data``: a synth
    artifact gives its rl.jsonl and eval.jsonl; anything else (a file, a datasets folder,
    ``hf:owner/name``) is read by its container."""
    from glmv_cli.artifacts import MANIFEST, read_manifest
    from glmv_cli.data.formats.containers import HUB_PREFIX, is_dataset_folder

    if str(path).startswith(HUB_PREFIX):
        return str(path), None, None
    p = Path(path)
    if p.is_dir() and (p / MANIFEST).is_file():
        m = read_manifest(p, what=what)
        f = p / "rl.jsonl"
        if not f.is_file():
            raise GlmvError(f"{what} '{p}' has no rl.jsonl (expected a glmv synth artifact or an RL JSONL file)")
        ev = p / "eval.jsonl"
        return str(f), m, ev if ev.is_file() else None
    if not p.exists():
        raise GlmvError(f"{what} '{p}' does not exist")
    if p.is_dir() and not is_dataset_folder(p):
        read_manifest(p, what=what)  # says what a glmv artifact directory lacks
    return str(p), None, None


def _domain_of(rec: Any, domains: Any, known: list[str], reward_config: Any) -> str:
    """The verifier domain of a record after --domain-map / --default-domain, checked."""
    from glmv_cli.data.schema import RecordError

    raw = rec.meta.get("domain")
    dom = domains.apply(raw) if domains is not None else raw
    if not isinstance(dom, str) or not dom:
        raise RecordError(rec.path, rec.line, "domain", "missing (a non-empty string naming the verifier's domain; "
                          f"known: {', '.join(known)}; rows without one take --default-domain)", "bad_field")
    if not reward_config.accepts(dom):
        hint = ""
        if dom == raw:
            ability = (rec.meta.get("extra") or {}).get("ability")
            hint = f"; map it with --domain-map '{raw}=DOMAIN'" + (f" (the row's ability is '{ability}')"
                                                                    if isinstance(ability, str) else "")
        raise RecordError(rec.path, rec.line, "domain", f"unknown domain '{dom}'; known: {', '.join(known)}{hint}",
                          "bad_field")
    return dom


def _answer(rec: Any) -> str:
    """The reference answer as text: a number ("answer": 3) reads as its decimal text."""
    from glmv_cli.data.schema import RecordError

    ans = rec.meta.get("answer")
    if isinstance(ans, (int, float)) and not isinstance(ans, bool) and math.isfinite(ans):
        return str(ans)
    if ans is None:
        raise RecordError(rec.path, rec.line, "answer", "missing reference answer (RL rewards verify each response "
                          "against the record's 'answer', a non-empty string)", "bad_field")
    if not isinstance(ans, str) or not ans.strip():
        got = "an empty string" if isinstance(ans, str) else f"{type(ans).__name__} {ans!r}"
        raise RecordError(rec.path, rec.line, "answer", f"expected a non-empty string (or a number), got {got}",
                          "bad_field")
    return ans


def rl_record(rec: Any, reward_config: Any, domains: Any, known: list[str], seen: set[str]) -> RLRecord:
    """One parsed record as a validated RL record, or a RecordError naming file, line and field: the
    prompt, the domain, the reference (checked and normalised by the domain's verifier, e.g.
    counting "1.0" -> "1") and every image (readable, aspect ratio) -- now, not at step 1 of a run."""
    from glmv_cli.data.encode import image_grids
    from glmv_cli.data.schema import RecordError
    from glmv_cli.rewards.validation import check_reference

    p, ln = rec.path, rec.line
    if rec.kind != "chat":
        raise RecordError(p, ln, "messages", "missing (an RL record needs 'messages')", "bad_field")
    if not any(m["role"] == "user" for m in rec.messages):
        raise RecordError(p, ln, "messages", "no user turn to prompt with", "bad_field")
    ans = _answer(rec)
    dom = _domain_of(rec, domains, known, reward_config)
    if rec.id in seen:
        raise RecordError(p, ln, "id", f"id '{rec.id}' appears twice; ids must be unique", "bad_field")
    extra = rec.meta.get("extra") if isinstance(rec.meta.get("extra"), dict) else None
    try:
        ans = check_reference(ans, dom, reward_config, extra)
    except GlmvError as e:
        raise RecordError(p, ln, "answer", str(e), "bad_field") from None
    image_grids(rec)
    return RLRecord(rec.id, dom, ans, rec, extra, rec.meta.get("difficulty"))


def read_rl_source(src: Any, fmt: str, reward_config: Any, *, on_bad: str = "fail", what: str = "--data",
                   limit: int | None = None, domains: Any = None) -> tuple[list[RLRecord], dict[str, int]]:
    """Reads and validates the RL records of an opened source (any container, any row format)."""
    from glmv_cli.data.formats import iter_records
    from glmv_cli.data.schema import RecordError

    out: list[RLRecord] = []
    bad: dict[str, int] = {}
    seen: set[str] = set()
    known = reward_config.known_domains()
    for _, item in iter_records(src, fmt, "pretrain"):
        try:
            if isinstance(item, RecordError):
                raise item
            r = rl_record(item, reward_config, domains, known, seen)
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
        raise GlmvError(f"{what} '{src.name}' has no usable RL records")
    return out, bad


def load_rl_records(path: str | Path, reward_config: Any, *, on_bad: str = "fail", what: str = "--data",
                    limit: int | None = None, source: Any = None, domains: Any = None
                    ) -> tuple[list[RLRecord], dict[str, int]]:
    """Reads and validates RL records (used by rlcs and grade-difficulty); ``on_bad='skip'`` counts
    bad ones by reason instead; ``limit`` keeps the first N usable records. ``source`` (a
    DataFormatConfig) says how the input is read, ``domains`` (a DomainConfig) maps its domains."""
    from glmv_cli.data.formats.options import DataFormatConfig

    cfg = source or DataFormatConfig()
    src = cfg.open(str(path), what=what)
    return read_rl_source(src, cfg.format_of(src), reward_config, on_bad=on_bad, what=what, limit=limit,
                          domains=domains)


def load_data(path: str | Path, reward_config: Any, *, on_bad: str = "fail", source: Any = None,
              domains: Any = None, limit: int | None = None) -> RLData:
    """``--data`` resolved (synth artifact or any container), read and checked."""
    from glmv_cli.data.formats.options import DataFormatConfig

    spec, m, ev = resolve_data(path)
    cfg = source or DataFormatConfig()
    src = cfg.open(spec, what="--data")
    fmt = cfg.format_of(src)
    recs, bad = read_rl_source(src, fmt, reward_config, on_bad=on_bad, limit=limit, domains=domains)
    shown: Path | str = Path(spec) if not spec.startswith("hf:") else spec
    return RLData(recs, shown, m, ev, bad, src.fingerprint(), fmt)


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


_BOXED = re.compile(r"\\boxed(?![A-Za-z])")


def _asks_for_boxed(rec: Any) -> bool:
    """Does the prompt (system and user turns up to the last user turn) mention ``\\boxed``?"""
    from glmv_cli.generation.prompts import prompt_messages

    for m in prompt_messages(rec.messages):
        if m["role"] != "assistant":
            for part in m["content"]:
                if part["type"] == "text" and _BOXED.search(part["text"]):
                    return True
    return False


def check_boxed_prompts(records: list[RLRecord], reward_config: Any, what: str = "--data") -> None:
    """Refuses prompts that ask for ``\\boxed{}`` answers when every such answer would score 0.

    verl and EasyR1 prompt sets say "put the final answer in \\boxed{}"; glmv's format gate wants
    GLM's ``<|begin_of_box|>`` tokens and by default fails an answer holding ``\\boxed`` (reason
    ``boxed``), so such a run would learn from all-zero rewards. A user reward function
    (``--reward-fn``) reads whole responses, and a gate with ``forbid_boxed: false`` and
    ``require_box: false`` passes the answer part to the verifier (math-verify reads ``\\boxed{}``);
    either makes the data usable.
    """
    gates = reward_config.gates
    if getattr(reward_config, "reward_fn", None) or not (gates.forbid_boxed or gates.require_box):
        return
    asking = [r for r in records if _asks_for_boxed(r.record)]
    if not asking:
        return
    ex = asking[0]
    raise GlmvError(
        f"{what}: {len(asking)} of {len(records)} prompts ask for a \\boxed{{}} answer (e.g. record '{ex.id}' at "
        f"{ex.record.where}), but the reward's format gate scores such answers 0 (forbid_boxed "
        f"{str(gates.forbid_boxed).lower()}, require_box {str(gates.require_box).lower()}: GLM answers inside "
        "<|begin_of_box|>...<|end_of_box|>). Score them with your own function (--reward-fn "
        "package.module:function), or give a --reward-config whose gates set forbid_boxed: false and "
        "require_box: false (the math verifier reads \\boxed{}), or rewrite the prompts to ask for GLM's box")
