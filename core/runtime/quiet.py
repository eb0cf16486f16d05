"""Keep third-party warnings off the terminal and in a log file. Each entry point calls this once.

Libraries report in two ways: Python warnings (torch, peft, ...) and logging records (bitsandbytes'
"Failed to load CPU gemm_4bit_forward ... pip install kernels" at import, for one). A handler on the
root logger takes both: with it in place, Python's last-resort handler no longer prints records that
nobody handles, and warnings are turned into records. transformers, datasets and huggingface_hub
attach their own stderr handler when they are imported; they are told to hand their records to the
root instead, right after that import, so a command that never loads them does not pay for it.

Worker processes (trainer, export, chat) need none of this: their whole stderr already is their log file.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
from pathlib import Path

# The modules that give a library its own stderr handler, run right after they are imported.
OWN_HANDLER_MODULES = ("transformers.utils.logging", "datasets.utils.logging", "huggingface_hub.utils.logging")


class _FileMadeOnFirstRecord(logging.FileHandler):
    """A log file (and its folder) that exists only once something was written to it."""

    def __init__(self, path: Path):
        super().__init__(path, encoding="utf-8", delay=True)
        self.failed = False

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def handleError(self, record):
        # The log cannot be written (a full disk, most likely): say so once, in one line, and drop library
        # warnings from then on, instead of a traceback on the terminal for every record.
        if not self.failed:
            self.failed = True
            err = sys.exc_info()[1]
            print(f"warning: library warnings cannot be written to {self.baseFilename}: {err}; they are dropped",
                  file=sys.stderr)

    def emit(self, record):
        if self.failed:
            return
        try:
            super().emit(record)  # opening the file (on the first record) is outside the base class's guard
        except OSError:
            self.handleError(record)


def _hand_records_to_root(module) -> None:
    library = logging.getLogger(module.__name__.split(".")[0])
    if hasattr(module, "disable_default_handler"):  # transformers adds its handler lazily; this adds, then drops it
        module.disable_default_handler()
    for handler in list(library.handlers):
        if type(handler) is logging.StreamHandler:
            library.removeHandler(handler)
    library.propagate = True


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds the named modules as usual, and runs `callback(module)` once each has been executed."""

    def __init__(self, names, callback):
        self.names, self.callback = set(names), callback

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            self.callback(module)

        spec.loader.exec_module = exec_module
        return spec


def keep_library_output_in(log_file: Path) -> None:
    """From now on, warnings and log records of any library go to `log_file`, not to the terminal."""
    handler = _FileMadeOnFirstRecord(Path(log_file))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _FileMadeOnFirstRecord)] + [handler]
    logging.captureWarnings(True)
    for name in OWN_HANDLER_MODULES:
        if name in sys.modules:
            _hand_records_to_root(sys.modules[name])
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(OWN_HANDLER_MODULES, _hand_records_to_root))
