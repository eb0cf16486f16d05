"""The export process: `python -m core.export.worker JOB_FOLDER`.

Everything is written into a hidden temporary folder beside the destination and renamed into
place only after every check passed, so a failed, cancelled or killed export never leaves a
folder that looks like a good model.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from core.export.gguf import Cancelled
from core.export.job import ExportJob

# Each stage as status.json says it: `stage` in English (the CLI's progress bar, the log), and `stage_key`
# with `stage_values` so a page can say it in its own language.
STAGES = {
    "load": "loading base model and adapter",
    "reference": "computing base + adapter logits",
    "merge": "merging and saving weights",
    "verify": "verifying the saved folder",
    "gguf_write": "writing GGUF {type}",
    "gguf_check": "checking GGUF {type}",
    "card": "writing model card",
    "done": "done",
    "cancelled": "cancelled",
}


def stage_fields(key: str, **values) -> dict:
    return {"stage": STAGES[key].format(**values), "stage_key": key, "stage_values": values}


def export(job: ExportJob, options, folder: Path) -> dict:
    """Write the whole export into `folder`; returns the result summary."""
    from core.chat.prompt import end_token_strings
    from core.export import card, gguf, merge, ollama
    from core.export.options import ExportError, shard_bytes
    from core.models.adapter import check_run, load_run_model

    def stage(key: str, progress: float, **values) -> None:
        if job.cancel_requested():
            raise Cancelled()
        fields = stage_fields(key, **values)
        job.write_status(progress=progress, **fields)
        print(f"[export] {fields['stage']}", flush=True)

    run = check_run(options.run)
    stage("load", 0.05)
    model, tokenizer, spec = load_run_model(run, "cpu")  # float32: the merge and the check are exact
    inputs = merge.sample_inputs(tokenizer)
    stage("reference", 0.2)
    reference = merge.logits_of(model, inputs)
    stage("merge", 0.3)
    merge.merge_and_save(model, tokenizer, folder, options.dtype, shard_bytes(options.shard_size))
    del model
    stage("verify", 0.5)
    saved = merge.load_saved(folder, spec.model.trust_remote_code)
    diff = merge.max_difference(reference, merge.logits_of(saved, inputs))
    tolerance = merge.tolerance_for(reference, options.dtype, options.tolerance)
    print(f"[export] max |logit difference| {diff:.3g}, tolerance {tolerance:.3g}", flush=True)
    if not diff <= tolerance:  # also catches NaN
        raise ExportError(f"the merged model's logits differ from base + adapter by {diff:.3g}, "
                          f"more than the tolerance {tolerance:.3g}; the export was not written")
    name = Path(options.out).name
    result = {"name": name, "dtype": options.dtype, "shard_size": options.shard_size, "max_logit_diff": diff,
              "tolerance": tolerance, "prompts": len(inputs), "gguf": [], "ollama": False, "loss_chart": None}

    step = 0.4 / max(1, len(options.gguf))
    for i, outtype in enumerate(options.gguf):
        stage("gguf_write", 0.55 + i * step, type=outtype)
        file = f"{name}-{outtype}.gguf"
        gguf.convert(folder, folder / file, outtype, sys.stdout, job.cancel_requested)
        stage("gguf_check", 0.55 + (i + 0.5) * step, type=outtype)
        loaded = gguf.load_gguf(folder, file)
        same = all(greedy(saved, tokenizer, p) == greedy(loaded, tokenizer, p) for p in merge.SAMPLE_PROMPTS[:2])
        del loaded
        print(f"[export] GGUF {outtype}: greedy answers {'match' if same else 'DIFFER'}", flush=True)
        if not same and outtype == "f16":  # f16 is lossless for these weights; q8_0 may move a near tie
            raise ExportError(f"the {outtype} GGUF file answers differently from the merged model")
        result["gguf"].append({"type": outtype, "file": file, "same_answer": same,
                               "size_mb": round((folder / file).stat().st_size / 2**20, 1)})

    stage("card", 0.96)
    records, _ = run.read_metrics()
    svg = card.loss_svg(records)
    if svg:
        (folder / "loss.svg").write_text(svg, encoding="utf-8")
        result["loss_chart"] = "loss.svg"
    if options.ollama:
        source = f"./{result['gguf'][-1]['file']}" if result["gguf"] else "."
        text = ollama.modelfile(tokenizer, source, end_token_strings(tokenizer, saved.generation_config), options.system)
        (folder / "Modelfile").write_text(text, encoding="utf-8")
        result["ollama"] = True
    (folder / "README.md").write_text(card.model_card(spec, run, records, result), encoding="utf-8")
    return result


def greedy(model, tokenizer, prompt: str, max_new_tokens: int = 16) -> list[int]:
    import torch

    from core.chat.prompt import encode_prompt, end_token_ids

    inputs = encode_prompt(tokenizer, [{"role": "user", "content": prompt}])
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=end_token_ids(tokenizer, model.generation_config),
                             pad_token_id=tokenizer.pad_token_id)
    return out[0][inputs["input_ids"].shape[1]:].tolist()


def publishable(folder: Path) -> None:
    """mkdtemp and some writers create owner-only files; give the export the usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for item in folder.rglob("*"):
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)


def discard(partial: Path | None) -> None:
    if partial is not None:
        shutil.rmtree(partial, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m core.export.worker EXPORT_JOB_FOLDER", file=sys.stderr)
        return 2
    job = ExportJob(Path(argv[0]).resolve())
    job.write_status(state="running", pid=os.getpid(), started_at=time.time())
    options = job.options()
    out = Path(options.out)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        result = export(job, options, tmp)
        publishable(tmp)
        if out.exists():
            out.rmdir()  # checked empty before launch; rmdir refuses if something appeared since
        os.replace(tmp, out)
        tmp = None
    except Cancelled:
        discard(tmp)  # first: whoever reads the verdict must find nothing left behind
        job.write_status(state="cancelled", ended_at=time.time(), **stage_fields("cancelled"))
        print("[export] cancelled; nothing was written", flush=True)
        return 1
    except BaseException as err:  # report every failure, then exit non-zero
        traceback.print_exc()
        discard(tmp)
        job.mark_failed(err)
        return 1
    job.write_status(state="completed", ended_at=time.time(), progress=1.0, result=result, **stage_fields("done"))
    print(f"[export] completed: {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
