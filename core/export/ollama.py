"""An Ollama Modelfile whose template, system prompt and stop tokens are the model's own.

Ollama templates are Go templates, not Jinja, so the Jinja chat template cannot be copied. Instead
it is rendered on marker messages, which reveals the text it puts before and after each role's
content; those pieces become the Go template. This works for any template that wraps each
message on its own (ChatML, Llama 3, Gemma, Phi and most others) and is checked by re-assembling a
conversation from the pieces and comparing it with the Jinja rendering.
"""
from __future__ import annotations

from dataclasses import dataclass

MARK = {"system": "\u2063SYS\u2063", "user": "\u2063USR\u2063", "assistant": "\u2063AST\u2063"}


class TemplateNotSplittable(ValueError):
    """The chat template does something other than wrap each message; no Go template can be derived."""


@dataclass
class ChatPieces:
    system_pre: str
    system_post: str
    user_pre: str
    user_post: str
    assistant_pre: str      # also the generation prompt
    assistant_post: str
    default_system: str     # what the template adds when no system message is given ("" if nothing)


def _render(tokenizer, roles, generation=False) -> str:
    messages = [{"role": r, "content": MARK[r]} for r in roles]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _split(text: str, before: str, mark: str) -> tuple[str, str]:
    if not text.startswith(before) or text[len(before):].count(mark) != 1:
        raise TemplateNotSplittable("the chat template does not render messages one after another")
    pre, post = text[len(before):].split(mark)
    return pre, post


def chat_pieces(tokenizer) -> ChatPieces:
    s = _render(tokenizer, ["system"])
    su = _render(tokenizer, ["system", "user"])
    sua = _render(tokenizer, ["system", "user", "assistant"])
    gen = _render(tokenizer, ["system", "user"], generation=True)
    system_pre, system_post = _split(s, "", MARK["system"])
    user_pre, user_post = _split(su, s, MARK["user"])
    assistant_pre, assistant_post = _split(sua, su, MARK["assistant"])
    if gen != su + assistant_pre:
        raise TemplateNotSplittable("the generation prompt is not the start of an assistant message")
    alone = _render(tokenizer, ["user"])
    head = alone[: alone.index(user_pre + MARK["user"])] if user_pre + MARK["user"] in alone else ""
    default_system = ""
    if head and head.startswith(system_pre) and head.endswith(system_post):
        default_system = head[len(system_pre): len(head) - len(system_post)]
    elif head:
        raise TemplateNotSplittable("the template adds text before a conversation that is not a system message")
    return ChatPieces(system_pre, system_post, user_pre, user_post, assistant_pre, assistant_post, default_system)


def assemble(pieces: ChatPieces, messages: list[dict], generation: bool) -> str:
    """What the Go template below renders for `messages`, done in Python so the tests can compare it with Jinja."""
    out = []
    if messages and messages[0]["role"] != "system" and pieces.default_system:
        out.append(pieces.system_pre + pieces.default_system + pieces.system_post)
    for m in messages:
        pre, post = getattr(pieces, f"{m['role']}_pre"), getattr(pieces, f"{m['role']}_post")
        out.append(pre + m["content"] + post)
    return "".join(out) + (pieces.assistant_pre if generation else "")


def _go(text: str) -> str:
    """A literal inside a Go template: only '{{' needs care."""
    return text.replace("{{", '{{ "{{" }}')


def go_template(p: ChatPieces) -> str:
    # No "{{-" trimming anywhere: the pieces' own newlines are part of the format.
    # Ollama passes the SYSTEM line (or the user's own system message) as the first message.
    return (
        "{{ range .Messages }}"
        f'{{{{ if eq .Role "system" }}}}{_go(p.system_pre)}{{{{ .Content }}}}{_go(p.system_post)}'
        f'{{{{ else if eq .Role "user" }}}}{_go(p.user_pre)}{{{{ .Content }}}}{_go(p.user_post)}'
        f'{{{{ else if eq .Role "assistant" }}}}{_go(p.assistant_pre)}{{{{ .Content }}}}{_go(p.assistant_post)}'
        "{{ end }}{{ end }}"
        f"{_go(p.assistant_pre)}"
    )


def _quote(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def modelfile(tokenizer, source: str, stop_tokens: list[str], system: str = "", params: dict | None = None) -> str:
    """The Modelfile text; `source` is what FROM names (a GGUF file or '.' for the safetensors folder)."""
    pieces = chat_pieces(tokenizer)
    lines = [f"FROM {source}", "", f"TEMPLATE {_quote(go_template(pieces))}", ""]
    system = system or pieces.default_system
    if system:
        lines += [f"SYSTEM {_quote(system)}", ""]
    for token in stop_tokens:
        lines.append(f'PARAMETER stop "{token}"')
    for key, value in (params or {}).items():
        lines.append(f"PARAMETER {key} {value}")
    return "\n".join(lines) + "\n"
