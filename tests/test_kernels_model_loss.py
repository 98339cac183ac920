"""The chunked LM-head loss / log-probs of a real (tiny) Glm4v model equal glmv's full-logits paths."""


import pytest
import torch

from glmv_kernels.model_loss import (  # noqa: E402
    causal_lm_loss,
    causal_lm_loss_from_hidden,
    causal_token_logprobs,
    next_token_targets,
    unwrap,
)



def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_next_token_targets_mask_sample_starts():
    labels = torch.tensor([[10, 11, 12, 20, 21, -100, 30]])
    pos = torch.tensor([[0, 1, 2, 0, 1, 2, 0]])
    assert next_token_targets(labels, pos).tolist() == [[11, 12, -100, 21, -100, -100, -100]]
    assert next_token_targets(labels).tolist() == [[11, 12, 20, 21, -100, 30, -100]]


@pytest.mark.parametrize("image_every", [0, 1])
def test_packed_loss_and_grads_equal_lm_loss_sum(image_every):
    from glmv_cli.training.loss import lm_loss_sum, model_inputs
    from glmv_cli.testing.tiny import synthetic_packs, tiny_glm4v

    batch = synthetic_packs(1, seq_len=48, samples_per_pack=3, image_every=image_every, seed=3)[0]
    batch["labels"][0, 5:9] = -100  # some masked prompt tokens
    model = tiny_glm4v(seed=1).train()
    ref = lm_loss_sum(model, batch)
    ref.backward()
    ref_grads = _grads(model)
    model.zero_grad(set_to_none=True)
    out = causal_lm_loss(model, model_inputs(batch), batch["labels"], chunk_size=7)
    out.backward()
    grads = _grads(model)
    # fp32: the same numbers summed in another order
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-5)
    assert grads.keys() == ref_grads.keys() and "lm_head.weight" in grads
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_from_hidden_reductions():
    from glmv_cli.testing.tiny import synthetic_packs, tiny_glm4v

    batch = synthetic_packs(1, seq_len=32, samples_per_pack=2, seed=0)[0]
    model = tiny_glm4v()
    with torch.no_grad():
        hidden = model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])[0]
        s = causal_lm_loss_from_hidden(hidden, model.lm_head, batch["labels"], batch["position_ids"])
        m = causal_lm_loss_from_hidden(hidden, model.lm_head, batch["labels"], batch["position_ids"],
                                       reduction="mean")
        per = causal_lm_loss_from_hidden(hidden, model.lm_head, batch["labels"], batch["position_ids"],
                                         reduction="none")
    # 32 tokens, 2 samples: 31 shifted targets minus the one that crosses into sample 2 = 30
    assert per.shape == (1, 32) and int((per != 0).sum()) == 30
    torch.testing.assert_close(s, per.sum())
    torch.testing.assert_close(m, s / 30)


def test_token_logprobs_equal_grpo_path_with_temperature():
    from glmv_cli.rl.grpo import token_logprobs
    from glmv_cli.testing.tiny import tiny_glm4v

    model = tiny_glm4v(seed=2)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 280, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding, as the RL collate
    kw = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        ref = token_logprobs(model(**kw, use_cache=False).logits[:, :-1] / 0.8, ids[:, 1:])
        out = causal_token_logprobs(model, kw, temperature=0.8, chunk_size=5)
    assert out.shape == (2, 11)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_unwrap():
    from glmv_cli.testing.tiny import tiny_glm4v

    model = tiny_glm4v()

    class Engine(torch.nn.Module):  # what DeepSpeed's engine looks like from here
        def __init__(self, m):
            super().__init__()
            self.module = m

    assert unwrap(Engine(model)) is model
    with pytest.raises(TypeError, match="Linear has no .model and .lm_head"):
        unwrap(torch.nn.Linear(2, 2))


def test_one_line_wiring_into_the_deepspeed_engine():
    """``Engine.train_step(..., loss_fn=chunked)`` takes the same steps as glmv's full-logits loss."""
    from glmv_cli.training.config import BatchConfig, OptimConfig, TrainConfig
    from glmv_cli.training.engine import Engine
    from glmv_cli.training.loss import lm_loss_sum, model_inputs
    from glmv_cli.testing.tiny import synthetic_packs, tiny_glm4v

    def chunked(engine, batch):  # the wiring: this line replaces lm_loss_sum's body
        return causal_lm_loss(engine, model_inputs(batch), batch["labels"])

    packs = synthetic_packs(2, 48, samples_per_pack=2, image_every=2)
    metrics = []
    for loss_fn in (lm_loss_sum, chunked):
        cfg = TrainConfig(optim=OptimConfig(lr=1e-2, warmup_steps=0, weight_decay=0.0),
                          batch=BatchConfig(micro_batch=1, global_batch=2, max_steps=2))
        eng = Engine(tiny_glm4v(seed=5), cfg, total_steps=2)
        try:
            metrics.append([eng.train_step(packs, loss_fn=loss_fn) for _ in range(2)])
        finally:
            eng.close()
    for ref, got in zip(*metrics):
        assert got["label_tokens"] == ref["label_tokens"]
        assert abs(got["loss"] - ref["loss"]) <= 1e-5 * ref["loss"]
        assert abs(got["grad_norm"] - ref["grad_norm"]) <= 1e-4 * ref["grad_norm"]
