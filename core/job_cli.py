"""How a command starts a background job (export, evaluation) and follows it in a terminal: refusals printed
naming the flag, a progress bar from the job's status, Ctrl-C as Cancel, a failure with the log's tail."""
from __future__ import annotations

import sys


def start_job(start, positional: tuple[str, ...]):
    """(job, 0) from `start()`, or (None, exit code) after printing why nothing started. An option error
    (OptionsError, or a ValueError with `option` and `message`) is named by its flag."""
    from core.option_flags import flag_name
    from core.options import OptionsError
    from core.runs.launch import LaunchError

    try:
        return start(), 0
    except OptionsError as err:
        print("error: " + "\n       ".join(f"{name}: {message}" for name, message in err.problems), file=sys.stderr)
        return None, 2
    except ValueError as err:  # the option at fault when one is named; else e.g. RunNotReady. Nothing started
        option = getattr(err, "option", None)
        where = flag_name(option) if option and option not in positional else option
        print(f"error: {where}: {err.message}" if where else f"error: {err}", file=sys.stderr)
        return None, 2
    except LaunchError as err:  # the process could not start; the job folder says failed
        print(f"error: {err}", file=sys.stderr)
        return None, 1


def follow(job, what: str) -> dict | None:
    """Wait for `job` with a progress bar; its final status when it completed, else None after printing why."""
    from tqdm import tqdm

    bar = tqdm(total=100, file=sys.stderr, bar_format="{percentage:3.0f}%|{bar}| {desc}")

    def tick(status):
        # Redraw only when something moves, so a log of this output stays short.
        n, stage = int(100 * (status.get("progress") or 0)), status.get("stage") or ""
        if (n, stage) != (bar.n, bar.desc):
            bar.n = n
            bar.set_description_str(stage)

    try:
        status = job.wait(on_tick=tick)
    except KeyboardInterrupt:
        print("\ncancelling...", file=sys.stderr)
        job.cancel()
        status = job.wait()
    bar.close()
    if status["state"] != "completed":
        error = status.get("error") or {}
        print(f"error: the {what} ended {status['state']}: {error.get('kind', '')} {error.get('message', '')}\n"
              f"--- end of {job.log_file} ---\n{job.log_tail()}", file=sys.stderr)
        return None
    return status
