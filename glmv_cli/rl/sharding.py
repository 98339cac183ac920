"""Data-parallel RLCS: how rollouts, the update and held-out eval are split over ranks.

Every rank holds the full policy (ZeRO 0–2), the full record list and the same sampler, controller
and RNG seeds. The invariant that keeps N ranks equal to one process: **every rank sees every
group, in the same order.** So a step goes

1. all ranks draw the same prompt ids (same sampler state, same RNG);
2. rank r rolls and scores ``ids[r::world]`` (rollout seeds hash (seed, step, round, prompt id,
   index), never the batch, so which rank rolls a prompt does not change its responses);
3. ``gather_groups`` all-gathers the scored groups as JSON (token ids, log-probs, forced flags,
   finish reasons, texts, rewards) and rebuilds them in ``ids`` order on every rank; sampler and
   expansion controller then update identically everywhere;
4. the rows of the kept groups are dealt round-robin (``rows[r::world]``); the engine sums each
   rank's loss units and divides by the global count, so the gradient is the one-process
   gradient up to the order of the reduction.

Cost: the rollout phase (most of a step) divides by N; each rank runs the update forward/backward
on 1/N of the rows; the gather moves ~10 bytes per generated token (JSON), negligible next to
generation. ZeRO-3 is refused: its parameter all-gathers run inside every forward, and ranks
decoding different numbers of tokens would wait on each other forever.

Micro batches of padded rows that carry no image get a one-token probe image row (zero loss
mask) when N > 1, so that the vision tower runs — and its gradient buckets exist — on every rank
in every micro batch, as ``training.loss.with_vision_probe`` does for packed rows.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """This rank's share, dealt round-robin: items ``rank, rank + world, ...``."""
    return list(items[rank::world])


def unshard(parts: Sequence[Sequence[T]], n: int) -> list[T]:
    """Inverse of ``shard`` over all ranks' parts: the ``n`` items back in their original order."""
    world = len(parts)
    out: list[T] = []
    for i in range(n):
        part = parts[i % world]
        out.append(part[i // world])
    return out


def gather_in_order(local: list[Any], n: int, gather: Callable[[Any], list[Any]]) -> list[Any]:
    """All ranks' ``shard`` results (JSON values), rebuilt in the original order of ``n`` items."""
    return unshard(gather(local), n)


def group_to_json(g: Any) -> dict[str, Any]:
    """A ScoredGroup without its record and prompt (every rank rebuilds those from the id)."""
    return {"rid": g.record.id, "rollouts": [asdict(r) for r in g.rollouts], "rewards": list(g.rewards),
            "judge_failed": bool(g.judge_failed), "gate_failures": int(g.gate_failures)}


def group_from_json(d: dict[str, Any], record: Any, prompt: Any) -> Any:
    from glmv_cli.generation import Rollout
    from glmv_cli.rl.groups import ScoredGroup

    return ScoredGroup(record, prompt, [Rollout(**r) for r in d["rollouts"]], [float(x) for x in d["rewards"]],
                       bool(d["judge_failed"]), int(d["gate_failures"]))


def probe_params(model_config: Any) -> dict[str, int] | None:
    """(image token id, flattened patch size, merge size) of a one-token dummy image; None when the
    model has no vision tower."""
    v = getattr(model_config, "vision_config", None)
    if v is None:
        return None
    patch_dim = int(v.in_channels) * int(v.temporal_patch_size) * int(v.patch_size) ** 2
    return {"image_token_id": int(model_config.image_token_id), "patch_dim": patch_dim,
            "merge": int(v.spatial_merge_size)}
