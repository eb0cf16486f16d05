"""The fused LoRA layer (core/training/fused_lora.py) computes what PEFT's layer computes: the output, the
input gradient and every adapter gradient, with and without dropout, in fp32 and under bf16 autocast; layers
it does not cover (DoRA, a merged or disabled adapter) keep PEFT's forward.

Tolerance: fp32 to 1e-5 relative (the sums are taken in another order; measured about 1e-7). Under bf16
autocast both round to bf16 at different points, two layers deep here: they agree within two bf16 steps (2^-6
relative; measured up to 0.0082)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core.training.fused_lora import fuse_lora_layers


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.o = nn.Linear(32, 48), nn.Linear(32, 48, bias=False), nn.Linear(48, 32)

    def forward(self, x):
        return self.o(torch.tanh(self.q(x) * self.k(x)))


def peft_pair(**config):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    settings = dict(r=4, lora_alpha=8, target_modules=["q", "k", "o"], init_lora_weights=False, **config)
    plain = get_peft_model(Block(), LoraConfig(**settings))
    fused = copy.deepcopy(plain)
    return plain, fused, fuse_lora_layers(fused)


def run(model, x, autocast, dtype=torch.bfloat16):
    torch.manual_seed(1)  # the same dropout masks in both models
    x = x.detach().clone().requires_grad_()
    with torch.autocast(x.device.type, dtype=dtype, enabled=autocast):
        y = model(x)
    y.float().pow(2).sum().backward()
    return y, x.grad, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("autocast", [False, True])
def test_fused_layers_match_peft(dropout, autocast):
    plain, fused, count = peft_pair(lora_dropout=dropout)
    assert count == 3
    x = torch.randn(3, 5, 32)
    (y1, gx1, p1), (y2, gx2, p2) = run(plain, x, autocast), run(fused, x, autocast)
    tolerance = 2 ** -6 if autocast else 1e-5
    assert y2.dtype == y1.dtype and y2.shape == y1.shape
    assert rel(y2, y1) < tolerance and rel(gx2, gx1) < tolerance
    assert p1.keys() == p2.keys() and p1
    for name in p1:
        assert rel(p2[name], p1[name]) < tolerance, name


def test_a_frozen_a_gets_no_gradient_and_b_still_matches():
    """LoRA-FA freezes A: the fused backward skips its gradient and B's equals PEFT's."""
    plain, fused, _ = peft_pair()
    for model in (plain, fused):
        for name, p in model.named_parameters():
            if "lora_A" in name:
                p.requires_grad_(False)
    x = torch.randn(2, 7, 32)
    (_, gx1, p1), (_, gx2, p2) = run(plain, x, False), run(fused, x, False)
    assert all("lora_B" in name for name in p2) and rel(gx2, gx1) < 1e-5
    for name in p1:
        assert rel(p2[name], p1[name]) < 1e-5, name


def test_layers_it_does_not_cover_keep_pefts_forward(monkeypatch):
    from core.training import fused_lora

    calls = []
    original = fused_lora._LoraLinear.apply
    monkeypatch.setattr(fused_lora._LoraLinear, "apply", lambda *a: calls.append(1) or original(*a))
    x = torch.randn(2, 3, 32)

    dora_plain, dora_fused, _ = peft_pair(use_dora=True)  # a variant: PEFT's forward, same result
    assert torch.equal(dora_fused(x), dora_plain(x)) and not calls

    plain, fused, _ = peft_pair()
    with fused.disable_adapter(), plain.disable_adapter():
        assert torch.equal(fused(x), plain(x)) and not calls
    fused.merge_adapter()
    assert torch.allclose(fused(x), plain(x), atol=1e-5) and not calls  # merged: the base layer alone
    fused.unmerge_adapter()
    fused(x)
    assert len(calls) == 3  # plain LoRA again: every layer fused
