"""Generation for every stage that generates (rlcs, grade-difficulty, eval): n sampled responses per
prompt, with per-token log-probs and forced answering.

Modules: ``sampling`` (the contract: SamplingParams, Prompt, Rollout, seeds, banned/stop/forced
tokens, the sampler), ``prompts`` (records -> prompts), ``hf`` (HFEngine), ``vllm`` (VLLMEngine),
``server`` (ServerEngine: the contract through HTTP rollout servers; ``transport`` dispatches and
retries, ``weight_sync`` pushes the learner's weights to them).

``HFEngine`` is a hand-written KV-cache decode loop over a transformers
``Glm4vForConditionalGeneration`` (or the MoE variant) rather than ``generate()``, for three reasons:

1. Reproducibility independent of batching. Every rollout owns a CPU ``torch.Generator`` seeded
   from ``(seed, prompt id, model tag, rollout index)`` (:func:`rollout_seed`); each sampling step
   draws one uniform from it and inverts the row's CDF. A rollout therefore does not depend on
   which other rows share its batch, on the device, or on where an interrupted job resumed
   (up to float round-off between batch shapes; ``grade-difficulty`` keeps batch composition
   fixed, so its reruns are bit-identical).
2. Log-probs come out of the same pass that samples: no second forward.
3. Forced answering is a per-row state machine that fits naturally in the loop.

Prefill runs once per *distinct* prompt (left-padded, image features computed once), then the
KV cache is repeat-interleaved n times: at n = 8 this cuts prefill cost 8x, which dominates for
image prompts with short answers. Finished rows are dropped from the cache
(``batch_select_indices``) so long stragglers do not pay for finished neighbours.

Positions. Glm4v uses 3D rope (t/h/w). The prompt's position ids come from the model's own
``get_rope_index`` with the left-padding mask; every generated token is text, so all three rows
advance together: the k-th new token sits at ``max(prompt positions) + 1 + k``. transformers'
``generate`` gets the same numbers from cached ``rope_deltas``; the test compares our log-probs with
a full forward over prompt + response.

Banned tokens. The six structural multimodal tokens (``<|image|>``, ``<|video|>``,
``<|begin_of_image|>``, ``<|end_of_image|>``, ``<|begin_of_video|>``, ``<|end_of_video|>``;
:func:`banned_token_ids`) are never sampled: their logits are set to -inf before sampling. Random
and weakly trained models emit them (the random tiny preset, unmasked: 4 of 2,344 sampled
tokens, in 4 of 24 rollouts of ~100 tokens), and one ``<|image|>`` in a response makes it
impossible to re-run through the model (transformers looks for image features it does not
have). Masking changes the policy, so everything below is of the *masked* distribution, and the
RL learner applies the same mask (``RLCSTrainer._forward_logp``). vLLM: ``VLLMEngine``.

Log-probs. ``Rollout.logprobs[i]`` is ``log softmax(masked logits / T)[token_i]`` over the
vocabulary: the temperature-scaled distribution before top-p truncation. With top-p = 1 (the RL
setting) this is exactly the behaviour policy, and the learner scores the same tempered
distribution from its own forward (``rl.update``), so the PPO ratio starts at 1 at any T. With top-p < 1 the true sampling probability is
larger by ``1 / kept_mass``; we still return the untruncated value because that is the policy the
learner models. With T = 0 (greedy) the T = 1 log-probs are returned. Forced tokens get the
model's log-prob of the forced token too (it was not sampled; ``forced`` flags it).

Forced answering (paper §5 / GLM-4.5V): while a row has not emitted ``</think>`` it is "thinking".
When it has generated ``thinking_budget`` tokens without ``</think>``, the engine appends
``</think><answer>`` (style ``glm41v``) or ``</think>`` (style ``glm45v``) as forced tokens, then lets it
sample at most ``answer_budget`` more tokens. A row that closes its thinking within budget is never
touched: its tokens equal those of an unbudgeted run with the same seed.

Finish reasons: ``stop`` (sampled a stop token), ``length`` (hit ``max_new_tokens`` without forcing),
``forced`` (the answer was forced; it then ended by a stop token or by the answer budget). The stop
token is kept in ``token_ids`` (the policy must learn to stop); ``text`` drops it only when it is a pure
control token (``STOP_TOKENS``). A checkpoint's generation_config may list a content token as eos (GLM-4.1V:
``</answer>``): that ends the rollout and stays in the text, where the reward's format gate needs it.
``max_new_tokens`` caps thinking plus a natural answer; a forced tail may run past it by at most
``len(forced) + answer_budget`` tokens.

``VLLMEngine`` (GPU, import-guarded) runs the same contract on vLLM; see its docstring for how
weights are synced from the learner.
"""

from glmv_cli.generation.hf import HFEngine
from glmv_cli.generation.prompts import prompt_from_record, prompt_messages, prompt_text
from glmv_cli.generation.sampling import (BANNED_TOKENS, FINISH_REASONS, STOP_TOKENS, Prompt, Rollout, SamplingParams,
                                          banned_token_ids, control_stop_ids, mask_banned, rollout_seed,
                                          sample_from_logits, special_ids)
from glmv_cli.generation.server import ServerEngine
from glmv_cli.generation.vllm import TextPrompt, VLLMEngine, vllm_available

__all__ = ["BANNED_TOKENS", "FINISH_REASONS", "STOP_TOKENS", "HFEngine", "Prompt", "Rollout", "SamplingParams",
           "ServerEngine", "TextPrompt", "VLLMEngine", "banned_token_ids", "control_stop_ids", "mask_banned",
           "prompt_from_record", "prompt_messages", "prompt_text", "rollout_seed", "sample_from_logits",
           "special_ids", "vllm_available"]
