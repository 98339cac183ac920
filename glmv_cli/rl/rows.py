"""The RL update's rows: one per response (prompt + response), planned into packs and collated.

Rows. ``build_rows`` turns the kept groups into one ``Row`` per response with its group-relative
advantage; the rows of a group share their prompt (and its images) by reference.

Plan (``plan_update``). The kept rows are split, in group order, into exactly ``mini_batches``
contiguous mini-batches (one optimizer step each; sizes differ by at most one row). Inside a
mini-batch the rows are packed by length with the SFT packer (``data.packing.best_fit_decreasing``)
into packs of at most ``micro_batch x longest row`` tokens -- the slots one padded micro batch
of ``micro_batch`` rows would take, so a pack never needs more activation memory than the padded
layout did -- but a pack holds as many rows as fit, not a fixed count, and has no padding. The
packer's items are *units*: consecutive rows of one group, cut where the next row would overflow
a pack, so a group's rows tend to share a pack and its prompt's vision features are computed once
for all of them (``collate_pack``). Packs are dealt to the ranks round-robin; a rank with fewer
packs than another in the same mini-batch gets *dead* packs (one row of two pad tokens with no
loss token), so every rank runs the same number of forwards, backwards and collectives whatever
the number of kept groups (DeepSpeed ZeRO 1-3 reduce or gather in every micro step). Every rank
holds every row (``rl.sharding``), so each computes the whole plan itself, without communication,
and 1 and N processes run the very same packs.

Collate (``collate_pack``). A pack is one row of the model's packed format: input ids [1, L] and
4-row position ids [4, 1, L] (row 0 restarts at 0 for each sample, so transformers builds a
block-diagonal causal mask; rows 1-3 are the 3D-RoPE ids of ``data.positions.sample_positions``).
Images are stored once per distinct prompt (``pixel_values``/``image_grid_thw``) with
``image_runs`` naming, for each image run of the ids in order, which stored image fills it; a pack
without a real image gets a one-token probe image (zero pixels) so the vision tower runs -- and
its gradient buckets exist -- in every micro batch on every rank (``update.forward_logp`` ties
the probe's features to the loss with weight 0). Loss tensors are response-aligned [rows,
T_resp]: ``layout`` indexes each row's response tokens in the flat vector of response positions
``resp_pos`` (position t predicts token t + 1), so the GRPO loss and its aggregation modes see the
same [B, T] shapes as with padded rows.

Padding ratio (``PlanStats.padding_ratio``): token slots the forwards process / real row tokens.
Padded rows in group order (the former layout) cost 1.5-1.7x at micro batch 4 on long-tailed
response lengths; packs cost ~1.0x plus dead packs and probe tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from glmv_cli.data.packing import best_fit_decreasing
from glmv_cli.data.positions import sample_positions
from glmv_cli.errors import GlmvError
from glmv_cli.rl import grpo


@dataclass
class Row:
    ids: list[int]
    prompt_len: int
    forced: list[bool]
    logprobs: list[float]
    advantage: float
    pixel_values: Any
    grid: Any
    domain: str
    rid: str = ""
    live: bool = True  # False: a dead row (no loss token), padding a rank's micro batches

    @property
    def response_len(self) -> int:
        return len(self.ids) - self.prompt_len


def build_rows(groups: Sequence[Any], *, std_normalize: bool, eps: float) -> list[Row]:
    """One row per response of the kept groups, in group order, with its GRPO advantage."""
    rows = []
    for g in groups:
        adv = grpo.group_advantages(torch.tensor([g.rewards], dtype=torch.float32), std_normalize=std_normalize,
                                    eps=eps)[0]
        for r, a in zip(g.rollouts, adv.tolist()):
            rows.append(Row(list(g.prompt.input_ids) + list(r.token_ids), len(g.prompt.input_ids), list(r.forced),
                            list(r.logprobs), float(a), g.prompt.pixel_values, g.prompt.image_grid_thw,
                            g.record.domain, g.record.id))
    return rows


def dead_row(pad_id: int) -> Row:
    """Two pad tokens, one 'response' position with no loss: same module calls, no gradient."""
    return Row([pad_id, pad_id], 1, [False], [0.0], 0.0, None, None, "", "<dead>", live=False)


def check_response_tokens(rows: Sequence[Row], banned: Sequence[int], tokenizer: Any) -> None:
    """A response token the rollout engine never samples (a multimodal placeholder) is a bug
    upstream: the learner could not re-run the row (it would look for image features)."""
    ban = set(banned)
    for r in rows:
        for k, t in enumerate(r.ids[r.prompt_len:]):
            if t in ban:
                raise GlmvError(
                    f"rollout of record '{r.rid}': response token {k} is the multimodal token id {t} "
                    f"({tokenizer.convert_ids_to_tokens(t)!r}), which the rollout "
                    "engine masks out and never samples; the learner cannot re-run such a response (it would look "
                    "for image features)")


# ----------------------------------------------------------------------------- the plan


@dataclass
class PlanStats:
    real_tokens: int = 0
    slots: int = 0
    forwards: int = 0

    @property
    def padding_ratio(self) -> float:
        return self.slots / max(1, self.real_tokens)


def mini_batch_bounds(n_rows: int, mini_batches: int) -> list[tuple[int, int]]:
    """[start, end) of each of ``min(mini_batches, n_rows)`` contiguous near-equal mini-batches."""
    m = min(mini_batches, n_rows)
    return [(j * n_rows // m, (j + 1) * n_rows // m) for j in range(m)]


def _units(rows: Sequence[int], lengths: Sequence[int], keys: Sequence[str], cap: int) -> list[list[int]]:
    """Consecutive rows of one group, cut before the row that would make the unit exceed ``cap``."""
    units: list[list[int]] = []
    size = 0
    for i in rows:
        if units and keys[units[-1][-1]] == keys[i] and size + lengths[i] <= cap:
            units[-1].append(i)
            size += lengths[i]
        else:
            units.append([i])
            size = lengths[i]
    return units


def plan_update(lengths: Sequence[int], keys: Sequence[str], *, world: int, mini_batches: int,
                micro_batch: int) -> list[list[list[list[int]]]]:
    """plan[mini-batch][rank] = that rank's packs (lists of row indices; [] = a dead pack).

    Every rank's list in one mini-batch has the same length. ``keys`` group the rows (the prompt's
    record id); ``lengths`` are row lengths in tokens."""
    if not lengths:
        return []
    cap = max(1, micro_batch) * max(lengths)
    plan = []
    for s, e in mini_batch_bounds(len(lengths), mini_batches):
        units = _units(range(s, e), lengths, keys, cap)
        bins = best_fit_decreasing([sum(lengths[i] for i in u) for u in units], cap)
        packs = [[i for u in b for i in units[u]] for b in bins]
        per_rank = [packs[r::world] for r in range(world)]
        n = max(len(p) for p in per_rank)
        plan.append([p + [[] for _ in range(n - len(p))] for p in per_rank])
    return plan


def plan_stats(plan: Sequence[Sequence[Sequence[Sequence[int]]]], lengths: Sequence[int]) -> PlanStats:
    """Real tokens, forward token slots (dead packs: 2 tokens) and forwards of one pass, all ranks."""
    st = PlanStats(real_tokens=int(sum(lengths)))
    for mb in plan:
        for packs in mb:
            for p in packs:
                st.forwards += 1
                st.slots += sum(lengths[i] for i in p) if p else 2
    return st


# ----------------------------------------------------------------------------- collate


@dataclass(frozen=True)
class PackSpec:
    """What a pack needs from the model and tokenizer."""

    pad_id: int
    image_token_id: int
    merge: int  # vision spatial merge size
    patch_dim: int  # flattened patch size of one pixel row; 0: the model has no vision tower
    mask_forced: bool = True


def _image_part(rows: Sequence[Row], spec: PackSpec, min_images: int) -> dict[str, Any]:
    """Distinct prompts' images once each (+ probe images), and which one fills each image run."""
    stored: dict[str, int] = {}
    pvs, grids, runs = [], [], []
    n_img = 0
    for r in rows:
        if r.pixel_values is None:
            continue
        g = torch.as_tensor(r.grid).reshape(-1, 3)
        if r.rid not in stored:
            stored[r.rid] = n_img
            pvs.append(torch.as_tensor(r.pixel_values))
            grids.append(g)
            n_img += g.shape[0]
        runs.extend(range(stored[r.rid], stored[r.rid] + g.shape[0]))
    n_probe = max(min_images, 1 if spec.patch_dim else 0) - n_img
    for _ in range(max(0, n_probe)):
        pvs.append(torch.zeros(spec.merge ** 2, spec.patch_dim))
        grids.append(torch.tensor([[1, spec.merge, spec.merge]]))
    if not pvs:
        return {}
    return {"pixel_values": torch.cat(pvs).float(), "image_grid_thw": torch.cat(grids).long(),
            "image_runs": torch.tensor(runs, dtype=torch.long), "real_images": n_img}


def collate_pack(rows: Sequence[Row], spec: PackSpec, *, min_images: int = 0) -> dict[str, Any]:
    """One pack (``rows``; empty: a dead pack) as model inputs plus response-aligned loss tensors.

    ``min_images``: store at least this many images (probe images fill up), so that the vision
    tower's call sequence (e.g. ``--vision-chunk-images``) is the same on every rank."""
    rows = list(rows) or [dead_row(spec.pad_id)]
    ids = np.concatenate([np.asarray(r.ids, dtype=np.int64) for r in rows])
    pos = np.empty((4, ids.size), dtype=np.int64)
    resp_pos, resp_tgt = [], []
    off = 0
    for r in rows:
        n = len(r.ids)
        a = np.asarray(r.ids, dtype=np.int64)
        grids = torch.as_tensor(r.grid).reshape(-1, 3).tolist() if r.grid is not None else []
        pos[:, off:off + n] = sample_positions((a == spec.image_token_id).astype(np.int64), grids, spec.merge)
        # logits at position t predict token t + 1: response token j sits at t = prompt_len - 1 + j
        resp_pos.append(np.arange(off + r.prompt_len - 1, off + n - 1))
        resp_tgt.append(a[r.prompt_len:])
        off += n
    t_resp = max(r.response_len for r in rows)
    b = len(rows)
    layout = torch.zeros((b, t_resp), dtype=torch.long)
    resp = torch.zeros((b, t_resp), dtype=torch.float32)
    forced = torch.zeros((b, t_resp), dtype=torch.bool)
    behaviour = torch.zeros((b, t_resp), dtype=torch.float32)
    start = 0
    for i, r in enumerate(rows):
        k = r.response_len
        layout[i, :k] = torch.arange(start, start + k)
        start += k
        if r.live:
            resp[i, :k] = 1.0
            forced[i, :k] = torch.tensor(r.forced, dtype=torch.bool)
            behaviour[i, :k] = torch.tensor(r.logprobs, dtype=torch.float32)
    input_ids = torch.from_numpy(ids)[None]
    batch = {"input_ids": input_ids, "position_ids": torch.from_numpy(pos)[:, None],
             "mm_token_type_ids": (input_ids == spec.image_token_id).long(),
             "resp_pos": torch.from_numpy(np.concatenate(resp_pos)),
             "resp_tgt": torch.from_numpy(np.concatenate(resp_tgt)),
             "layout": layout, "advantages": torch.tensor([r.advantage for r in rows], dtype=torch.float32),
             "loss_mask": grpo.loss_mask_from_flags(resp, forced, mask_forced=spec.mask_forced),
             "forced_mask": (forced & resp.bool()).float(), "behaviour_logp": behaviour,
             "real_tokens": int(sum(len(r.ids) for r in rows if r.live))}
    batch.update(_image_part(rows, spec, min_images))
    return batch


def unique_images(rows: Sequence[Row]) -> int:
    """Images ``collate_pack`` stores for these rows (before probes)."""
    seen: dict[str, int] = {}
    for r in rows:
        if r.pixel_values is not None and r.rid not in seen:
            seen[r.rid] = int(torch.as_tensor(r.grid).reshape(-1, 3).shape[0])
    return sum(seen.values())
