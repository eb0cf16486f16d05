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
    # Limits: a long conversation costs time before the first word (the model reads all of it), and an answer
    # must not hold the model for ever; each ends with a message saying which limit was met.
    max_prompt_chars: int = opt(32000, "Longest conversation the model is given, in characters: system prompt, "
                                       "earlier turns and the new message together. A longer one is refused; "
                                       "Clear starts a fresh conversation.", lo=1, hi=500000)
    max_prompt_tokens: int = opt(4096, "Longest conversation in tokens, after the chat template; also never more "
                                       "than the model's own context. Reading a long prompt takes time before the "
                                       "first word appears.", lo=1, hi=32768)
    time_limit_s: float = opt(120.0, "Longest time one answer may take, in seconds. At the limit the answer stops "
                                     "where it is, with a note; Stop generation ends it sooner.", lo=1.0, hi=3600.0)

    @property
    def sampling(self) -> bool:
        return self.temperature > 0
