"""Shifted sparse attention (S2-Attn, LongLoRA, Chen et al. 2023) as a transformers attention function.

Registered under the name "s2_attn" in transformers' AttentionInterface (and a matching entry in the
mask interface), so any model class whose attention layers call that interface can train with it by
loading with `attn_implementation="s2_attn"`; no model class is patched.

What it computes, for a training forward pass over L tokens split into `groups` groups of G tokens:
  * the first half of the heads (heads 0 .. H - H//2 - 1) attend causally inside groups
    [0, G), [G, 2G), ...;
  * the other H//2 heads use group boundaries moved by G/2: [0, G/2), [G/2, 3G/2), ..., [L - G/2, L),
    so information flows between neighbouring groups across the layers.
A token in a shifted head never sees a later token. (The paper's reference code rolls the sequence and
lets the first G/2 tokens, wrapped to the end, see the last G/2; here the two end half-groups are
attended separately instead, which is the same pattern without that leak.)

With one group (groups=1) every head attends causally to the whole sequence: ordinary attention.

Cost: each token attends to at most G keys instead of up to L, so attention time and the attention
matrices' memory fall by about the number of groups; the projections and MLPs cost the same.

Lengths: G is ceil(L / groups) rounded up to an even number, and the sequence is padded at the end to
groups * G with keys nobody attends to (causality keeps the real tokens from seeing them), so any
length works. At inference (module in eval mode), with a KV cache, or for sequences too short to
split, the function is plain full causal attention: LongLoRA trains sparse and serves dense.
Padding: right padding (what TRL's collator produces) needs no mask; any other padding is applied
as a key mask inside each group. Packed sequences (several samples in one row) are not separated.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NAME = "s2_attn"
DEFAULT_GROUPS = 4  # the paper's 1/4 of the sequence per group
GROUPS_ATTR = "s2_attention_groups"  # set on the model config by the LongLoRA method


def register() -> None:
    """Make attn_implementation="s2_attn" loadable; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, s2_attention_forward)
    AttentionMaskInterface.register(NAME, padding_mask_only)


def padding_mask_only(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, attention_mask=None, **kwargs):
    """The mask the model hands to s2_attention_forward: the 2D key padding mask (batch, kv_length),
    True where a real token sits, or None when nothing is padded. Causality and groups are built per
    group inside the attention function, so no (L x L) mask is ever made."""
    from transformers.masking_utils import prepare_padding_mask

    mask = prepare_padding_mask(attention_mask, kv_length, kv_offset)
    if mask is None or bool(mask.all()):
        return None
    return mask


def repeat_kv(x: torch.Tensor, times: int) -> torch.Tensor:
    """(b, kv_heads, L, d) -> (b, kv_heads * times, L, d), each kv head serving `times` query heads in a row."""
    if times == 1:
        return x
    b, h, length, d = x.shape
    return x[:, :, None].expand(b, h, times, length, d).reshape(b, h * times, length, d)


def _only_right_padding(key_ok: torch.Tensor) -> bool:
    """True when every row is real tokens followed by padding: causality then already hides the padding."""
    as_int = key_ok.to(torch.int8)
    return bool((as_int[:, 1:] <= as_int[:, :-1]).all())


def full_causal_attention(query, key, value, key_ok, dropout, scaling):
    """Ordinary causal attention over the whole sequence; queries are the last q_len of the kv_len keys."""
    q_len, kv_len = query.shape[2], key.shape[2]
    if key_ok is None and q_len == kv_len:
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=scaling, is_causal=q_len > 1)
    rows = torch.arange(q_len, device=query.device)[:, None] + (kv_len - q_len)
    cols = torch.arange(kv_len, device=query.device)[None, :]
    mask = cols <= rows
    if key_ok is not None:
        # Each query may always see itself, so a padded query never has an empty (NaN) softmax row.
        mask = (mask & key_ok[:, None, None, :]) | (cols == rows)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)


def grouped_causal_attention(query, key, value, key_ok, group, dropout, scaling):
    """Causal attention inside consecutive groups of `group` tokens (length divisible by `group`).

    The groups move into the batch dimension, so one 4D SDPA call covers them all (SDPA's fused CPU and
    GPU kernels take 4D inputs only; 5D would fall back to the slow math path)."""
    b, h, length, d = query.shape
    n = length // group

    def split(t):  # (b, h, n*G, d) -> (b*n, h, G, d)
        return t.reshape(b, h, n, group, d).transpose(1, 2).reshape(b * n, h, group, d)

    if key_ok is None:
        out = F.scaled_dot_product_attention(split(query), split(key), split(value), dropout_p=dropout,
                                             scale=scaling, is_causal=True)
    else:
        causal = torch.ones(group, group, dtype=torch.bool, device=query.device).tril()
        eye = torch.eye(group, dtype=torch.bool, device=query.device)
        # Each query may always see itself, so a padded query never has an empty (NaN) softmax row.
        mask = (causal & key_ok.reshape(b * n, 1, 1, group)) | eye
        out = F.scaled_dot_product_attention(split(query), split(key), split(value), attn_mask=mask,
                                             dropout_p=dropout, scale=scaling)
    return out.reshape(b, n, h, group, d).transpose(1, 2).reshape(b, h, length, d)


def shifted_sparse_attention(query, key, value, key_ok, groups, dropout=0.0, scaling=None):
    """S2-Attn on (batch, heads, L, head_dim) tensors with as many key/value heads as query heads.

    Returns (batch, heads, L, head_dim). See the module docstring for the pattern."""
    b, h, length, d = query.shape
    group = -(-length // groups)
    group += group % 2  # even, so the shift is exactly half a group
    padded = group * groups
    if padded != length:
        extra = padded - length
        query, key, value = (F.pad(t, (0, 0, 0, extra)) for t in (query, key, value))
        if key_ok is not None:
            key_ok = F.pad(key_ok, (0, extra), value=False)
    # One group already spans the sequence: nothing to shift towards, every head attends to it all.
    half_heads = h // 2 if groups > 1 else 0
    plain = h - half_heads
    # split() rather than slicing: its backward is one concatenation, where each slice's backward
    # would fill a zero tensor of the full size (measured: half of S2-Attn's CPU time at 2k tokens).
    (q_plain, q_shift), (k_plain, k_shift), (v_plain, v_shift) = (t.split([plain, half_heads], dim=1) for t in (query, key, value))
    out = grouped_causal_attention(q_plain, k_plain, v_plain, key_ok, group, dropout, scaling)
    if half_heads:
        # Shifted heads: full groups [G/2, 3G/2), ... in the middle, and the two half-groups at the ends
        # (the first G/2 and the last G/2 tokens) attended as two separate groups of G/2.
        half = group // 2
        sizes = [half, padded - group, half]
        (qa, qm, qb), (ka, km, kb), (va, vm, vb) = (t.split(sizes, dim=2) for t in (q_shift, k_shift, v_shift))
        ok_a, ok_m, ok_b = key_ok.split(sizes, dim=1) if key_ok is not None else (None, None, None)
        ok_ends = torch.cat([ok_a, ok_b], dim=1) if key_ok is not None else None
        out_mid = grouped_causal_attention(qm, km, vm, ok_m, group, dropout, scaling)
        out_ends = grouped_causal_attention(torch.cat([qa, qb], 2), torch.cat([ka, kb], 2), torch.cat([va, vb], 2),
                                            ok_ends, half, dropout, scaling)
        end_a, end_b = out_ends.split([half, half], dim=2)
        out = torch.cat([out, torch.cat([end_a, out_mid, end_b], dim=2)], dim=1)
    return out if padded == length else out[:, :, :length]


def s2_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The AttentionInterface entry point: same signature and output layout as transformers'
    sdpa_attention_forward ((batch, L, heads, head_dim), None)."""
    q_len, kv_len = query.shape[2], key.shape[2]
    key_ok = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
    if attention_mask is not None and attention_mask.dim() != 2:
        raise ValueError("s2_attn expects the 2D padding mask its own mask function builds, got a prepared 4D mask")
    key = repeat_kv(key, query.shape[1] // key.shape[1])
    value = repeat_kv(value, query.shape[1] // value.shape[1])
    config = getattr(module, "config", None)
    groups = int(getattr(config, GROUPS_ATTR, DEFAULT_GROUPS) or DEFAULT_GROUPS)
    sparse = module.training and q_len == kv_len and q_len >= 2 * groups
    if not sparse:
        out = full_causal_attention(query, key, value, key_ok, dropout, scaling)
    else:
        if key_ok is not None and _only_right_padding(key_ok):
            key_ok = None
        out = shifted_sparse_attention(query, key, value, key_ok, groups, dropout, scaling)
    return out.transpose(1, 2).contiguous(), None
