"""One autograd step for a LoRA linear layer instead of PEFT's five.

PEFT computes a LoRA layer as `base(x) + B(A(dropout(x))) * scaling`: besides the two matmuls that matter
it builds three output-sized tensors (B's product, its scaled copy, the sum) and, in the backward, scales
and sums output-sized gradients again, each a fresh allocation the size of the layer's output. Measured on
the bundled model's peer job (2-core AVX2 EPYC, fp32), those multiplications and additions took about a
fifth of the step. Here the low-rank product is added into the base output in place (`addmm_` with alpha =
scaling), and in the backward the input gradient of the base and of A are formed in one buffer.

The function computes the same sums as PEFT's layer in another order (float rounding only; the tests compare
loss and every adapter gradient to 1e-5 relative). It is used only where it is exactly PEFT's plain LoRA: a
plain `nn.Linear` base with frozen weights and no hooks, one active adapter without a variant (DoRA and the
like keep PEFT's forward), no LoRA bias, not merged, not disabled, and no per-call arguments; anything else
calls PEFT's own forward. Dropout keeps its own autograd node, whose output feeds the low-rank branch.
Under autocast the layer computes in the autocast dtype as PEFT's would, but keeps only the original weight
for the backward and casts it again there, rather than holding a low-precision copy of every frozen weight.
"""
from __future__ import annotations

from types import MethodType

import torch
import torch.nn.functional as F
from torch import nn


class _LoraLinear(torch.autograd.Function):
    """y = x W^T + b + s (x' A^T) B^T on 2-D inputs; x' is x itself when `x_lora` is None (no dropout)."""

    @staticmethod
    def forward(ctx, x, x_lora, weight, bias, lora_a, lora_b, scaling, dtype):
        def cast(t):
            return t if t is None or t.dtype == dtype else t.to(dtype)

        xc = cast(x)
        xl = xc if x_lora is None else cast(x_lora)
        a, b = cast(lora_a), cast(lora_b)
        out = F.linear(xc, cast(weight), cast(bias))
        h = xl @ a.t()
        out.addmm_(h, b.t(), alpha=scaling)
        ctx.save_for_backward(xl, weight, a, b, h)
        ctx.scaling, ctx.dtype, ctx.shared_input = scaling, dtype, x_lora is None
        return out

    @staticmethod
    def backward(ctx, grad):
        xl, weight, a, b, h = ctx.saved_tensors
        s, dtype = ctx.scaling, ctx.dtype
        need_x, need_xl, _, _, need_a, need_b = ctx.needs_input_grad[:6]
        grad = grad.to(dtype)
        # A's output gradient serves A's own, dropout's input (x_lora), and x itself when x feeds A directly.
        needs_h = need_a or need_xl or (need_x and ctx.shared_input)
        grad_h = torch.mm(grad, b).mul_(s) if needs_h else None
        grad_x = grad_xl = None
        if need_x:
            grad_x = torch.mm(grad, weight.to(dtype))
            if ctx.shared_input:
                grad_x.addmm_(grad_h, a)
        if need_xl and not ctx.shared_input:
            grad_xl = torch.mm(grad_h, a)
        grad_a = torch.mm(grad_h.t(), xl) if need_a else None
        grad_b = torch.mm(grad.t(), h).mul_(s) if need_b else None
        return grad_x, grad_xl, None, None, grad_a, grad_b, None, None


def _plain_lora(layer, args, kwargs) -> bool:
    """Whether this call of a PEFT LoRA linear layer is the plain sum the fused function computes."""
    if args or kwargs or layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return False
    name = layer.active_adapters[0]
    base = layer.base_layer
    return (name in layer.lora_A and name not in layer.lora_variant and layer.lora_B[name].bias is None
            and not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
            and not base._forward_hooks and not base._forward_pre_hooks and not hasattr(base, "_hf_hook"))


def _fused_forward(layer, x, *args, **kwargs):
    if not _plain_lora(layer, args, kwargs):
        return type(layer).forward(layer, x, *args, **kwargs)
    name = layer.active_adapters[0]
    lora_a, lora_b = layer.lora_A[name].weight, layer.lora_B[name].weight
    dropout = layer.lora_dropout[name]
    device = x.device.type
    autocast = torch.is_autocast_enabled(device)
    dtype = torch.get_autocast_dtype(device) if autocast else layer.base_layer.weight.dtype
    if not autocast and x.dtype != dtype:  # PEFT's layer would fail or cast here: let it decide
        return type(layer).forward(layer, x, *args, **kwargs)
    x2 = x.reshape(-1, x.shape[-1])
    x_lora = None if isinstance(dropout, nn.Identity) else dropout(x2.to(lora_a.dtype))
    with torch.autocast(device, enabled=False):
        out = _LoraLinear.apply(x2, x_lora, layer.base_layer.weight, layer.base_layer.bias, lora_a, lora_b,
                                float(layer.scaling[name]), dtype)
    return out.view(*x.shape[:-1], out.shape[-1])


def fuse_lora_layers(model) -> int:
    """Give every PEFT LoRA linear layer over a plain nn.Linear the fused forward (each call still checks
    that it is plain LoRA, else runs PEFT's); returns how many layers got it."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    count = 0
    for module in model.modules():
        if type(module) is LoraLinear and type(module.base_layer) is nn.Linear:
            module.forward = MethodType(_fused_forward, module)
            count += 1
    return count
