"""The trainer process: `python -m core.training.trainer RUN/job.yaml`.

Reads the job from its run folder, trains with TRL's SFTTrainer and the chosen
method, and reports only through the run folder (status.json, metrics.jsonl,
adapter/). Its stdout and stderr are the run's train.log.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from core.runs.folder import RunFolder


def build_dataset(spec, tokenizer):
    """The training rows (input_ids, labels) in file order; see build_datasets for the eval split."""
    return build_datasets(spec, tokenizer)[0]


def build_datasets(spec, tokenizer):
    """(train, eval or None) datasets of input_ids and labels, packed into rows of max length when asked.

    Samples keep their file order unless a subset or a split is asked for; then they are shuffled
    with the training seed first, so the subset and the held-out share are a fair draw."""
    from datasets import Dataset

    from core.data.encode import encode_samples
    from core.data.split import split_samples

    d = spec.data
    train_samples, held_samples = split_samples(spec)
    train_rows = encode_samples(tokenizer, train_samples, d.max_length, d.train_on_prompt)
    eval_rows = encode_samples(tokenizer, held_samples, d.max_length, d.train_on_prompt) if held_samples else None
    train, held_out = Dataset.from_list(train_rows), Dataset.from_list(eval_rows) if eval_rows else None
    if d.batching == "packed":
        # Packed here rather than by TRL so the step plan counts packed rows, which is what the Trainer sees.
        from trl.data_utils import pack_dataset

        train = pack_dataset(train, d.max_length, "bfd")
        held_out = pack_dataset(held_out, d.max_length, "bfd") if held_out is not None else None
    return train, held_out


def planned_steps(num_samples: int, t) -> int:
    """Optimiser steps the Trainer will run: the same arithmetic as its set_initial_training_values
    (batches per epoch rounded up, then accumulation rounded up), so methods can size schedules."""
    if t.max_steps:
        return t.max_steps
    batches = math.ceil(num_samples / t.batch_size)
    per_epoch = max(math.ceil(batches / t.grad_accum), 1)
    return math.ceil(t.epochs * per_epoch)


def save_adapter(write_adapter, tokenizer, target: Path) -> None:
    """Write the adapter whole or not at all: `write_adapter(folder)` fills a temporary folder, then it is renamed."""
    tmp = target.with_name(".adapter.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_adapter(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def pick_runtime(spec) -> tuple[str, str]:
    """(device, precision) the job trains with; sets the CPU threads it asks for."""
    import torch

    from core.runtime.device import pick_device, pick_precision

    device = pick_device(spec.runtime.device)
    if spec.runtime.threads:
        torch.set_num_threads(spec.runtime.threads)
    return device, pick_precision(spec.runtime.precision, device)


def training_args(spec, output_dir, device: str, precision: str, total_steps: int, has_eval: bool):
    """The Trainer's arguments: every train.* field, and the data and runtime fields the Trainer reads."""
    from trl import SFTConfig

    t = spec.train
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler,
        max_grad_norm=t.max_grad_norm or None,
        logging_steps=t.logging_steps,
        gradient_checkpointing=t.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        # Rows are already cut to max_length when encoded; TRL refuses a max_length with padding-free batches.
        max_length=None if spec.data.batching != "padded" else spec.data.max_length,
        # Packed rows and padding-free batches are laid end to end; position ids restart at each sample
        # and transformers builds the attention mask from them, so samples never see each other.
        padding_free=spec.data.batching in ("padding_free", "packed"),
        eval_strategy="steps" if has_eval else "no",
        eval_steps=spec.data.eval_steps or max(total_steps // 10, 1),
        per_device_eval_batch_size=t.batch_size,
        include_num_input_tokens_seen="non_padding",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def train(run: RunFolder) -> str:
    import torch
    from trl import SFTTrainer

    from core.methods import METHODS, TrainPlan
    from core.models.loading import load_base_model, load_tokenizer
    from core.spec import load_spec
    from core.training.callback import RunFolderCallback

    spec = load_spec(str(run.job))
    method = METHODS[spec.method]

    def call(name, *args):
        return getattr(method, name)(*args)

    device, precision = pick_runtime(spec)
    print(f"[workbench] method={spec.method} device={device} precision={precision} threads={torch.get_num_threads()}", flush=True)

    tokenizer = load_tokenizer(spec.model.path)
    dataset, eval_dataset = build_datasets(spec, tokenizer)
    print(f"[workbench] {len(dataset)} training samples, {len(eval_dataset or [])} eval samples", flush=True)
    t = spec.train
    plan = TrainPlan(total_steps=planned_steps(len(dataset), t))
    model = load_base_model(spec, device, **call("load_kwargs", spec, device))
    model = call("prepare_model", spec, model)
    peft_config = call("peft_config", spec, model, plan)

    args = training_args(spec, run.checkpoints_dir, device, precision, plan.total_steps, eval_dataset is not None)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    call("after_wrap", spec, trainer.model)
    optimizer = call("optimizer", spec, trainer.model, args)
    if optimizer is not None:
        trainer.optimizer = optimizer  # the Trainer builds its own only when none is set
    extra = call("callbacks", spec, trainer.model, plan)
    # The run-folder callback goes last, so a method callback's on_log/on_step_end work is done before it writes.
    for cb in [*extra, RunFolderCallback(run, samples_per_step=t.batch_size * t.grad_accum, extras=extra)]:
        trainer.add_callback(cb)
    trainer.model.print_trainable_parameters()
    trainer.train()
    save_adapter(lambda folder: call("save_adapter", spec, trainer.model, folder), tokenizer, run.adapter_dir)
    return "stopped" if run.stop_requested() else "completed"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m core.training.trainer RUN_FOLDER/job.yaml", file=sys.stderr)
        return 2
    run = RunFolder(Path(argv[0]).resolve().parent)
    run.write_status(state="running", pid=os.getpid(), started_at=time.time(), error=None)
    try:
        final = train(run)
    except BaseException as err:  # report every failure, KeyboardInterrupt included, then re-raise nothing
        traceback.print_exc()
        run.mark_failed(err)
        return 1
    run.write_status(state=final, ended_at=time.time())
    print(f"[workbench] {final}: adapter saved to {run.adapter_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
