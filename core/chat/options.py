"""How the chat worker generates an answer, declared once: the Chat tab's controls, their defaults, bounds
and help, and the worker's own defaults all come from these fields.

The defaults answer greedily (temperature 0, no repetition penalty), so the same question always gets the
same answer, and the fine-tuned column answers exactly as the exported model will.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.spec.schema import MAX_SEED, opt


@dataclass
class GenerationOptions:
    max_new_tokens: int = opt(128, "Longest answer in tokens; an answer also ends at the model's end-of-turn token.",
                              lo=1, hi=4096)
    temperature: float = opt(0.0, "0 answers greedily (always the same answer); higher values sample more freely.",
                             lo=0.0, hi=5.0)
    top_p: float = opt(0.9, "When sampling: draw only from the most likely tokens whose probabilities add up to this.",
                       lo=0.01, hi=1.0)
    top_k: int = opt(50, "When sampling: draw only from this many most likely tokens (0 = no limit).", lo=0,
                     hi=1_000_000)
    repetition_penalty: float = opt(1.0, "Above 1 makes tokens already in the conversation less likely; 1 is off, "
                                         "which keeps greedy answers identical to the exported model's.", lo=0.5, hi=3.0)
    seed: int = opt(0, "Seed for sampling. Both columns use it, so base and fine-tuned answers differ only by the "
                       "adapter; the same seed gives the same sample.", lo=0, hi=MAX_SEED)

    @property
    def sampling(self) -> bool:
        return self.temperature > 0
