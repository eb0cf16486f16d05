"""TRL's SFTTrainer with a leaner loss step: the loss only at trained positions (head_loss.py) and a
shared prompt prefix computed once per batch (shared_prefix.py).

Both change how the numbers are computed, not which: the loss, its normalisation (tokens in the
accumulated batch, as TRL does) and the logged entropy and token accuracy are the same quantities
TRL reports, now computed at the trained positions only. Anything this step does not cover (several
processes, a custom loss function, label smoothing, mixture-of-experts auxiliary losses, outputs asked
for) goes to TRL's own compute_loss unchanged.
"""
from __future__ import annotations

import torch
from trl import SFTTrainer

from core.training.head_loss import head_cross_entropy, shifted_targets
from core.training.shared_prefix import hidden_after_prefix, shared_prefix_length


class LeanSFTTrainer(SFTTrainer):
    def __init__(self, *args, lean_loss: bool = True, share_prefix: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.lean_loss = lean_loss
        # Activation checkpointing recomputes each layer without its cache, so a broadcast prefix cannot be used.
        self.share_prefix = share_prefix and not self.args.gradient_checkpointing
        self.prefix_tokens_saved = 0  # tokens not recomputed thanks to the shared prefix (for the log)
        self._step_grad_norm = None  # this step's gradient norm as the Trainer formed it, until RunGuard takes it

    def _get_grad_norm(self, model, grad_norm=None):
        self._step_grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        return self._step_grad_norm

    def take_step_grad_norm(self):
        """This step's gradient norm, once: a later read before the next norm is formed gets None, so a guard
        never checks the previous step's figure."""
        norm, self._step_grad_norm = self._step_grad_norm, None
        return norm

    def _lean_applies(self, model, return_outputs: bool) -> bool:
        return (self.lean_loss and not return_outputs and self.accelerator.num_processes == 1
                and self.compute_loss_func is None and self.label_smoother is None and not self.aux_loss_enabled
                and getattr(self.args, "loss_type", "nll") == "nll" and hasattr(model, "get_base_model"))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._lean_applies(model, return_outputs):
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        mode = "train" if model.training else "eval"
        causal = model.get_base_model()  # the PEFT-wrapped causal LM; its decoder body and output layer
        body, head = causal.base_model, causal.get_output_embeddings()
        labels = inputs["labels"]
        rest = {k: v for k, v in inputs.items() if k not in ("labels", "use_cache")}
        if "attention_mask" in rest and labels.shape[1] > 1:
            # The last position predicts nothing and no later position attends to it: it never reaches the
            # loss, so it is not computed (padded batches; padding-free rows carry sequence bounds to keep).
            rest = {k: v[:, :-1] if torch.is_tensor(v) and v.dim() == 2 and v.shape == labels.shape else v
                    for k, v in rest.items()}

        prefix = shared_prefix_length(rest["input_ids"], rest.get("attention_mask"), labels) \
            if self.share_prefix else 0
        hidden = hidden_after_prefix(body, rest, prefix) if prefix else None
        if hidden is None:
            prefix = 0
            hidden = body(**rest, use_cache=False).last_hidden_state
        else:
            self.prefix_tokens_saved += prefix * (labels.shape[0] - 1)
        targets = shifted_targets(labels, prefix, hidden.shape[1])
        mask = targets != -100
        loss_sum, correct, entropy_sum = head_cross_entropy(hidden[mask], targets[mask], head)

        count = mask.sum()
        denominator = count.clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        loss = loss_sum / torch.as_tensor(denominator, device=loss_sum.device)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        self._record_metrics(mode, inputs, count, correct, entropy_sum)
        return loss

    def _record_metrics(self, mode: str, inputs: dict, count, correct, entropy_sum) -> None:
        """The per-step figures TRL logs (entropy, mean_token_accuracy, num_tokens), from the trained positions."""
        n = int(count)
        self._metrics[mode]["entropy"].append(float(entropy_sum) / n if n else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append(float(correct) / n if n else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                self._total_train_tokens += int(inputs["attention_mask"].sum())
            else:
                self._total_train_tokens += int(inputs["position_ids"].size(1))
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
