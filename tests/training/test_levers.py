"""The speed levers change how the loss is computed, never its value: the lean loss at trained positions
and the shared-prefix forward are checked against TRL's own loss step and against the plain model loss,
on the tiny model, loss and every adapter gradient.

Tolerance: fp32 sums taken in another order (chunks, a prefix computed once) differ by float rounding only,
measured at about 5e-7 relative on the bundled model; the test allows 1e-5 relative."""
from __future__ import annotations

import warnings

import pytest
import torch

from tests.helpers import tiny_spec

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def lean_setup(tiny_model_dir):
    from trl import SFTConfig

    from core.methods import METHODS, TrainPlan
    from core.models.loading import load_base_model, load_tokenizer
    from core.training.lean_trainer import LeanSFTTrainer
    from core.training.trainer import build_dataset

    warnings.simplefilter("ignore")
    spec = tiny_spec(tiny_model_dir, data={"max_samples": 0})
    tokenizer = load_tokenizer(spec.model.path)
    dataset = build_dataset(spec, tokenizer)
    model = load_base_model(spec, "cpu")
    peft_config = METHODS["lora"].peft_config(spec, model, TrainPlan(total_steps=4))
    args = SFTConfig(output_dir="/tmp/lean-test-out", per_device_train_batch_size=8, max_length=64, report_to=[],
                     use_cpu=True, disable_tqdm=True)
    trainer = LeanSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config)
    torch.manual_seed(0)
    for p in trainer.model.parameters():
        if p.requires_grad:  # B starts at zero; random adapters make every gradient path non-trivial
            torch.nn.init.normal_(p, std=0.05)
    batch = trainer.data_collator([dataset[i] for i in range(8)])
    return trainer, batch


def _loss_and_grads(trainer, batch, lean: bool, share: bool):
    model = trainer.model
    model.train()
    trainer.lean_loss, trainer.share_prefix = lean, share
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
    return loss.detach(), grads


def _plain_model_loss(trainer, batch):
    """The model's own loss: full logits, transformers' cross-entropy over every labelled position."""
    model = trainer.model
    model.zero_grad()
    out = model.base_model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 labels=batch["labels"])
    out.loss.backward()
    return out.loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])


def _close(a, b, what):
    rel = float((a - b).norm() / b.norm())
    assert rel < TOLERANCE, f"{what}: relative difference {rel:.2e} exceeds {TOLERANCE}"


def test_levers_leave_loss_and_gradients_unchanged(lean_setup):
    trainer, batch = lean_setup
    ref_loss, ref_grads = _plain_model_loss(trainer, batch)
    trl_loss, trl_grads = _loss_and_grads(trainer, batch, lean=False, share=False)
    _close(trl_loss, ref_loss, "TRL's loss vs the model's")
    for lean, share in [(True, False), (True, True)]:
        before = trainer.prefix_tokens_saved
        loss, grads = _loss_and_grads(trainer, batch, lean, share)
        _close(loss, ref_loss, f"loss with lean={lean} shared prefix={share}")
        _close(grads, ref_grads, f"adapter gradients with lean={lean} shared prefix={share}")
        if share:  # the chat template's system prompt is shared by every identity sample: the lever really ran
            assert trainer.prefix_tokens_saved > before


def test_shared_prefix_in_one_pass_and_in_two_equals_the_model_loss(lean_setup, monkeypatch):
    """The prefix and every row's rest laid end to end in one pass (models attending through SDPA), and the
    fallback (the prefix's keys and values broadcast to the rows as a cache) both give the model's own loss and
    gradients; a model whose layers do not all attend through the interface gets the fallback."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from core.training import shared_prefix

    trainer, batch = lean_setup
    ref_loss, ref_grads = _plain_model_loss(trainer, batch)
    one_pass, results = shared_prefix._one_pass_hidden, []

    def recorded(*args):
        results.append(one_pass(*args))
        return results[-1]

    monkeypatch.setattr(shared_prefix, "_one_pass_hidden", recorded)
    monkeypatch.setattr(shared_prefix, "_one_pass_refused", set())
    loss, grads = _loss_and_grads(trainer, batch, lean=True, share=True)
    assert len(results) == 1 and results[0] is not None  # the tiny Llama took the one pass
    _close(loss, ref_loss, "loss, shared prefix in one pass")
    _close(grads, ref_grads, "adapter gradients, shared prefix in one pass")

    # Layers that attend without the interface: plain SDPA over the whole sequence, never counted. The pass is
    # thrown away, the model remembered, and the two-pass form gives the right loss.
    monkeypatch.setitem(AttentionInterface._global_mapping, shared_prefix.ONE_PASS_ATTENTION, sdpa_attention_forward)
    results.clear()
    loss, grads = _loss_and_grads(trainer, batch, lean=True, share=True)
    assert results == [None] and shared_prefix._one_pass_refused
    _close(loss, ref_loss, "loss, shared prefix in two passes")
    _close(grads, ref_grads, "adapter gradients, shared prefix in two passes")
    results.clear()
    _loss_and_grads(trainer, batch, lean=True, share=True)
    assert results == []  # a refused model is not tried again


def test_fused_lora_layers_leave_loss_and_gradients_unchanged(lean_setup):
    """All levers on, fused LoRA layers too, against the model's own loss through PEFT's layers."""
    from core.training import fused_lora

    trainer, batch = lean_setup
    ref_loss, ref_grads = _plain_model_loss(trainer, batch)
    fused = []
    try:
        assert fused_lora.fuse_lora_layers(trainer.model) == 14  # 2 layers x 7 linear projections of the tiny model
        fused = [m for m in trainer.model.modules()
                 if getattr(vars(m).get("forward"), "__func__", None) is fused_lora._fused_forward]
        loss, grads = _loss_and_grads(trainer, batch, lean=True, share=True)
    finally:
        for module in fused:  # the fixture's trainer is shared with the other tests: PEFT's forward again
            del module.forward
    _close(loss, ref_loss, "loss with fused LoRA layers")
    _close(grads, ref_grads, "adapter gradients with fused LoRA layers")


def test_metrics_match_trl(lean_setup):
    """Entropy and token accuracy, now from the trained positions only, equal TRL's full-logit figures."""
    trainer, batch = lean_setup
    trainer._metrics["train"].clear()
    _loss_and_grads(trainer, batch, lean=False, share=False)
    trl = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    trainer._metrics["train"].clear()
    _loss_and_grads(trainer, batch, lean=True, share=True)
    lean = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    assert lean["mean_token_accuracy"] == pytest.approx(trl["mean_token_accuracy"], abs=1e-6)
    assert lean["entropy"] == pytest.approx(trl["entropy"], rel=1e-4)


def test_trainable_head_takes_the_checkpointed_path():
    """A head that trains (tied, trained embeddings) gets its own gradient from the chunked loss."""
    from core.training.head_loss import head_cross_entropy

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(40, 8, requires_grad=True)
    targets = torch.randint(0, 50, (40,))
    loss, correct, _ = head_cross_entropy(hidden, targets, head)
    loss.backward()
    got_h, got_w = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad = None
    head.weight.grad = None
    ref = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    ref.backward()
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    assert torch.allclose(got_h, hidden.grad, atol=1e-6) and torch.allclose(got_w, head.weight.grad, atol=1e-6)
    assert int(correct) == int((head(hidden).argmax(-1) == targets).sum())


def test_shared_prefix_length_rules():
    from core.training.shared_prefix import MIN_PREFIX, shared_prefix_length

    n = MIN_PREFIX + 6
    ids = torch.arange(n).repeat(3, 1)
    ids[1, n - 3:] += 100
    mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    labels[:, n - 2:] = 1
    # shared up to column n-3, and the position before the first label is computed with the rows
    assert shared_prefix_length(ids, mask, labels) == n - 3
    labels[:, 4] = 1  # a label inside the would-be prefix leaves too short a prefix: not worth it
    assert shared_prefix_length(ids, mask, labels) == 0
    assert shared_prefix_length(ids[:1], mask[:1], labels[:1]) == 0  # one row shares nothing


def one_pass_against_plain(model_dir, device: str, dtype: str = "float32") -> float:
    """Relative difference between the rows' final hidden states from the one-pass shared prefix and from the
    model's plain forward, for rows with padding of their own, at every position that is not padding."""
    from transformers import AutoModelForCausalLM

    from core.training.shared_prefix import _one_pass_hidden

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa",
                                                 dtype=getattr(torch, dtype)).to(device)
    body = model.model
    rows, length, prefix = 4, 20, 9
    ids = torch.randint(5, body.config.vocab_size, (rows, length), device=device)
    ids[:, :prefix] = ids[0, :prefix]
    mask = torch.ones_like(ids)
    mask[1, 15:], mask[3, 11:] = 0, 0
    with torch.no_grad():
        plain = body(input_ids=ids, attention_mask=mask).last_hidden_state[:, prefix:].float()
        got = _one_pass_hidden(body, ids, mask, None, prefix)
    assert got is not None, "the one pass was refused"
    keep = mask[:, prefix:].bool()
    return float((got.float()[keep] - plain[keep]).norm() / plain[keep].norm())


def test_one_pass_hidden_states_equal_the_plain_forward_with_padded_rows(tiny_model_dir):
    assert one_pass_against_plain(tiny_model_dir, "cpu") < TOLERANCE
