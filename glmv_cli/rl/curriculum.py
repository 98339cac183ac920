"""Curriculum sampling: pick RL prompts by how informative they are for the current policy.

Per-sample state. Each prompt keeps decayed counts of online rollout results, ``successes`` (sum of
rewards) and ``attempts`` (number of rollouts), plus an optional prior from the offline grade
(pass@k of earlier models from ``glmv grade-difficulty``) worth ``prior_strength`` pseudo-rollouts:

    pass_rate = (successes + s·g) / (attempts + s)        g = offline grade, s = prior_strength

Without a grade the prior is absent (s = 0 for that sample) and a never-rolled sample has no pass
rate: it is ``unseen``. Rewards are in [0, 1]; for 0/1 rewards their mean is the pass rate, for
graded rewards (IoU, edit similarity) it is the mean score. Before a sample's new group is added,
its old counts are multiplied by ``decay``: the policy that produced them is gone, so with decay
0.5 and groups of 8, the previous group still counts as 4 rollouts. The grade prior does not
decay: s = 4 is half of one fresh group, and at most 4 / (4 + 16) = 20 % of the estimate once the
decayed online attempts approach their limit 8 / (1 − 0.5) = 16 — online evidence dominates.

Tiers by pass rate p with boundaries (0.05, 0.3, 0.7, 0.95) (counts: one group of 8, no prior):

    impossible  p < 0.05        (0 of 8 rollouts correct)
    hard        0.05 ≤ p < 0.3  (1–2 of 8)
    medium      0.3 ≤ p < 0.7   (3–5 of 8)   the informative middle
    easy        0.7 ≤ p < 0.95  (6–7 of 8)
    trivial     p ≥ 0.95        (8 of 8)
    unseen      no estimate yet

A sample's sampling weight is its tier's weight (defaults 0.1, 1, 1, 0.5, 0.1, unseen 1). Why
the middle: a 0/1 group with pass rate p is informative (not all equal) with probability
1 − p^n − (1 − p)^n — for n = 8: 0.57 at p = 0.1, 0.94 at 0.3, 0.99 at 0.5, 0.57 at 0.9 —
and its advantage magnitude grows with p(1 − p). Trivial and impossible samples keep a weight of
0.1 rather than 0: estimates are noisy (one 8/8 group) and the policy moves, so they must come
back now and then to be re-graded — never starved. ``uniform`` mode gives every sample weight 1
(curriculum off, for ablations); the pass-rate state is still tracked for the logs.

Multi-domain mixture. With ``domain_weights`` the batch's expected domain shares are
w_d / Σ w, whatever the domain sizes, and tier weights act within a domain. Without them, all
samples compete on their tier weights alone (domains in proportion to their weighted size).

Determinism. Draws use the sampler's own ``numpy.random.Generator`` (PCG64) seeded from ``seed``;
``state_dict()`` is JSON-safe (the 128-bit PCG state as hex strings, counts as floats, which
``json`` round-trips exactly) and ``load_state_dict`` restores it, so a resumed run samples the
same prompts as the uninterrupted one.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from glmv_cli.errors import GlmvError
from glmv_cli.names import TIER_NAMES

UNSEEN = len(TIER_NAMES) - 1
DEFAULT_BOUNDARIES = (0.05, 0.3, 0.7, 0.95)
DEFAULT_TIER_WEIGHTS = {"impossible": 0.1, "hard": 1.0, "medium": 1.0, "easy": 0.5, "trivial": 0.1, "unseen": 1.0}
MODES = ("tiered", "uniform")
STATE_VERSION = 1


def assign_tier(pass_rate: float | None, boundaries: Sequence[float] = DEFAULT_BOUNDARIES) -> int:
    """Tier index of a pass rate: the number of boundaries ≤ p (0 = impossible … 4 = trivial with
    the default four boundaries); ``None`` or NaN → ``UNSEEN``."""
    if pass_rate is None or (isinstance(pass_rate, float) and math.isnan(pass_rate)):
        return UNSEEN
    return bisect.bisect_right(list(boundaries), float(pass_rate))


def tier_weights(counts: Sequence[float], weights: Sequence[float]) -> list[float]:
    """Share of the sampling mass each tier gets: counts[t]·weights[t] / Σ. All zero if empty.

    E.g. 10 trivial samples at weight 0.1 and 10 medium at 1.0 → the medium tier draws 1/1.1 =
    90.9 % of the prompts, the trivial tier 9.1 %.
    """
    if len(counts) != len(weights):
        raise ValueError(f"{len(counts)} tier counts but {len(weights)} weights")
    mass = [float(c) * float(w) for c, w in zip(counts, weights)]
    total = sum(mass)
    return [m / total for m in mass] if total > 0 else [0.0] * len(mass)


def estimate_pass_rate(
    successes: float, attempts: float, prior_successes: float = 0.0, prior_attempts: float = 0.0
) -> float | None:
    """(successes + prior successes) / (attempts + prior attempts); None with no evidence."""
    total = attempts + prior_attempts
    if total <= 0:
        return None
    return (successes + prior_successes) / total


def _ids_digest(ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _rng_state_to_json(rng: np.random.Generator) -> dict[str, Any]:
    st = rng.bit_generator.state
    if st.get("bit_generator") != "PCG64":
        raise ValueError(f"unsupported bit generator {st.get('bit_generator')}")
    return {
        "bit_generator": "PCG64",
        "state": hex(st["state"]["state"]),
        "inc": hex(st["state"]["inc"]),
        "has_uint32": int(st["has_uint32"]),
        "uinteger": int(st["uinteger"]),
    }


def _rng_from_json(d: Mapping[str, Any]) -> np.random.Generator:
    if d.get("bit_generator") != "PCG64":
        raise ValueError(f"unsupported bit generator {d.get('bit_generator')!r}")
    bg = np.random.PCG64()
    bg.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(d["state"], 16), "inc": int(d["inc"], 16)},
        "has_uint32": int(d["has_uint32"]),
        "uinteger": int(d["uinteger"]),
    }
    return np.random.Generator(bg)


def _check_boundaries(boundaries: Sequence[float]) -> tuple[float, ...]:
    b = [float(x) for x in boundaries]
    if len(b) != len(TIER_NAMES) - 2 or any(not (0 < x <= 1) for x in b) or b != sorted(set(b)):
        raise ValueError(f"boundaries must be {len(TIER_NAMES) - 2} increasing values in (0, 1], got {b}")
    return tuple(b)


def _tier_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    w = dict(DEFAULT_TIER_WEIGHTS)
    for k, v in (weights or {}).items():
        if k not in w:
            raise ValueError(f"unknown tier '{k}'; tiers: {', '.join(TIER_NAMES)}")
        w[k] = float(v)
    if any(v <= 0 for v in w.values()):
        raise ValueError(f"tier weights must be > 0 so no tier is starved, got {w}")
    return w


def _domain_weights(domain_weights: Mapping[str, float] | None, names: list[str]) -> dict[str, float] | None:
    """Per-domain mixture weights, one for every domain the data has (None: by tier weight alone)."""
    if not domain_weights:
        return None
    unknown = sorted(set(domain_weights) - set(names))
    if unknown:
        raise GlmvError(f"--domain-weights names domain '{unknown[0]}', which no record has "
                        f"(domains in the data: {', '.join(names)})")
    missing = [d for d in names if d not in domain_weights]
    if missing:
        raise GlmvError(f"--domain-weights has no weight for domain '{missing[0]}'; give one for every domain "
                        f"({', '.join(names)})")
    if any(float(v) < 0 for v in domain_weights.values()) or sum(map(float, domain_weights.values())) <= 0:
        raise GlmvError("--domain-weights must be >= 0 with a positive sum")
    return {d: float(domain_weights[d]) for d in names}


class CurriculumSampler:
    """Draws prompt ids by tier weight and domain mixture; learns pass rates from rollouts.

    ``ids`` are the dataset's unique record ids, ``domains`` their domains (same order; all
    ``"default"`` when omitted). ``offline_pass_rates`` maps ids to an offline grade in [0, 1];
    ids not in the dataset are ignored (a grade artifact may cover a superset).
    """

    def __init__(
        self,
        ids: Sequence[str],
        domains: Sequence[str] | None = None,
        *,
        mode: str = "tiered",
        boundaries: Sequence[float] = DEFAULT_BOUNDARIES,
        weights: Mapping[str, float] | None = None,
        domain_weights: Mapping[str, float] | None = None,
        offline_pass_rates: Mapping[str, float] | None = None,
        prior_strength: float = 4.0,
        decay: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.ids = [str(i) for i in ids]
        if not self.ids:
            raise GlmvError("the RL dataset has no records to sample from")
        self.index = {i: k for k, i in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            dup = next(i for i in self.ids if self.ids.count(i) > 1)
            raise GlmvError(f"record id '{dup}' appears more than once in the RL dataset; ids must be unique")
        n = len(self.ids)
        self.domains = [str(d) for d in domains] if domains is not None else ["default"] * n
        if len(self.domains) != n:
            raise ValueError(f"{n} ids but {len(self.domains)} domains")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
        self.mode = mode
        self.boundaries = _check_boundaries(boundaries)
        self.weights = _tier_weights(weights)
        self._wvec = np.array([self.weights[t] for t in TIER_NAMES], dtype=np.float64)
        if prior_strength < 0:
            raise ValueError(f"prior_strength must be >= 0, got {prior_strength}")
        if not (0.0 < decay <= 1.0):
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.prior_strength = float(prior_strength)
        self.decay = float(decay)
        self.seed = int(seed)
        self.domain_names = sorted(set(self.domains))
        self._dom = np.array([self.domain_names.index(d) for d in self.domains], dtype=np.int64)
        self.domain_weights = _domain_weights(domain_weights, self.domain_names)
        self._set_prior(offline_pass_rates or {})
        self.successes = np.zeros(n, dtype=np.float64)
        self.attempts = np.zeros(n, dtype=np.float64)
        self.visits = np.zeros(n, dtype=np.int64)
        self.rng = np.random.Generator(np.random.PCG64(self.seed))

    def _set_prior(self, offline_pass_rates: Mapping[str, float]) -> None:
        """An offline grade g counts as ``prior_strength`` pseudo-rollouts with pass rate g."""
        n = len(self.ids)
        self.prior_s = np.zeros(n, dtype=np.float64)
        self.prior_a = np.zeros(n, dtype=np.float64)
        self.offline_matched = 0
        for rid, g in offline_pass_rates.items():
            k = self.index.get(str(rid))
            if k is None or g is None:
                continue
            g = float(g)
            if not (0.0 <= g <= 1.0):
                raise GlmvError(f"offline pass rate of record '{rid}' must be in [0, 1], got {g}")
            self.prior_s[k] = self.prior_strength * g
            self.prior_a[k] = self.prior_strength
            self.offline_matched += 1

    # ------------------------------------------------------------------ estimates

    def pass_rates(self) -> np.ndarray:
        """Current pass-rate estimate per sample (NaN = unseen)."""
        tot = self.attempts + self.prior_a
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot > 0, (self.successes + self.prior_s) / tot, np.nan)

    def tiers(self) -> np.ndarray:
        """Tier index per sample (see ``TIER_NAMES``)."""
        p = self.pass_rates()
        t = np.searchsorted(np.asarray(self.boundaries), np.nan_to_num(p, nan=0.0), side="right")
        return np.where(np.isnan(p), UNSEEN, t).astype(np.int64)

    def pass_rate(self, rid: str) -> float | None:
        k = self.index[rid]
        return estimate_pass_rate(self.successes[k], self.attempts[k], self.prior_s[k], self.prior_a[k])

    def tier_of(self, rid: str) -> str:
        return TIER_NAMES[assign_tier(self.pass_rate(rid), self.boundaries)]

    def sample_weights(self) -> np.ndarray:
        """Unnormalised per-sample weight: the tier weight (1 for all in ``uniform`` mode)."""
        if self.mode == "uniform":
            return np.ones(len(self.ids), dtype=np.float64)
        return self._wvec[self.tiers()]

    def probabilities(self, exclude: Iterable[str] = ()) -> np.ndarray:
        """The distribution the next draw uses, after the domain mixture and exclusions."""
        w = self.sample_weights()
        for rid in exclude:
            k = self.index.get(rid)
            if k is not None:
                w[k] = 0.0
        if self.domain_weights is None:
            total = w.sum()
            return w / total if total > 0 else w
        per_dom = np.bincount(self._dom, weights=w, minlength=len(self.domain_names))
        dw = np.array([self.domain_weights[d] for d in self.domain_names], dtype=np.float64)
        dw = np.where(per_dom > 0, dw, 0.0)
        if dw.sum() <= 0:
            return np.zeros_like(w)
        dw = dw / dw.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(per_dom > 0, dw / per_dom, 0.0)
        return w * scale[self._dom]

    # ------------------------------------------------------------------ sampling and updates

    def sample(self, n: int, exclude: Iterable[str] = ()) -> list[str]:
        """``n`` prompt ids, distinct within the call while enough samples are eligible (then
        further without-replacement rounds repeat ids). ``exclude`` ids (e.g. already rolled this
        step) are never drawn; only when they leave nothing eligible is the list shorter than
        ``n``. Deterministic given the sampler state."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        banned = set(exclude)
        this_round: set[str] = set()
        out: list[str] = []
        while len(out) < n:
            p = self.probabilities(banned | this_round)
            avail = int(np.count_nonzero(p))
            if avail == 0:
                if this_round:
                    this_round = set()  # every eligible id was drawn: start a new round
                    continue
                if not banned:
                    raise GlmvError("no sample has a positive sampling weight (check --domain-weights)")
                break
            k = min(n - len(out), avail)
            picks = self.rng.choice(len(self.ids), size=k, replace=False, p=p / p.sum())
            chosen = [self.ids[int(i)] for i in picks]
            out.extend(chosen)
            this_round.update(chosen)
        return out

    def update(self, rid: str, rewards: Sequence[float]) -> float | None:
        """Adds one rollout group's rewards (each in [0, 1]) to a sample; returns its new pass rate."""
        k = self.index.get(rid)
        if k is None:
            raise KeyError(f"unknown record id '{rid}'")
        r = [float(x) for x in rewards]
        if not r:
            return self.pass_rate(rid)
        if any(not (0.0 <= x <= 1.0) for x in r):
            raise ValueError(f"rewards for '{rid}' must be in [0, 1], got {r}")
        self.successes[k] = self.successes[k] * self.decay + sum(r)
        self.attempts[k] = self.attempts[k] * self.decay + len(r)
        self.visits[k] += 1
        return self.pass_rate(rid)

    # ------------------------------------------------------------------ logging

    def tier_histogram(self, domain: str | None = None) -> dict[str, int]:
        """Samples per tier (all tiers listed, zeros included), optionally for one domain."""
        t = self.tiers()
        if domain is not None:
            if domain not in self.domain_names:
                raise KeyError(f"unknown domain '{domain}'")
            t = t[self._dom == self.domain_names.index(domain)]
        counts = np.bincount(t, minlength=len(TIER_NAMES))
        return {name: int(c) for name, c in zip(TIER_NAMES, counts)}

    def metrics(self) -> dict[str, float]:
        """Flat metrics for ``metrics.jsonl``: tier counts, expected tier shares of the next draw,
        mean pass rate over graded samples, coverage (share of samples rolled at least once)."""
        hist = self.tier_histogram()
        out: dict[str, float] = {f"tier_{k}": float(v) for k, v in hist.items()}
        p = self.probabilities()
        t = self.tiers()
        for i, name in enumerate(TIER_NAMES):
            out[f"tier_share_{name}"] = float(p[t == i].sum())
        rates = self.pass_rates()
        seen = ~np.isnan(rates)
        out["pass_rate_mean"] = float(rates[seen].mean()) if seen.any() else 0.0
        out["coverage"] = float((self.visits > 0).mean())
        return out

    def domain_metrics(self) -> dict[str, dict[str, float]]:
        """Per domain: tier counts, the domain's share of the next draw, mean pass rate over its
        graded samples, and coverage — the per-domain view of ``metrics``."""
        p = self.probabilities()
        rates = self.pass_rates()
        out: dict[str, dict[str, float]] = {}
        for k, d in enumerate(self.domain_names):
            sel = self._dom == k
            m: dict[str, float] = {f"tier_{t}": float(c) for t, c in self.tier_histogram(d).items()}
            m["draw_share"] = float(p[sel].sum())
            r = rates[sel]
            seen = ~np.isnan(r)
            m["pass_rate_mean"] = float(r[seen].mean()) if seen.any() else 0.0
            m["coverage"] = float((self.visits[sel] > 0).mean())
            out[d] = m
        return out

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: RNG, and counts of every sample rolled at least once (sparse)."""
        touched = np.flatnonzero((self.visits > 0) | (self.attempts > 0))
        return {
            "version": STATE_VERSION,
            "n": len(self.ids),
            "ids_sha256": _ids_digest(self.ids),
            "mode": self.mode,
            "seed": self.seed,
            "rng": _rng_state_to_json(self.rng),
            "index": [int(i) for i in touched],
            "successes": self.successes[touched].tolist(),
            "attempts": self.attempts[touched].tolist(),
            "visits": self.visits[touched].tolist(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a ``state_dict``. The dataset (ids, in order) must be the one it was saved with;
        the priors come from this sampler's own offline grades."""
        if state.get("version") != STATE_VERSION:
            raise GlmvError(f"curriculum sampler state has version {state.get('version')!r}, expected {STATE_VERSION}")
        if state.get("n") != len(self.ids) or state.get("ids_sha256") != _ids_digest(self.ids):
            raise GlmvError(
                f"curriculum sampler state was saved for a different dataset ({state.get('n')} records, "
                f"this one has {len(self.ids)} or different ids); resume with the same --data"
            )
        idx = np.asarray(state["index"], dtype=np.int64)
        if not (len(idx) == len(state["successes"]) == len(state["attempts"]) == len(state["visits"])):
            raise GlmvError("curriculum sampler state is damaged: per-sample lists differ in length")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.ids)):
            raise GlmvError("curriculum sampler state is damaged: sample index out of range")
        self.successes = np.zeros(len(self.ids), dtype=np.float64)
        self.attempts = np.zeros(len(self.ids), dtype=np.float64)
        self.visits = np.zeros(len(self.ids), dtype=np.int64)
        self.successes[idx] = np.asarray(state["successes"], dtype=np.float64)
        self.attempts[idx] = np.asarray(state["attempts"], dtype=np.float64)
        self.visits[idx] = np.asarray(state["visits"], dtype=np.int64)
        self.rng = _rng_from_json(state["rng"])
