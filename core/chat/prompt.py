"""Prompts and stopping, from the model's own chat template and end tokens."""
from __future__ import annotations

# End-of-turn markers of common chat templates. A template's turn end is often not the tokenizer's
# eos (Llama 3 ends a turn with <|eot_id|>), so generation must stop at whichever of these exist.
TURN_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


def conversation(system: str, history: list[dict], prompt: str) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system and system.strip() else []
    return messages + [{"role": m["role"], "content": m["content"]} for m in history] + [{"role": "user", "content": prompt}]


def encode_prompt(tokenizer, messages: list[dict]) -> dict:
    """Token ids of the conversation rendered by the model's template, ready for the assistant's turn; a template
    that renders for too long raises TemplateTimeout."""
    from core.data.template_limit import render_chat

    return render_chat(tokenizer, messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)


def end_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Every token id that ends an answer: the generation config's eos, the tokenizer's, the template's turn end."""
    ids = []
    configured = getattr(generation_config, "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured]
    ids.append(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    template = getattr(tokenizer, "chat_template", None) or ""
    ids += [vocab[m] for m in TURN_END_MARKERS if m in vocab and m in template]
    return list(dict.fromkeys(i for i in ids if i is not None))


def end_token_strings(tokenizer, generation_config=None) -> list[str]:
    return [tokenizer.convert_ids_to_tokens(i) for i in end_token_ids(tokenizer, generation_config)]
