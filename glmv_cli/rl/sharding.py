"""Data-parallel RLCS: how rollouts, the update and held-out eval are split over ranks.

Every rank holds the policy (ZeRO 0-2: whole; ZeRO-3: its shard), the full record list and the
same sampler, controller and RNG seeds. The invariant that keeps N ranks equal to one process:
**every rank sees every group, in the same order.** So a step goes

1. all ranks draw the same prompt ids (same sampler state, same RNG);
2. rank r rolls and scores ``ids[r::world]`` (rollout seeds hash (seed, step, round, prompt id,
   index), never the batch, so which rank rolls a prompt does not change its responses); under
   ZeRO-3 the ranks decode in lock-step (``generation.lockstep``);
3. ``gather_groups`` all-gathers the scored groups -- token ids (int32), log-probs (float32) and
   forced flags (uint8) as tensors through the process group, rewards and per-rollout metadata
   (finish reason, seed, length) as small JSON -- and rebuilds them in ``ids`` order on every
   rank; sampler and expansion controller then update identically everywhere. Response texts
   stay on the rank that scored them (nothing after scoring reads them);
4. the update's plan (``rl.rows.plan_update``) deals packs of the kept rows to the ranks and pads
   every rank to the same number of micro batches; the engine sums each rank's loss units and
   divides by the global count, so the gradient is the one-process gradient up to the order of
   the reduction.

Cost: the rollout phase (most of a step) divides by N; each rank runs the update forward/backward
on 1/N of the packs; the gather moves 9 bytes per generated token plus ~60 bytes of JSON per
rollout.
"""

from __future__ import annotations

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


def gather_groups(groups: Sequence[Any], n: int, rebuild: Callable[[str], tuple[Any, Any]]) -> list[Any]:
    """All ranks' scored groups (this rank's: ``shard(ids)``'s), rebuilt in the order of the ``n``
    ids on every rank. ``rebuild(rid) -> (record, prompt)``."""
    import torch

    from glmv_cli.generation import Rollout
    from glmv_cli.rl.groups import ScoredGroup
    from glmv_cli.training import dist

    rolls = [r for g in groups for r in g.rollouts]
    tensors = {"tokens": torch.tensor([t for r in rolls for t in r.token_ids], dtype=torch.int32),
               "logprobs": torch.tensor([x for r in rolls for x in r.logprobs], dtype=torch.float32),
               "forced": torch.tensor([f for r in rolls for f in r.forced], dtype=torch.uint8)}
    meta = [{"rid": g.record.id, "rewards": list(g.rewards), "judge_failed": bool(g.judge_failed),
             "gate_failures": int(g.gate_failures),
             "rollouts": [[r.index, r.seed, r.finish_reason, r.num_tokens] for r in g.rollouts]} for g in groups]
    parts = []
    for t, ms in dist.all_gather_tensors(tensors, meta):
        tok, lp, fr = t["tokens"].tolist(), t["logprobs"].tolist(), [bool(x) for x in t["forced"].tolist()]
        off = 0
        mine = []
        for m in ms:
            record, prompt = rebuild(m["rid"])
            rs = []
            for index, seed, finish, k in m["rollouts"]:
                rs.append(Rollout(prompt_id=m["rid"], index=index, seed=seed, prompt_ids=list(prompt.input_ids),
                                  token_ids=tok[off:off + k], logprobs=lp[off:off + k], forced=fr[off:off + k],
                                  finish_reason=finish))
                off += k
            mine.append(ScoredGroup(record, prompt, rs, [float(x) for x in m["rewards"]], m["judge_failed"],
                                    m["gate_failures"]))
        parts.append(mine)
    return unshard(parts, n)


def probe_params(model_config: Any) -> dict[str, int] | None:
    """(image token id, flattened patch size, merge size) of a one-token dummy image; None when the
    model has no vision tower."""
    v = getattr(model_config, "vision_config", None)
    if v is None:
        return None
    patch_dim = int(v.in_channels) * int(v.temporal_patch_size) * int(v.patch_size) ** 2
    return {"image_token_id": int(model_config.image_token_id), "patch_dim": patch_dim,
            "merge": int(v.spatial_merge_size)}
