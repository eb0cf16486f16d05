"""The warm host: `python -m core.runs.warm_host FOLDER KEY`, a process that has imported torch,
transformers, TRL and PEFT once and forks a run's supervisor on request (the launcher's side, and why,
is core/runs/warm_start.py).

It serves one key (interpreter, project code, library versions, environment) on the socket FOLDER/KEY.sock,
holding FOLDER/KEY.lock for its whole life, so a second host for the same key exits at once. It exits after
IDLE_S without a request.

Forking from a process that has loaded these libraries is safe only while nothing in it has started
worker threads that the child would need: the host never computes with torch (its OpenMP pool and CUDA
stay unstarted) and serves one request at a time on one thread. Each child starts its own session, its
output goes to the log it was given, and it runs its module as `python -m` would, with the launcher's
environment. The host ignores SIGCHLD, so the kernel reaps its children; a child puts the default back
before it starts anything it waits for.
"""
from __future__ import annotations

import fcntl
import importlib
import json
import logging
import os
import runpy
import select
import signal
import socket
import struct
import sys
import time
import traceback
import warnings
from pathlib import Path

IDLE_S = 900.0  # a host nobody asked for this long goes away (a run usually starts within minutes of the last)
REQUEST_LIMIT = 1 << 20
REQUEST_TIMEOUT_S = 10.0
# The supervisor forks the trainer itself when the job allows (supervisor.py); exports and evaluations of a
# run work on the CPU and are forked when their run needs no bitsandbytes (warm_start.start_worker).
SERVED_MODULES = ("core.runs.supervisor", "core.export.worker", "core.eval.worker")
# What a trainer imports, in the order it imports it. bitsandbytes is left out first (see
# core/training/process.py), so trainers of quantised jobs are started the cold way by their supervisor.
PRELOAD = ("torch", "transformers", "transformers.modeling_utils", "peft", "datasets", "accelerate", "trl",
           "core.training.trainer", "core.methods", "core.models.loading", "core.runtime.telemetry",
           "core.training.callback", "core.training.guards", "core.training.lean_trainer", "core.training.levers")

# True in a process forked by a host (a supervisor, and its trainer): the libraries above are loaded.
in_warm_fork = False


def socket_path(folder: Path, key: str) -> Path:
    return folder / f"{key}.sock"


def lock_path(folder: Path, key: str) -> Path:
    return folder / f"{key}.lock"


def run_module_here(module: str, args: list[str]) -> None:
    """In a freshly forked child: run `module` as `python -m module args` would, then exit with its code.
    Never returns (a child that fell back into its parent's code would serve requests or supervise a run
    that is not its own)."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv = [module, *args]
        with warnings.catch_warnings():
            # runpy notes that the module is loaded already (the host preloads the trainer): that is the point.
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as done:  # sys.exit(N), sys.exit() or sys.exit("message"), as the interpreter reads them
        if done.code is None or isinstance(done.code, int):
            code = done.code or 0
        else:
            print(done.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
    finally:
        # os._exit skips atexit and Python's own shutdown: those belong to the host this was forked from. Of
        # what they would do for this child, logging's handlers still need their buffers written.
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed or broken log: nothing more to say anywhere
                pass
        os._exit(code)


def fork(child) -> int:
    """Fork; the child calls `child()`, which never returns. Returns the child's pid."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or both processes would write what was buffered
    pid = os.fork()
    if pid == 0:
        child()
    return pid


def fork_module(module: str, args: list[str]) -> int:
    """Fork a child that runs `module` (see run_module_here); returns its pid."""
    return fork(lambda: run_module_here(module, args))


def become_worker(request: dict, keep_out: list[int]) -> None:
    """In the child the host forked for `request`: leave the host's session, descriptors and environment,
    and run the requested module. Never returns."""
    global in_warm_fork
    try:
        for fd in keep_out:
            os.close(fd)
        os.setsid()  # its own session and process group, as a detached launch gives (core/runs/launch.py)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        in_warm_fork = True
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    run_module_here(request["module"], request["args"])


def read_request(conn: socket.socket) -> dict:
    """One JSON line from a process of this user; raises ValueError naming what is wrong."""
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if uid != os.getuid():
        raise ValueError(f"a process of another user (uid {uid}, pid {pid}) asked")
    conn.settimeout(REQUEST_TIMEOUT_S)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("the request ended before its newline")
        data += chunk
        if len(data) > REQUEST_LIMIT:
            raise ValueError("the request is too long")
    request = json.loads(data)
    if not isinstance(request, dict) or request.get("module") not in SERVED_MODULES:
        raise ValueError(f"only {', '.join(SERVED_MODULES)} are started here")
    fields = {"args": list, "log": str, "env": dict, "cwd": str}
    for name, kind in fields.items():
        if not isinstance(request.get(name), kind):
            raise ValueError(f"{name} is missing or is not a {kind.__name__}")
    if not all(isinstance(a, str) for a in request["args"]) or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in request["env"].items()):
        raise ValueError("args and env must hold strings only")
    if not Path(request["log"]).is_absolute() or not Path(request["cwd"]).is_dir():
        raise ValueError("log must be an absolute path and cwd a folder")
    return request


def handle(conn: socket.socket, keep_out: list[int]) -> None:
    try:
        request = read_request(conn)
    except (ValueError, OSError) as err:
        print(f"[warm host] refused a request: {err}", flush=True)
        conn.sendall(json.dumps({"error": str(err)}).encode() + b"\n")
        return
    pid = fork(lambda: become_worker(request, keep_out + [conn.fileno()]))
    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    print(f"[warm host] {time.strftime('%H:%M:%S')} started {request['module']} {' '.join(request['args'])}: "
          f"pid {pid}", flush=True)


def serve(folder: Path, key: str, idle_s: float = IDLE_S) -> int:
    lock = os.open(lock_path(folder, key), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("[warm host] another host serves this key; leaving", flush=True)
        return 0
    os.ftruncate(lock, 0)
    os.write(lock, str(os.getpid()).encode())  # for stop_hosts (core/runs/warm_start.py)
    began = time.monotonic()
    sys.modules["bitsandbytes"] = None  # see PRELOAD
    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel: no zombies
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through `finally`, which removes the socket
    path = socket_path(folder, key)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound under a temporary name and renamed: a launcher finds either no socket or one that answers.
    staging = folder / f"{key}.{os.getpid()}.tmp"
    staging.unlink(missing_ok=True)
    listener.bind(str(staging))
    os.chmod(staging, 0o600)
    listener.listen(16)
    os.replace(staging, path)
    inode = path.stat().st_ino
    print(f"[warm host] pid {os.getpid()} serving {path} after {time.monotonic() - began:.1f} s of imports",
          flush=True)
    try:
        while True:
            ready, _, _ = select.select([listener], [], [], idle_s)
            if not ready:
                print(f"[warm host] idle for {idle_s:g} s; leaving", flush=True)
                return 0
            conn, _ = listener.accept()
            with conn:
                handle(conn, [listener.fileno(), lock])
    finally:
        try:
            if path.stat().st_ino == inode:
                path.unlink()
        except OSError:
            pass


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m core.runs.warm_host FOLDER KEY [IDLE_S]", file=sys.stderr)
        return 2
    return serve(Path(argv[0]), argv[1], float(argv[2]) if len(argv) == 3 else IDLE_S)


if __name__ == "__main__":
    # Served by the imported module, not by this __main__ copy of it: the supervisor a request forks reads
    # in_warm_fork from core.runs.warm_host.
    from core.runs import warm_host

    sys.exit(warm_host.main(sys.argv[1:]))
