"""The sweep tests drive `app.py` in this process through the CLI tests' fixture."""
from tests.cli.test_runs_cli import cli  # noqa: F401 (a fixture: main() as app.py runs it, in this process)
