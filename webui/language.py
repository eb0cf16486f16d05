"""The page's language: one switch that re-labels every tab.

Components are found by elem_id: every block of the page whose id has an entry in the locale files
(`elements`) or is a field control (webui.form.FIELD_IDS) gets its text in the new language. What is
drawn from data (charts, progress lines, pickers whose entries are worded, messages) registers a
renderer with `also`, and each message box keeps what it said as parts (see i18n.render), so a
message already on screen is said again in the new language.
"""
from __future__ import annotations

import gradio as gr

from webui import i18n
from webui.form import FIELD_IDS, field_text


class PageLanguage:
    def __init__(self, lang: str, language: gr.components.Component):
        self.lang = lang              # the language the page is drawn in
        self.language = language      # the switch; handlers take it as an input to know the language now
        self.renderers: list[tuple] = []

    def also(self, fn, inputs: list, outputs: list) -> None:
        """On a switch, `fn(lang, *inputs)` returns one update per output (a list)."""
        self.renderers.append((fn, list(inputs), list(outputs)))

    def message(self, elem_id: str, initial: list | None = None, **kwargs) -> gr.State:
        """A Markdown box for messages and the State that holds what it says (as i18n.render parts).
        Handlers write the State; the box follows it, in the language of the moment."""
        box = gr.Markdown(i18n.render(initial or [], self.lang), elem_id=elem_id, **kwargs)
        said = gr.State(initial or [])
        # Named after the box, so an API client (and the tests that attack the page) can read what it says.
        said.change(i18n.render, [said, self.language], [box], show_progress="hidden",
                    api_name="message_" + elem_id.replace("-", "_"))
        self.also(lambda lang, parts: [i18n.render(parts, lang)], [said], [box])
        return said

    def wire(self, demo: gr.Blocks) -> None:
        """Connect the switch to every labelled component of `demo` and every renderer; call once, last."""
        labelled = [block for block in demo.blocks.values()
                    if block.elem_id in FIELD_IDS or i18n.has_element(block.elem_id)]
        inputs = [component for _, ins, _ in self.renderers for component in ins]
        outputs = [component for _, _, outs in self.renderers for component in outs]

        def switch(lang, *values):
            updates = [relabel(block.elem_id, lang) for block in labelled]
            start = 0
            for fn, ins, outs in self.renderers:
                drawn = fn(lang, *values[start:start + len(ins)])
                assert len(drawn) == len(outs), f"{fn} returned {len(drawn)} updates for {len(outs)} outputs"
                updates += list(drawn)
                start += len(ins)
            return updates

        self.language.change(switch, [self.language, *inputs], [*labelled, *outputs], show_progress="hidden")


def relabel(elem_id: str, lang: str):
    """The update that puts component `elem_id`'s text in `lang`."""
    if elem_id in FIELD_IDS:
        dotted, f = FIELD_IDS[elem_id]
        return gr.update(**field_text(dotted, f, lang))
    return gr.update(**i18n.element(elem_id, lang))
