"""``VLLMEngine``: the rollout contract on vLLM (GPU, import-guarded; ``pip install vllm``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from glmv_cli.generation.sampling import (VLLM_BAN_BIAS, Rollout, SamplingParams, banned_token_ids, control_stop_ids,
                                          response_ids, rollout_seed, special_ids)


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401  (availability probe)
    except Exception:
        return False
    return True


@dataclass
class TextPrompt:
    """A prompt for vLLM: the rendered text with one ``<|image|>`` per image (vLLM expands it) and
    the PIL images."""

    id: str
    text: str
    images: list = field(default_factory=list)


class VLLMEngine:
    """The same rollout contract on vLLM (GPU only; needs ``pip install vllm``).

    Each rollout is its own request with ``seed = rollout_seed(...)``, so results are independent
    of batching as in ``HFEngine``. Forced answering runs in two phases: phase 1 samples up to the
    thinking budget; a rollout that stopped is done, one that closed ``</think>`` continues for the
    rest of ``max_new_tokens``, and one that did not gets the forced tokens appended and
    continues for ``answer_budget`` tokens. Phase 2 re-submits prompt + phase-1 text (vLLM's prefix
    cache makes this cheap); forced tokens have ``logprob = nan`` (vLLM does not score them without
    a prompt-logprob pass; they are masked out of the loss by default anyway).

    Weight sync (RL): the learner owns the trainable copy. After each optimizer step it calls
    ``engine.sync_weights(model.named_parameters())`` (rank 0, gathered full tensors under ZeRO-3
    via ``deepspeed.zero.GatheredParameters``); this streams ``(name, tensor)`` pairs into vLLM's
    model through its ``load_weights`` (the same loader that reads HF checkpoints, so HF parameter
    names map unchanged), inside the engine process (``LLM.apply_model``; run vLLM in-process with
    ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` so the tensors are not serialised) with no file round trip. The prefix cache is reset afterwards, since cached KV belongs to the old weights.
    Log-probs are vLLM's sampled-token log-probs (``logprobs=0``), computed from the processed
    logits of the temperature-scaled distribution; the learner should recompute old log-probs
    with its own forward when exact equality matters (vLLM and HF kernels differ in round-off).

    Banned multimodal tokens (:func:`banned_token_ids`) get ``logit_bias`` ``VLLM_BAN_BIAS`` on every
    request (vLLM's ``SamplingParams.logit_bias``, a ``{token id: bias}`` map added to the logits
    before sampling), so they are never sampled. Depending on vLLM's ``logprobs_mode`` the returned
    log-probs are of the raw or of the biased logits; the learner recomputes them over the masked
    distribution either way.
    """

    def __init__(self, model_path: str, *, tokenizer=None, model_tag: str = "model", **llm_kwargs: Any):
        if not vllm_available():
            raise RuntimeError("the vllm engine needs the 'vllm' package (GPU only): pip install vllm")
        from vllm import LLM

        self.llm = LLM(model=str(model_path), **{"enable_prefix_caching": True, **llm_kwargs})
        self.tokenizer = tokenizer or self.llm.get_tokenizer()
        self.model_tag = model_tag
        self.banned_token_ids = banned_token_ids(self.tokenizer)

    def sync_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        weights = [(n, t.detach()) for n, t in named_tensors]

        def _load(model):
            model.load_weights(weights=weights)

        if hasattr(self.llm, "apply_model"):
            self.llm.apply_model(_load)
        else:  # older vLLM with an in-process executor
            _load(self.llm.llm_engine.model_executor.driver_worker.model_runner.model)
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """Frees the engine's GPU memory (weights offloaded, KV cache dropped) while the learner
        updates on the same GPU; ``wake_up`` before the next rollouts (vLLM's sleep mode: start the
        engine with ``enable_sleep_mode=True``)."""
        if hasattr(self.llm, "sleep"):
            self.llm.sleep(level=1)

    def wake_up(self) -> None:
        if hasattr(self.llm, "wake_up"):
            self.llm.wake_up()

    def _input(self, prompt: Any, prefix: list[int]) -> dict[str, Any]:
        """vLLM's input of a prompt: token ids (one ``<|image|>`` per image: vLLM's processor expands
        it; nothing is re-tokenised, continuations append their ids) with the images, or for a
        ``TextPrompt`` its text."""
        if isinstance(prompt, TextPrompt):
            text = prompt.text + (self.tokenizer.decode(prefix, skip_special_tokens=False) if prefix else "")
            mm = {"multi_modal_data": {"image": list(prompt.images)}} if prompt.images else {}
            return {"prompt": text, **mm}
        from glmv_cli.data.images import open_image

        image_id = int(self.tokenizer.convert_tokens_to_ids("<|image|>"))
        ids: list[int] = []
        for t in prompt.input_ids:
            if not (t == image_id and ids and ids[-1] == image_id):
                ids.append(int(t))
        images = [open_image(src) for src in (prompt.images or [])]
        mm = {"multi_modal_data": {"image": images}} if images else {}
        return {"prompt_token_ids": ids + list(prefix), **mm}

    def _run(self, reqs: list[tuple[Any, list, int, int]], params: SamplingParams, stops: frozenset):
        from vllm import SamplingParams as VSP

        ban = {"logit_bias": {i: VLLM_BAN_BIAS for i in self.banned_token_ids}} if self.banned_token_ids else {}
        inputs, sps = [], []
        for prompt, prefix, max_tokens, seed in reqs:
            inputs.append(self._input(prompt, prefix))
            sps.append(VSP(n=1, temperature=params.temperature, top_p=params.top_p, max_tokens=max_tokens,
                           seed=seed, stop_token_ids=sorted(stops), logprobs=0, skip_special_tokens=False,
                           detokenize=True, **ban))
        outs = self.llm.generate(inputs, sps, use_tqdm=False)
        res = []
        for o in outs:
            c = o.outputs[0]
            ids = list(c.token_ids)
            lps = [float(next(iter(d.values())).logprob) if d else float("nan") for d in (c.logprobs or [])]
            lps += [float("nan")] * (len(ids) - len(lps))
            res.append((ids, lps, c.finish_reason))
        return res

    def generate(self, prompts: Sequence[Any], params: SamplingParams, n: int = 1,
                 seed: int = 0) -> list[list[Rollout]]:
        """``prompts``: ``generation.Prompt`` s (token ids + images; what rlcs sends) or
        ``TextPrompt`` s (rendered text + PIL images)."""
        params.validate()
        think_end, forced_seq, stops = special_ids(self.tokenizer, None, params.style)
        keys = [(pi, j) for pi in range(len(prompts)) for j in range(n)]
        seeds = [rollout_seed(seed, prompts[pi].id, self.model_tag, j) for pi, j in keys]
        budget = params.thinking_budget
        first = self._run([(prompts[pi], [], min(budget or params.max_new_tokens, params.max_new_tokens), s)
                           for (pi, _), s in zip(keys, seeds)], params, stops)
        state = []
        follow = []
        for r, ((pi, j), (ids, lps, fin)) in enumerate(zip(keys, first)):
            stopped = fin == "stop" or (bool(ids) and ids[-1] in stops)
            closed = think_end in ids
            st = {"ids": ids, "lps": lps, "forced": [False] * len(ids), "finish": None}
            if stopped:
                st["finish"] = "stop"
            elif budget is not None and not closed and len(ids) >= budget:
                st["ids"] = ids + list(forced_seq)
                st["lps"] = lps + [float("nan")] * len(forced_seq)
                st["forced"] += [True] * len(forced_seq)
                st["finish"] = "forced"
                follow.append((r, params.answer_budget))
            elif len(ids) < params.max_new_tokens and budget is not None and budget < params.max_new_tokens:
                follow.append((r, params.max_new_tokens - len(ids)))
            else:
                st["finish"] = "length"
            state.append(st)
        if follow:
            reqs = []
            for r, mt in follow:
                reqs.append((prompts[keys[r][0]], list(state[r]["ids"]), mt, (seeds[r] + 1) & ((1 << 63) - 1)))
            for (r, mt), (ids, lps, fin) in zip(follow, self._run(reqs, params, stops)):
                st = state[r]
                st["ids"] += ids
                st["lps"] += lps
                st["forced"] += [False] * len(ids)
                if st["finish"] is None:
                    st["finish"] = "stop" if fin == "stop" or (ids and ids[-1] in stops) else "length"
        res: list[list[Rollout]] = [[] for _ in prompts]
        control = control_stop_ids(self.tokenizer)
        for r, (pi, j) in enumerate(keys):
            st = state[r]
            body = response_ids(st["ids"], st["forced"], control)
            prompt_ids = list(getattr(prompts[pi], "input_ids", []))
            res[pi].append(Rollout(prompts[pi].id, j, seeds[r], prompt_ids, st["ids"], st["lps"], st["forced"],
                                   st["finish"], self.tokenizer.decode(body, skip_special_tokens=False)))
        return res
