"""Lock-step decoding over data-parallel ranks, for a model whose forward runs collectives (ZeRO-3).

Under DeepSpeed ZeRO-3 every module call all-gathers that module's parameter shards, so every
rank must make the same module calls in the same order, or the collectives mismatch (gloo: an
error; NCCL: a hang). Ranks decoding their own prompts do not: they hold different numbers of
prompts, images and tokens. ``LockStep`` makes the HF engine (``generation.hf``) keep them in step,
as transformers' ``synced_gpus`` does for ``generate()``:

- generation groups: every rank runs as many prefill groups as the rank with the most; a rank
  out of prompts runs an idle group (a one-row prefill, then idle decode steps);
- images: a group's prefill runs the vision tower on every rank when it does on any, with the
  same image count (probe rows of one-token zero images fill up), so the tower's calls -- chunked
  or not -- are the same everywhere;
- decode steps: after each step the ranks agree (one all-reduce of one number) whether any row
  anywhere is still decoding; a rank whose rows are all done runs an idle step -- a one-token
  forward through the same modules, its output unused -- until every rank is done.

Cost: one small all-reduce per decode step and per group, plus idle forwards of one token on
ranks that finished early; the rollouts themselves are unchanged (each row's tokens depend only on
its own seed), so N lock-stepped ranks produce what N free-running ranks would.
"""

from __future__ import annotations

from typing import Any


class LockStep:
    """The agreement points of one lock-stepped generation (all ranks call each in the same order)."""

    def __init__(self, image_token_id: int, pad_id: int, probe: dict[str, int] | None):
        self.image_token_id, self.pad_id = int(image_token_id), int(pad_id)
        self.probe = probe  # {"patch_dim", "merge"} of the vision tower, None without one

    @staticmethod
    def max_int(n: int) -> int:
        from glmv_cli.training import dist

        return int(dist.all_max([float(n)])[0])

    def any_active(self, active: bool) -> bool:
        return self.max_int(int(active)) > 0

    def probe_prompt(self, n_images: int) -> dict[str, Any]:
        """A filler prefill row: ``n_images`` one-token zero images (each followed by a text pad, so
        the runs stay separate images), or one pad token when no image is needed."""
        import torch

        if n_images <= 0 or self.probe is None:
            return {"input_ids": [self.pad_id], "pixel_values": None, "image_grid_thw": None}
        m = self.probe["merge"]
        ids = [self.image_token_id, self.pad_id] * n_images
        return {"input_ids": ids, "pixel_values": torch.zeros(n_images * m * m, self.probe["patch_dim"]),
                "image_grid_thw": torch.tensor([[1, m, m]] * n_images)}

    def idle_step(self, model: Any, device: Any) -> None:
        """One decode-shaped forward (one text token, no cache): the modules a decode step calls."""
        import torch

        model(input_ids=torch.full((1, 1), self.pad_id, dtype=torch.long, device=device), use_cache=False,
              logits_to_keep=1)
