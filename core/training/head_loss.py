"""The loss at trained positions only, without ever building the full-vocabulary logits.

A causal LM's output layer maps every position to a score for every vocabulary entry (49,152 for
SmolLM2): in fp32 that is batch x length x 49,152 x 4 bytes, then as much again for its gradient,
while the loss only needs the positions whose next token is trained (on chat data, the assistant's
answers: about a third of the tokens of the bundled identity set). Here the final hidden states are
gathered at those positions first, and the output layer + cross-entropy run on them in chunks of
about 32 MB of logits. For a frozen output layer (every method but the ones that train embeddings)
the gradient with respect to the hidden states is formed chunk by chunk in the forward pass
(softmax minus one-hot, times the weight), so no logits are kept for the backward and nothing is
recomputed; otherwise each chunk is checkpointed and recomputed in the backward.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

# Logit elements per chunk: 2**23 fp32 values = 32 MB, small next to the model, large enough that
# the chunk's matmul still runs at full speed (170 rows for a 49,152-entry vocabulary).
CHUNK_ELEMENTS = 2**23


def chunk_rows(vocab: int) -> int:
    return max(CHUNK_ELEMENTS // max(vocab, 1), 16)


def _chunk_stats(logits: torch.Tensor, targets: torch.Tensor):
    """(summed cross-entropy, correct top-1 count, summed entropy) of fp32 logits, and their softmax.
    The logits become log-probabilities in place; the softmax is the one new buffer."""
    lse = torch.logsumexp(logits, dim=-1)
    loss = (lse - logits.gather(1, targets[:, None]).squeeze(1)).sum()
    correct = (logits.argmax(dim=-1) == targets).sum()
    logp = logits.sub_(lse[:, None])
    probs = logp.exp()
    # entropy = -sum p log p as one dot product over the chunk: no clamped copy, no log pass, no product
    # buffer (those took about 2% of the bundled model's peer-job step on a 2-core AVX2 CPU)
    entropy = -torch.dot(probs.view(-1), logp.view(-1))
    return loss, correct, entropy, probs


class _FrozenHeadCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of hidden @ weight.T against targets for a frozen weight, chunked.

    Returns (loss, correct, entropy_sum); only the loss has a gradient. The forward stores
    d loss / d hidden (softmax - onehot) @ weight, chunk by chunk, so the backward is a scale."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, rows):
        dev = hidden.device.type
        compute = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else hidden.dtype
        w = weight.to(compute)
        grad = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
        loss = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        entropy = hidden.new_zeros((), dtype=torch.float32)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], rows):
                h = hidden[start:start + rows].to(compute)
                t = targets[start:start + rows]
                logits = (h @ w.t()).float()
                part, right, ent, probs = _chunk_stats(logits, t)
                loss += part
                correct += right
                entropy += ent
                probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0  # d CE / d logits
                grad[start:start + rows] = (probs.to(compute) @ w).float()
        ctx.save_for_backward(grad)
        ctx.hidden_dtype = hidden.dtype
        ctx.mark_non_differentiable(correct, entropy)
        return loss, correct, entropy

    @staticmethod
    def backward(ctx, grad_loss, *_):
        (grad,) = ctx.saved_tensors
        return (grad * grad_loss).to(ctx.hidden_dtype), None, None, None


def _module_chunk(hidden, targets, head):
    logits = head(hidden).float()
    lse = torch.logsumexp(logits, dim=-1)
    loss = (lse - logits.gather(1, targets[:, None]).squeeze(1)).sum()
    with torch.no_grad():
        correct = (logits.argmax(dim=-1) == targets).sum()
        logp = logits - lse[:, None]
        entropy = -(logp.exp() * logp).sum()
    return loss, correct, entropy


def head_cross_entropy(hidden: torch.Tensor, targets: torch.Tensor, head: torch.nn.Module):
    """(summed loss, correct count, summed entropy) over rows of `hidden` [n, d] against `targets` [n].

    A plain frozen linear head takes the fused path; a head that trains (embeddings tied and trained,
    a LoRA-wrapped head) runs as a module on checkpointed chunks, so its own gradients flow."""
    weight = getattr(head, "weight", None)
    plain = type(head) is torch.nn.Linear and head.bias is None and weight is not None and not weight.requires_grad
    rows = chunk_rows(head.out_features if hasattr(head, "out_features") else weight.shape[0])
    if plain:
        return _FrozenHeadCrossEntropy.apply(hidden, weight, targets, rows)
    loss = hidden.new_zeros((), dtype=torch.float32)
    correct = torch.zeros((), dtype=torch.long, device=hidden.device)
    entropy = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], rows):
        part, right, ent = checkpoint(_module_chunk, hidden[start:start + rows], targets[start:start + rows], head,
                                      use_reentrant=False)
        loss, correct, entropy = loss + part, correct + right, entropy + ent
    return loss, correct, entropy


def shifted_targets(labels: torch.Tensor, start: int, positions: int) -> torch.Tensor:
    """Targets for `positions` hidden states from position `start` on: position j predicts labels[j + 1];
    a position past the last label predicts nothing (-100)."""
    tail = labels[:, start + 1:start + 1 + positions]
    missing = positions - tail.shape[1]
    return torch.cat([tail, labels.new_full((labels.shape[0], missing), -100)], dim=1) if missing else tail
