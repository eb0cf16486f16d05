"""Time S2-Attn against full causal attention (transformers' sdpa), forward + backward, at long lengths.

    .venv/bin/python scripts/bench_s2attn.py [--lengths 2048 4096 8192] [--groups 4] [--repeats 3]

Uses one attention layer's shape from the bundled model (9 query heads, 3 key/value heads, head
dim 64, batch 1), so the figures are attention alone: the projections and MLPs around it cost the
same under both. Memory is what the attention keeps for the backward pass (tensors saved by
autograd, any device) and, on a GPU, the peak allocated during the step.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core.methods.s2_attention import s2_attention_forward  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64  # SmolLM2-135M


def _step(attention, module, q, k, v) -> None:
    out, _ = attention(module, q, k, v, None, scaling=HEAD_DIM**-0.5)
    out.sum().backward()


def _saved_mb(attention, module, q, k, v) -> float:
    """Megabytes autograd keeps between forward and backward (each storage counted once)."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = attention(module, q, k, v, None, scaling=HEAD_DIM**-0.5)
    out.sum().backward()
    return sum(seen.values()) / 2**20


def measure(length: int, groups: int, repeats: int, device: str) -> dict:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = SimpleNamespace(training=True, num_key_value_groups=HEADS // KV_HEADS, is_causal=True,
                             config=SimpleNamespace(s2_attention_groups=groups))
    g = torch.Generator(device=device).manual_seed(0)

    def tensor(heads):
        return torch.randn(1, heads, length, HEAD_DIM, device=device, generator=g, requires_grad=True)

    q, k, v = tensor(HEADS), tensor(KV_HEADS), tensor(KV_HEADS)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    result = {"length": length}
    for name, attention in (("full", sdpa_attention_forward), ("s2", s2_attention_forward)):
        _step(attention, module, q, k, v)  # warm-up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            _step(attention, module, q, k, v)
        sync()
        result[f"{name}_s"] = (time.perf_counter() - start) / repeats
        if device == "cuda":
            result[f"{name}_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result[f"{name}_saved_mb"] = _saved_mb(attention, module, q, k, v)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    print(f"attention fwd+bwd, {HEADS} heads / {KV_HEADS} kv heads / dim {HEAD_DIM}, batch 1, "
          f"{args.groups} groups, {args.device}, {torch.get_num_threads()} threads")
    print(f"{'length':>7} {'full s':>8} {'s2 s':>8} {'time s2/full':>12} {'saved MB full':>14} {'saved MB s2':>12}")
    for length in args.lengths:
        r = measure(length, args.groups, args.repeats, args.device)
        line = (f"{length:>7} {r['full_s']:>8.3f} {r['s2_s']:>8.3f} {r['s2_s'] / r['full_s']:>12.2f} "
                f"{r['full_saved_mb']:>14.1f} {r['s2_saved_mb']:>12.1f}")
        if "full_peak_mb" in r:
            line += f"  peak MB full {r['full_peak_mb']:.0f} s2 {r['s2_peak_mb']:.0f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
