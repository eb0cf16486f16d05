"""Sweeps: one job run over a grid of settings, each combination a queued run, with a results table.

    grid.py        grid lines (`lora.r=4,8,16`), ties (`lora.alpha=2*lora.r`) and their expansion
    plan.py        every combination parsed and launch-checked before anything is queued
    store.py       a sweep as a file, `<workspace>/sweeps/<sweep_id>.json`, written whole
    results.py     the results table, read from the runs' own files
    evaluation.py  the one place a finished run's evaluation is requested and its result file read
    preset.py      sweep files (presets/sweeps/*.yaml): a job, a grid, ties and an eval dataset together
"""
