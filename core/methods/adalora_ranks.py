"""AdaLoRA's rank allocation inside the Trainer's loop (a callback of the trainer process).

Apart from core/methods/adalora.py so that reading a job (the CLI, the supervisor, the UI's checks) does not
import transformers' Trainer, and with it torch, only to declare a class it never uses."""
from __future__ import annotations

from transformers import TrainerCallback

from core.methods.adalora import layer_label


class RankAllocation(TrainerCallback):
    """Runs AdaLoRA's rank allocator and orthogonality penalty inside the Trainer's loop; reports ranks."""

    def __init__(self, peft_model, orth_weight: float, planned_steps: int):
        self.model = peft_model
        self.adapter = peft_model.active_adapter
        self.config = peft_model.peft_config[self.adapter]
        self.orth_weight = orth_weight
        self.planned_steps = planned_steps
        self.trainer_steps = None
        self.orth_value = None

    def on_train_begin(self, args, state, control, **kwargs):
        # The schedule was sized from planned_steps before the Trainer existed; its own count is the truth.
        self.trainer_steps = state.max_steps
        print(f"[workbench] adalora total_step: planned {self.planned_steps}, trainer {state.max_steps}", flush=True)
        if state.max_steps != self.config.total_step:
            self.model.base_model.rankallocator.set_total_step(state.max_steps)

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        # Before the step's first forward pass the gradients are empty, so the penalty's gradient is added
        # exactly once per optimiser step and gradient clipping sees it, like a term of the loss.
        # (Its value is kept for metrics.jsonl even when the weight is 0, to show how orthogonal P and Q stay.)
        import torch

        with torch.set_grad_enabled(self.orth_weight > 0):
            value = self.orthogonality()
        self.orth_value = round(value.item(), 6)
        if self.orth_weight > 0:
            penalty = self.orth_weight * value
            scaler = getattr(optimizer, "scaler", None)  # fp16 mixed precision scales the loss's gradients
            (scaler.scale(penalty) if scaler is not None else penalty).backward()

    def orthogonality(self):
        """Mean over A and B matrices of ||P P^T - I||_F, the penalty of the AdaLoRA paper."""
        import torch

        terms = []
        for name, p in self.model.named_parameters():
            if not p.requires_grad or f".{self.adapter}" not in name:
                continue
            if "lora_A" in name:
                cov = p @ p.T
            elif "lora_B" in name:
                cov = p.T @ p
            else:
                continue
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)))
        return torch.stack(terms).mean()

    def on_optimizer_step(self, args, state, control, **kwargs):
        # After the update, before zero_grad: the allocator scores weights by weight x gradient.
        # state.global_step counts finished steps, so this step is number global_step + 1; the last
        # step then equals total_step and, with tfinal 0, fixes the final budget exactly.
        self.model.base_model.update_and_allocate(state.global_step + 1)

    def ranks(self) -> dict[str, int]:
        pattern = self.config.rank_pattern or {}  # empty until the first pruning: every layer at init_r
        out = {}
        for name, p in self.model.named_parameters():
            if f"lora_E.{self.adapter}" not in name:
                continue
            # The allocator keys by the inner model's names; saving a checkpoint strips the adapter name.
            inner = name.split("base_model.model.", 1)[-1]
            kept = pattern.get(inner, pattern.get(inner.replace(f".{self.adapter}", "")))
            out[layer_label(name)] = int(sum(kept)) if kept is not None else int(p.shape[0])
        return out

    def metric_extras(self, state) -> dict:
        extras = {"ranks": self.ranks()}
        if self.orth_value is not None:
            extras["orth_reg"] = self.orth_value
        return extras
