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


def save_adapter(write_adapter, tokenizer, target: Path, main: bool = True) -> None:
    """Write the adapter whole or not at all: `write_adapter(folder)` fills a temporary folder, then it is renamed.
    With `main` false this process only takes part in `write_adapter` (a gathering save) and writes nothing."""
    tmp = target.with_name(".adapter.tmp")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_adapter(tmp)
        if main:
            tokenizer.save_pretrained(tmp)
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)  # e.g. the disk filled: leave no half adapter behind
        raise
    if not main:
        return
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def start_from_adapter(model, folder: str):
    """The base wrapped in an existing adapter, trainable: a new run that trains a finished run's adapter further."""
    from peft import PeftModel

    print(f"[workbench] starting from the adapter in {folder}", flush=True)
    return PeftModel.from_pretrained(model, folder, is_trainable=True)


def resume_from(run: RunFolder) -> str | None:
    """The checkpoint this attempt resumes from (the Trainer restores weights, optimiser, schedule, data
    position and random state from it), or None for a fresh start."""
    checkpoint = run.resume_checkpoint()
    if checkpoint is not None:
        print(f"[workbench] resuming from {checkpoint.name}", flush=True)
    return str(checkpoint) if checkpoint is not None else None


def pick_runtime(spec) -> tuple[str, str]:
    """(device, precision) the job trains with; shows this process only the GPUs the job names and sets its
    CPU threads (the job's number, else the cores shared among the node's processes)."""
    import torch

    from core.runtime.device import gpu_ids, pick_device, pick_precision
    from core.runtime.distributed import claim_gpus
    from core.runtime.hardware import cpu_cores
    from core.runtime.layout import threads_per_process

    claim_gpus(gpu_ids(spec.runtime.device))
    device = pick_device(spec.runtime.device)
    torch.set_num_threads(threads_per_process(spec, cpu_cores()))
    return device, pick_precision(spec.runtime.precision, device)


def training_args(spec, output_dir, device: str, precision: str, total_steps: int, has_eval: bool,
                  checkpointing: bool | None = None):
    """The Trainer's arguments: every train.* field, and the data and runtime fields the Trainer reads.
    `checkpointing` is the levers' decision for train.gradient_checkpointing (auto needs the data); None reads
    the field as given."""
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
        max_grad_norm=t.max_grad_norm,  # 0 skips clipping (the Trainer compares it with 0; None was a TypeError)
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN, not hidden, so the guard sees it
        logging_steps=t.logging_steps,
        gradient_checkpointing=t.gradient_checkpointing == "on" if checkpointing is None else checkpointing,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=t.keep_checkpoints,
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
        # Under DDP: every trainable weight (the adapter) takes part in each forward, so DDP need not search
        # the graph for unused ones after every backward.
        ddp_find_unused_parameters=False,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def train(run: RunFolder) -> str:
    from core.spec import load_spec
    from core.training.process import prepare_process

    spec = load_spec(str(run.job))
    for note in prepare_process(spec):  # before torch, TRL and PEFT load: see core/training/process.py
        print(f"[workbench] {note}", flush=True)

    import torch

    from core.methods import METHODS, TrainPlan
    from core.models.loading import load_base_model, load_tokenizer
    from core.runtime import distributed, telemetry
    from core.training.callback import RunFolderCallback
    from core.training.fused_lora import fuse_lora_layers
    from core.training.guards import RunGuard, check_weights, disk_full_named
    from core.training.lean_trainer import LeanSFTTrainer
    from core.training.levers import choose as choose_levers

    method = METHODS[spec.method]

    def call(name, *args):
        return getattr(method, name)(*args)

    def phase(name):  # what the run is doing, for failure.py's words; in a group rank 0 writes it
        if distributed.is_main_process():
            run.write_status(phase=name)

    device, precision = pick_runtime(spec)
    print(f"[workbench] method={spec.method} device={device} precision={precision} threads={torch.get_num_threads()}", flush=True)
    if distributed.in_group():
        print(f"[workbench] rank {distributed.rank()} of {distributed.world_size()}, pid {os.getpid()}", flush=True)

    phase("model")  # a failure now is the model's (failure.py words it so); then the data's
    tokenizer = load_tokenizer(spec.model.path, spec.model.trust_remote_code)
    phase("data")
    dataset, eval_dataset = build_datasets(spec, tokenizer)
    print(f"[workbench] {len(dataset)} training samples, {len(eval_dataset or [])} eval samples", flush=True)
    t = spec.train
    levers = choose_levers(spec, device, precision, dataset)
    for note in levers.notes:
        print(f"[workbench] {note}", flush=True)
    plan = TrainPlan(total_steps=planned_steps(len(dataset), t))
    phase("model")
    model = load_base_model(spec, device, **call("load_kwargs", spec, device))
    model = call("prepare_model", spec, model)
    peft_config = call("peft_config", spec, model, plan)
    if spec.model.init_adapter:
        model, peft_config = start_from_adapter(model, spec.model.init_adapter), None

    args = training_args(spec, run.checkpoints_dir, device, precision, plan.total_steps, eval_dataset is not None,
                         checkpointing=levers.checkpointing)
    trainer = LeanSFTTrainer(
        lean_loss=levers.lean_loss,
        share_prefix=levers.shared_prefix,
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    call("after_wrap", spec, trainer.model)
    if levers.fused_lora:
        print(f"[workbench] fused LoRA forward on {fuse_lora_layers(trainer.model)} layers", flush=True)
    optimizer = call("optimizer", spec, trainer.model, args)
    if optimizer is not None:
        trainer.optimizer = optimizer  # the Trainer builds its own only when none is set
    extra = call("callbacks", spec, trainer.model, plan)
    # First, so a NaN step is refused before anything records it; it reads the norm the Trainer formed.
    guard = RunGuard(step_norm=trainer.take_step_grad_norm)
    meters = [m for m in [telemetry.gpu_meter(spec)] if m is not None]  # per-GPU memory, use, power in metrics
    samples_per_step = t.batch_size * t.grad_accum * distributed.world_size()
    # The run-folder callback goes last, so a method callback's on_log/on_step_end work is done before it writes.
    for cb in [guard, *extra, RunFolderCallback(run, samples_per_step=samples_per_step, device=device, extras=[*extra, *meters],
                                                prediction=levers.prediction)]:
        trainer.add_callback(cb)
    rows = None
    if distributed.in_group():  # each rank's log shows its share of the data
        rows = distributed.RowCounter.attach(trainer.model)
    trainer.model.print_trainable_parameters()
    phase("training")
    with disk_full_named(run.path, guard):
        trainer.train(resume_from_checkpoint=resume_from(run))
        if rows is not None:
            print(rows.line(), flush=True)
        check_weights(trainer.model, trainer.state.global_step)
        save_trained_adapter(spec, trainer, lambda folder: call("save_adapter", spec, trainer.model, folder),
                             tokenizer, run.adapter_dir)
    return "stopped" if run.stop_requested() else "completed"


def save_trained_adapter(spec, trainer, write_adapter, tokenizer, target: Path) -> None:
    """Rank 0 writes the adapter (every rank holds the same one under DDP). Under FSDP and ZeRO-3 the weights
    are split among the processes: the Trainer's own save gathers them (every rank takes part) and writes on
    rank 0, so the method's writer is not used there (the methods that need their own are refused with
    those strategies, see each method's strategy_problems)."""
    from core.runtime import distributed
    from core.runtime.layout import sharded

    main = distributed.is_main_process()
    if sharded(spec):
        save_adapter(lambda folder: trainer.save_model(str(folder)), tokenizer, target, main=main)
    elif main:
        save_adapter(write_adapter, tokenizer, target)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m core.training.trainer RUN_FOLDER/job.yaml", file=sys.stderr)
        return 2
    from core.runtime import distributed

    run = RunFolder(Path(argv[0]).resolve().parent)
    # In a group the launcher (core/training/group.py) writes the run's state; its ranks only train.
    group = distributed.in_group()
    distributed.end_with_launcher()
    try:
        if not group:
            run.write_status(state="running", pid=os.getpid(), started_at=time.time(), error=None)
        final = train(run)
    except BaseException as err:  # report every failure, KeyboardInterrupt included, then re-raise nothing
        # Imported only here: guards imports transformers, which imports PEFT and with it bitsandbytes, before
        # train() has told this process to leave bitsandbytes out (core/training/process.py).
        from core.training.guards import report_failure

        if not group:
            return report_failure(run, err)  # its kind and message; also on a full disk (DiskFull)
        traceback.print_exc()
        distributed.record_failure(err)  # the launcher names this rank and its error
        return 1
    if not group:
        run.write_status(state=final, ended_at=time.time())
    if distributed.is_main_process():
        print(f"[workbench] {final}: adapter saved to {run.adapter_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
