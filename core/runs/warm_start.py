"""Warm start: a run's processes forked from one that has already imported torch, transformers, TRL and PEFT.

A trainer spends most of its start importing those libraries: about 9 s of a tiny model's 10 s run on a
2-core AVX2 EPYC (training itself 0.8 s), and every run, resume and sweep member pays it again. A warm host
(core/runs/warm_host.py) imports them once; asked to start a run, it forks the run's supervisor, which forks
the trainer when the job allows (core/runs/supervisor.py), so both begin with the libraries loaded.

A host serves one key: the interpreter, the project's code, the libraries' files and the environment the
launcher would give a worker (less the variables that name where to work, which differ from run to run
and are read only when used). A host whose key differs from the launcher's would train with other code or
other settings, so it is never asked. The first launch with a new key launches the way it always did and
starts a host in the background; the launches after it are forked. A host leaves after idling a while.

Nothing depends on it: no host yet, a runtime folder that is not this user's alone, a host that does not
answer, all mean a normal launch. LORA_WORKBENCH_WARM_START=0 turns it off.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from core.paths import PROJECT_ROOT, WORKSPACE_ENV
from core.runs.job_folder import JobFolder
from core.runs.launch import LaunchError, launch, worker_env
from core.runs.warm_host import lock_path, socket_path

WARM_ENV = "LORA_WORKBENCH_WARM_START"
HOST_MODULE = "core.runs.warm_host"
REPLY_TIMEOUT_S = 30.0
SOCKET_PATH_LIMIT = 107
# Differ from launch to launch and are read when used, never when a library is imported. COLUMNS and LINES:
# a library imported by the commands sets them to the terminal's size.
PER_LAUNCH_ENV = frozenset({WORKSPACE_ENV, "PYTEST_CURRENT_TEST", "OLDPWD", "PWD", "_", "SHLVL", "COLUMNS", "LINES"})
# Libraries whose files the host has loaded: a reinstall gives a new key.
LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")


def enabled() -> bool:
    return os.environ.get(WARM_ENV, "1") != "0"


def runtime_folder() -> Path | None:
    """Where hosts keep their sockets: a folder only this user can enter, or None (then no warm start)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(base) / "lora-workbench" if base and os.path.isdir(base) else \
        Path(tempfile.gettempdir()) / f"lora-workbench-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return None
    # Another user could have made it first (in /tmp) and would then be able to answer as the host.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    # A socket's path has room for 107 bytes; the host's names take up to 40 after the folder.
    return folder if len(os.fsencode(folder)) + 41 <= SOCKET_PATH_LIMIT else None


def host_key(env: dict[str, str]) -> str:
    digest = hashlib.sha256()

    def add(*parts):
        digest.update(json.dumps(parts).encode())

    add(sys.executable, sys.version, str(PROJECT_ROOT))
    add(sorted((k, v) for k, v in env.items() if k not in PER_LAUNCH_ENV))
    for path in sorted((PROJECT_ROOT / "core").rglob("*.py")):
        info = path.stat()
        add(str(path), info.st_mtime_ns, info.st_size)
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec else None
        add(name, origin, os.stat(origin).st_mtime_ns if origin else None)
    return digest.hexdigest()[:24]


def start(module: str, args: list, log_file: Path, *, job: JobFolder) -> bool:
    """Ask the warm host for this environment to start `python -m module args` detached, output appended
    to `log_file`; True when it did (the job's status then has the pid, as launch() gives it).

    False, with nothing started, when warm start is off or no host answers (one is then started for the next
    launch). Raises LaunchError, the job marked failed, when a host took the request but gave no pid: it
    may have started the process, so launching again could start it twice."""
    folder = runtime_folder() if enabled() else None
    if folder is None:
        return False
    env = worker_env()
    key = host_key(env)
    request = {"module": module, "args": [str(a) for a in args], "log": str(Path(log_file).resolve()),
               "env": env, "cwd": str(PROJECT_ROOT)}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(REPLY_TIMEOUT_S)
        try:
            conn.connect(str(socket_path(folder, key)))
        except OSError:  # no host (or a dead one's socket): start one for next time
            start_host(folder, key, env)
            return False
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            conn.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(conn.makefile("rb").readline() or b"{}")
        except (OSError, ValueError) as err:
            job.mark_failed(err)
            raise LaunchError(f"the warm host took the request to start {module} but did not answer: {err}") \
                from err
    if not isinstance(reply.get("pid"), int):
        return False  # refused, and said why in its log: nothing was started
    job.write_status(pid=reply["pid"])  # merged under the status lock, as launch() does
    return True


def launch_detached(module: str, args: list, log_file: Path, *, job: JobFolder, warm: bool = True) -> None:
    """Launch a detached worker: forked from the warm host when `warm` and one answers, else started as
    always (core/runs/launch.py). Raises LaunchError, the job marked failed."""
    if not (warm and start(module, args, log_file, job=job)):
        launch(module, args, log_file, job=job)


def start_worker(module: str, args: list, log_file: Path, *, job: JobFolder, run_job: Path) -> None:
    """Launch a detached worker for a finished run whose job.yaml is `run_job` (an export, an evaluation),
    forked only when the run needs no bitsandbytes (the host left it out)."""
    launch_detached(module, args, log_file, job=job, warm=not job_needs_bitsandbytes(read_job(run_job)))


def read_job(job_file: Path) -> dict:
    """A job.yaml as plain data, or {} when it cannot be read (the worker reads it again and reports the fault).

    Plain YAML only: parsing the whole spec loads the method registry, and with it peft, transformers and
    torch, seconds of CPU in a process that only launches (measured: 4.7-17 s on a busy 2-core machine)."""
    import yaml

    try:
        job = yaml.safe_load(Path(job_file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return job if isinstance(job, dict) else {}


def section(job: dict, name: str) -> dict:
    value = job.get(name)
    return value if isinstance(value, dict) else {}


def job_needs_bitsandbytes(job: dict) -> bool:
    """core.training.process.needs_bitsandbytes for a job read as plain data (read_job)."""
    from core.training.process import needs_bitsandbytes

    return needs_bitsandbytes(str(section(job, "model").get("path", "")), str(job.get("method", "")))


def start_host(folder: Path, key: str, env: dict[str, str]) -> None:
    """Start the host for `key` in the background unless one holds its lock (it is starting or serving)."""
    lock = os.open(lock_path(folder, key), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    finally:
        os.close(lock)  # two launchers may both get here: the second host finds the lock held and leaves
    try:
        with open(folder / f"{key}.log", "ab") as log:
            subprocess.Popen([sys.executable, "-m", HOST_MODULE, str(folder), key], cwd=PROJECT_ROOT, env=env,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError:
        pass  # no host then; every launch stays a normal one


def stop_hosts() -> int:
    """End every warm host of this user (the test suite ends its own when it finishes); returns how many.
    A host writes its pid into the lock it holds, so a lock that is held names a live host."""
    folder = runtime_folder()
    ended = 0
    for lock in folder.glob("*.lock") if folder else []:
        with open(lock, "r+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                continue  # nobody holds it: no host
            except BlockingIOError:
                pid = handle.read().strip()
        if pid.isdigit():
            try:
                os.kill(int(pid), signal.SIGTERM)
                ended += 1
            except OSError:
                pass
    return ended
