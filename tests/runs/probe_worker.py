"""A stand-in worker for the launcher tests (`python -m tests.runs.probe_worker ARGS`): it reports how it
was started on stdout, writes one line to stderr, then echoes its stdin line by line until it closes."""
import json
import os
import sys

print(json.dumps({"pid": os.getpid(), "sid": os.getsid(0), "cwd": os.getcwd(), "args": sys.argv[1:],
                  "unbuffered": os.environ.get("PYTHONUNBUFFERED"), "pythonpath": os.environ.get("PYTHONPATH")}))
print("probe: to stderr", file=sys.stderr)
for line in sys.stdin:
    sys.stdout.write(line)
