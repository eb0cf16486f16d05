"""The commands that start a job's other nodes.

A job over several machines runs the same job on each, differing only in runtime.node_rank. The command
for node k writes the job (with node_rank k) to a file and trains it with `app.py train`, so the other
machine needs the project checked out, its model and data at the same paths, and nothing else: it goes
through the same runner and the same launcher, and keeps a run folder of its own (status and train.log
of its ranks; metrics and the adapter are the main node's).
"""
from __future__ import annotations

import copy

from core.spec import JobSpec, dump_spec


def node_spec(spec: JobSpec, node_rank: int) -> JobSpec:
    other = copy.deepcopy(spec)
    other.runtime.node_rank = node_rank
    return other


def node_command(spec: JobSpec, node_rank: int) -> str:
    """A shell snippet, run in the project folder of node `node_rank`, that starts its part of the job."""
    name = f"node{node_rank}-job.yaml"
    return (f"cat > {name} <<'EOF'\n{dump_spec(node_spec(spec, node_rank))}EOF\n"
            f".venv/bin/python app.py train {name}")


def node_commands(spec: JobSpec) -> list[str]:
    """One command per node other than the main one (node ranks 1 to nodes - 1)."""
    return [node_command(spec, rank) for rank in range(1, spec.runtime.nodes)]
