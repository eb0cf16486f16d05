"""The exported model's card (README.md) and its loss chart (loss.svg).

The chart is a hand-written SVG polyline: it needs no plotting library and no browser, renders
on every model hub and in every Markdown viewer, and stays a few kilobytes.
"""
from __future__ import annotations

import html
from dataclasses import asdict

import yaml

WIDTH, HEIGHT, PAD = 640, 320, 48


def loss_svg(records: list[dict]) -> str | None:
    points = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None and r.get("step") is not None]
    if not points:
        return None
    steps, losses = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1
    y0, y1 = min(losses), max(losses) if max(losses) > min(losses) else min(losses) + 1

    def xy(step, loss):
        x = PAD + (step - x0) / (x1 - x0) * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - (loss - y0) / (y1 - y0) * (HEIGHT - 2 * PAD)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(s, v) for s, v in points)
    axis = f"M{PAD},{PAD} V{HEIGHT - PAD} H{WIDTH - PAD}"
    labels = [
        (PAD - 6, PAD + 4, "end", f"{y1:.3g}"), (PAD - 6, HEIGHT - PAD + 4, "end", f"{y0:.3g}"),
        (PAD, HEIGHT - PAD + 18, "middle", str(x0)), (WIDTH - PAD, HEIGHT - PAD + 18, "middle", str(x1)),
        (WIDTH / 2, HEIGHT - 10, "middle", "step"), (WIDTH / 2, 24, "middle", "training loss"),
    ]
    text = "".join(f'<text x="{x}" y="{y}" text-anchor="{a}">{html.escape(t)}</text>' for x, y, a, t in labels)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">'
            f'<rect width="100%" height="100%" fill="white"/>'
            f'<path d="{axis}" fill="none" stroke="#888"/>'
            f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="2"/>{text}</svg>\n')


def model_card(spec, run, records: list[dict], result: dict) -> str:
    """README.md: what was trained, how, on what, how far the loss came, and how the export was checked."""
    from core.methods import METHODS

    method = METHODS.get(spec.method)
    sections = list(getattr(method, "SECTIONS", {}))
    hyper = {s: asdict(getattr(spec, s)) for s in [*sections, "train"] if hasattr(spec, s)}
    losses = [r["loss"] for r in records if r.get("loss") is not None]
    final = f"{losses[-1]:.4f} (first {losses[0]:.4f}, {len(losses)} logged steps)" if losses else "not recorded"
    front = {"base_model": spec.model.path, "library_name": "transformers",
             "tags": ["lora-workbench", spec.method, "merged"], "pipeline_tag": "text-generation"}
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {result['name']}", "",
        f"`{spec.model.path}` fine-tuned with **{spec.method}** in LoRA Workbench (run `{run.run_id}`), "
        "with the adapter merged into the base weights: load it like any causal language model.", "",
        "## Training", "",
        f"- Method: {spec.method}",
        f"- Dataset: `{spec.data.dataset}`" + (f" (first {spec.data.max_samples} samples)" if spec.data.max_samples else ""),
        f"- Max length: {spec.data.max_length} tokens",
        f"- Final training loss: {final}", "",
    ]
    if result.get("loss_chart"):
        lines += [f"![training loss]({result['loss_chart']})", ""]
    lines += ["### Hyperparameters", "", "```yaml", yaml.safe_dump(hyper, sort_keys=False, allow_unicode=True).strip(),
              "```", "", "## Export check", "",
              f"- Weights saved as {result['dtype']}, shards of at most {result['shard_size']}.",
              f"- Max |logit difference| between this folder and base + adapter on {result['prompts']} sample prompts: "
              f"{result['max_logit_diff']:.3g} (tolerance {result['tolerance']:.3g}).", ""]
    for item in result.get("gguf", []):
        verdict = "same greedy answer as the merged model" if item["same_answer"] else "greedy answer differs (lossy quantisation)"
        lines.append(f"- `{item['file']}`: loaded back with transformers' GGUF loader, {verdict}.")
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              'model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER")',
              'tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")', "```", ""]
    if result.get("ollama"):
        lines += ["With Ollama: `ollama create NAME -f Modelfile` in this folder, then `ollama run NAME`.", ""]
    return "\n".join(lines)
