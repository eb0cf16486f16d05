"""A Kubeflow PyTorchJob (kubeflow.org/v1, the training operator) that trains a job on a Kubernetes cluster,
and the ConfigMap that carries the job.

Every pod runs the workbench's own entry point, `python app.py train JOB.yaml`, the same runner and group
launcher as on a workstation: one node per pod, `--gpus-per-node` processes each (ddp unless the job asks
for fsdp or deepspeed), with torchrun's static rendezvous at the master pod. The operator tells each pod
where the master is and which node it is (MASTER_ADDR, MASTER_PORT and RANK; newer operators also the
torchrun-style PET_MASTER_ADDR, PET_MASTER_PORT and PET_NODE_RANK, preferred when present); the command
hands them to the job as runtime.main_address, runtime.main_port and runtime.node_rank.

The master pod (node 0) keeps the run folder in its workspace, /workspace: a PersistentVolumeClaim when
--pvc names one, so status, metrics, train.log and the adapter outlive the pod; without one an emptyDir,
lost with the pod. Worker pods only train; their workspace is always an emptyDir (a volume that only one
pod can mount would stop them from starting, and the worker's folder holds no result).
"""
from __future__ import annotations

import copy
import re

import yaml

from core.spec import JobSpec, dump_spec, spec_from_dict

API_VERSION = "kubeflow.org/v1"
CONTAINER = "pytorch"            # the operator finds the training container by this name
PORT_NAME = "pytorchjob-port"    # and the rendezvous port by this one
PORT = 23456
JOB_DIR = "/etc/lora-workbench"  # where the ConfigMap's job.yaml is mounted
WORKSPACE = "/workspace"


class ManifestError(ValueError):
    """The manifest cannot be made from these arguments; `option` names the flag."""

    def __init__(self, option: str, message: str):
        self.option = option
        super().__init__(f"{option}: {message}")


def resource_name(text: str) -> str:
    """A DNS-1123 label (lowercase letters, digits, '-'; at most 40 here, to leave room for the
    operator's pod suffixes) from a free-form name."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40].strip("-")
    if not name:
        raise ManifestError("--name", f"{text!r} leaves no letters or digits for a Kubernetes name")
    return name


def cluster_spec(spec: JobSpec, nodes: int, gpus_per_node: int) -> JobSpec:
    """The job as every pod runs it: all the pod's GPUs, one process per GPU, `nodes` nodes, the master's
    port; node rank and main address are filled in by each pod at start."""
    data = spec.to_dict()
    runtime = data["runtime"]
    strategy = runtime["strategy"]
    if strategy == "single" and nodes * gpus_per_node > 1:
        strategy = "ddp"
    runtime.update(device="cuda", processes=gpus_per_node, nodes=nodes, node_rank=0, strategy=strategy,
                   main_port=PORT)
    return spec_from_dict(data)  # the job's own rules run again on the new layout (e.g. QLoRA under fsdp)


def pod_command(workspace: str) -> list[str]:
    """`app.py train` with this pod's node rank and the master's address and port from the operator."""
    script = (f"exec python app.py train {JOB_DIR}/job.yaml --workspace {workspace}"
              " --set runtime.node_rank=${PET_NODE_RANK:-${RANK:-0}}"
              " --set runtime.main_address=${PET_MASTER_ADDR:-$MASTER_ADDR}"
              " --set runtime.main_port=${PET_MASTER_PORT:-$MASTER_PORT}")
    return ["sh", "-c", script]


def pod_template(name: str, image: str, workdir: str, gpus: int, workspace_volume: dict) -> dict:
    container = {
        "name": CONTAINER,
        "image": image,
        "workingDir": workdir,
        "command": pod_command(WORKSPACE),
        "ports": [{"name": PORT_NAME, "containerPort": PORT}],
        "resources": {"limits": {"nvidia.com/gpu": gpus}},
        "volumeMounts": [
            {"name": "job", "mountPath": JOB_DIR, "readOnly": True},
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "shm", "mountPath": "/dev/shm"},  # NCCL and the data loader share memory through it
        ],
    }
    return {"spec": {"containers": [container], "volumes": [
        {"name": "job", "configMap": {"name": f"{name}-job"}},
        {"name": "workspace", **workspace_volume},
        {"name": "shm", "emptyDir": {"medium": "Memory"}},
    ]}}


def manifests(spec: JobSpec, *, nodes: int, gpus_per_node: int, image: str, name: str, pvc: str | None = None,
              namespace: str | None = None, workdir: str = "/workbench") -> list[dict]:
    """[ConfigMap, PyTorchJob] for `spec` on `nodes` pods of `gpus_per_node` GPUs each."""
    if nodes < 1:
        raise ManifestError("--nodes", f"{nodes} is below the minimum 1")
    if gpus_per_node < 1:
        raise ManifestError("--gpus-per-node", f"{gpus_per_node} is below the minimum 1")
    if not image.strip():
        raise ManifestError("--image", "give the container image that holds the workbench and its Python packages")
    job = cluster_spec(spec, nodes, gpus_per_node)
    name = resource_name(name)
    meta = {"name": name, **({"namespace": namespace} if namespace else {}),
            "labels": {"app.kubernetes.io/name": "lora-workbench", "app.kubernetes.io/instance": name}}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {**copy.deepcopy(meta), "name": f"{name}-job"},
                  "data": {"job.yaml": dump_spec(job)}}
    kept = {"persistentVolumeClaim": {"claimName": pvc}} if pvc else {"emptyDir": {}}
    replicas = {"Master": {"replicas": 1, "restartPolicy": "Never",
                           "template": pod_template(name, image, workdir, gpus_per_node, kept)}}
    if nodes > 1:
        replicas["Worker"] = {"replicas": nodes - 1, "restartPolicy": "Never",
                              "template": pod_template(name, image, workdir, gpus_per_node, {"emptyDir": {}})}
    pytorch_job = {"apiVersion": API_VERSION, "kind": "PyTorchJob", "metadata": meta,
                   "spec": {"runPolicy": {"backoffLimit": 0, "cleanPodPolicy": "None"},
                            "pytorchReplicaSpecs": replicas}}
    return [config_map, pytorch_job]


class _Dumper(yaml.SafeDumper):
    """Writes text of several lines (the job in the ConfigMap) as a literal block, so it reads as YAML."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def manifest_text(documents: list[dict]) -> str:
    return "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, allow_unicode=True) for d in documents)
