"""Run a prefix that every row of a batch shares once, not once per row.

Chat data usually starts every sample with the same tokens: the template's default system prompt
and the user-turn header (24 of the 52 tokens of each bundled identity sample). Under causal
attention those positions see only each other, so their hidden states and keys/values are the
same in every row. The prefix runs with batch 1, its per-layer keys and values are broadcast to the
batch (a view, no copy), and the rest of each row runs on top of them. Gradients flowing back into
the broadcast are summed over the rows, which is exactly what the per-row computation would give, so
the loss and the gradients equal the plain forward's up to float rounding, for a fraction of the work.

Two ways to run it, the same sums:
  one pass    where the model attends through transformers' SDPA: the prefix and every row's rest are
              laid end to end as one sequence, so each projection and MLP runs one matmul over all of
              them; only attention is split (the prefix attends causally to itself, each row's rest to the
              prefix and causally to its own tokens). A separate batch-1 pass for 24 of 256 tokens runs its
              matmuls at half the speed of the rest: forward and backward of one batch of the bundled
              model's peer job took 1.70 s in one pass against 1.97 s in two (median of 8 alternations,
              2-core AMD EPYC, avx2 fma, no avx512; fp32).
  two passes  otherwise: the prefix runs first and its per-layer keys and values are broadcast to the rows
              as a cache the rest attends to.

Used only where it is exact: a padded batch (right padding), a shared prefix with no trained label
in it, plain dynamic keys/values (no sliding-window layers), no activation checkpointing (it drops
the cache), and a prefix long enough to pay for the extra call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

# Below this many shared tokens the second forward call costs more than it saves (each call runs
# 30 layers of small matmuls); measured on the bundled model, 24 shared tokens of 52 saved 30% of the CPU time.
MIN_PREFIX = 8


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor) -> int:
    """How many leading tokens every row shares and may be computed once (0 when not worth it).

    The prefix stops before the first trained label of any row, one position early, since the hidden
    state before a label predicts it and those are computed with the rows."""
    if input_ids.dim() != 2 or input_ids.shape[0] < 2 or attention_mask is None:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0) & (attention_mask != 0).all(dim=0)
    differs = (~same).nonzero()
    common = int(differs[0, 0]) if differs.numel() else input_ids.shape[1]
    trained = (labels != -100).any(dim=0).nonzero()
    first_label = int(trained[0, 0]) if trained.numel() else input_ids.shape[1]
    length = min(common, first_label - 1, input_ids.shape[1] - 1)
    return length if length >= MIN_PREFIX else 0


def plain_cache(body, cache=None) -> bool:
    """The model keeps plain per-layer keys and values (no sliding windows and the like)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = cache if cache is not None else DynamicCache(config=body.config)
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def prefix_cache(body, input_ids: torch.Tensor, prefix: int, rows: int, position_ids=None):
    """Keys and values of the shared prefix, computed once and broadcast to `rows`; None when the
    model's cache is not plain per-layer keys/values (sliding windows and the like)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=body.config)
    if not plain_cache(body, cache):
        return None
    extra = {} if position_ids is None else {"position_ids": position_ids[:1, :prefix]}
    body(input_ids=input_ids[:1, :prefix], past_key_values=cache, use_cache=True, **extra)
    for layer in cache.layers:
        layer.keys = layer.keys.expand(rows, -1, -1, -1)
        layer.values = layer.values.expand(rows, -1, -1, -1)
    return cache


ONE_PASS_ATTENTION = "workbench_shared_prefix"


@dataclass
class _Layout:
    """Where the prefix and the rows lie in the one-pass sequence, and what each row's tokens may see."""
    prefix: int
    rows: int
    rest: int  # tokens of each row after the prefix
    mask: torch.Tensor  # [rows, 1, rest, prefix + rest], True where a row's token may attend
    calls: int = 0  # attention calls made with this layout: one per layer, else the model did not use it


_active: list[_Layout] = []


def _one_pass_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA over [1, heads, prefix + rows x rest, dim]: the prefix causally, each row's rest on the prefix and itself."""
    if not _active:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    lay = _active[-1]
    lay.calls += 1
    p, rows, rest = lay.prefix, lay.rows, lay.rest

    def split(t):  # the prefix [1, h, p, d] and the rows [rows, h, rest, d]
        return t[:, :, :p], t[:, :, p:].reshape(t.shape[1], rows, rest, t.shape[3]).transpose(0, 1)

    (q_head, q_rows), (k_head, k_rows), (v_head, v_rows) = split(query), split(key), split(value)
    head, _ = sdpa_attention_forward(module, q_head, k_head, v_head, None, **kwargs)
    k_rows = torch.cat([k_head.expand(rows, -1, -1, -1), k_rows], dim=2)
    v_rows = torch.cat([v_head.expand(rows, -1, -1, -1), v_rows], dim=2)
    body, _ = sdpa_attention_forward(module, q_rows, k_rows, v_rows, lay.mask, **kwargs)
    return torch.cat([head, body.reshape(1, rows * rest, *body.shape[2:])], dim=1), None


AttentionInterface.register(ONE_PASS_ATTENTION, _one_pass_attention)
_one_pass_refused: set[type] = set()  # models whose attention did not come through the interface


def _one_pass_hidden(body, input_ids, mask, position_ids, prefix: int):
    """Final hidden states of the rows after the prefix, [rows, rest, d], from one pass; None when the model's
    layers did not all attend through the interface (its result is then discarded)."""
    rows, length = input_ids.shape
    rest = length - prefix
    if position_ids is None:
        position_ids = torch.arange(length, device=input_ids.device).expand(rows, -1)
    ids = torch.cat([input_ids[0, :prefix], input_ids[:, prefix:].reshape(-1)])[None]
    positions = torch.cat([position_ids[0, :prefix], position_ids[:, prefix:].reshape(-1)])[None]
    causal = torch.ones(rest, rest, dtype=torch.bool, device=mask.device).tril()
    own = causal[None] & mask[:, prefix:].bool()[:, None, :]  # earlier tokens of the row that are not padding
    seen = torch.cat([torch.ones(rows, rest, prefix, dtype=torch.bool, device=mask.device), own], dim=2)
    lay = _Layout(prefix, rows, rest, seen[:, None])
    config = body.config
    before = config._attn_implementation
    config._attn_implementation = ONE_PASS_ATTENTION
    _active.append(lay)
    try:
        out = body(input_ids=ids, position_ids=positions, use_cache=False)
    finally:
        config._attn_implementation = before
        _active.pop()
    if lay.calls != config.num_hidden_layers:
        _one_pass_refused.add(type(body))
        return None
    return out.last_hidden_state[0, prefix:].view(rows, rest, -1)


def hidden_after_prefix(body, inputs: dict, prefix: int):
    """Final hidden states of positions prefix.. for every row, the prefix computed once; None when
    the model's cache does not allow it (the caller then runs the plain forward)."""
    input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
    if getattr(body.config, "_attn_implementation", None) == "sdpa" and type(body) not in _one_pass_refused \
            and plain_cache(body):
        hidden = _one_pass_hidden(body, input_ids, mask, inputs.get("position_ids"), prefix)
        if hidden is not None:
            return hidden
    position_ids = inputs.get("position_ids")
    cache = prefix_cache(body, input_ids, prefix, input_ids.shape[0], position_ids)
    if cache is None:
        return None
    extra = {} if position_ids is None else {"position_ids": position_ids[:, prefix:]}
    out = body(input_ids=input_ids[:, prefix:], attention_mask=mask, past_key_values=cache, use_cache=True, **extra)
    return out.last_hidden_state
