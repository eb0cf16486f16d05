"""`app.py k8s` writes a Kubeflow PyTorchJob and the ConfigMap with its job; checked field by field."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from core.deploy.k8s import JOB_DIR, PORT, ManifestError, manifests, pod_command
from core.paths import PROJECT_ROOT
from core.spec import spec_from_dict
from tests.helpers import tiny_job


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The manifest app.py k8s writes for 3 nodes x 4 GPUs with a PVC, parsed: (config map, pytorch job, stderr)."""
    folder = tmp_path_factory.mktemp("k8s")
    job = folder / "my job.yaml"
    job.write_text(yaml.safe_dump(tiny_job("/models/tiny", train={"max_steps": 7})))
    out = folder / "manifest.yaml"
    result = subprocess.run([sys.executable, "app.py", "k8s", str(job), "--nodes", "3", "--gpus-per-node", "4",
                             "--image", "registry.example/workbench:1", "--pvc", "runs-pvc", "--namespace", "ml",
                             "--out", str(out), "--workspace", str(folder / "ws")],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    config_map, pytorch_job = yaml.safe_load_all(out.read_text())
    return config_map, pytorch_job, result.stderr


def test_config_map_carries_the_job_with_the_cluster_layout(written):
    config_map, _, _ = written
    assert (config_map["apiVersion"], config_map["kind"]) == ("v1", "ConfigMap")
    assert config_map["metadata"]["name"] == "my-job-job" and config_map["metadata"]["namespace"] == "ml"
    assert list(config_map["data"]) == ["job.yaml"]
    job = spec_from_dict(yaml.safe_load(config_map["data"]["job.yaml"]))  # a valid job, as every pod reads it
    assert job.train.max_steps == 7 and job.model.path == "/models/tiny"
    r = job.runtime
    assert (r.device, r.processes, r.nodes, r.strategy, r.node_rank, r.main_port) == ("cuda", 4, 3, "ddp", 0, PORT)


def test_pytorch_job_structure(written):
    _, pj, _ = written
    assert (pj["apiVersion"], pj["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert pj["metadata"]["name"] == "my-job" and pj["metadata"]["namespace"] == "ml"
    assert pj["metadata"]["labels"] == {"app.kubernetes.io/name": "lora-workbench", "app.kubernetes.io/instance": "my-job"}
    assert pj["spec"]["runPolicy"] == {"backoffLimit": 0, "cleanPodPolicy": "None"}
    replicas = pj["spec"]["pytorchReplicaSpecs"]
    assert list(replicas) == ["Master", "Worker"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)  # 3 nodes
    for role, workspace in (("Master", {"persistentVolumeClaim": {"claimName": "runs-pvc"}}),
                            ("Worker", {"emptyDir": {}})):
        spec = replicas[role]
        assert spec["restartPolicy"] == "Never"
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch"  # the operator's name for the training container
        assert container["image"] == "registry.example/workbench:1" and container["workingDir"] == "/workbench"
        assert container["ports"] == [{"name": "pytorchjob-port", "containerPort": PORT}]
        assert container["resources"] == {"limits": {"nvidia.com/gpu": 4}}
        assert container["volumeMounts"] == [{"name": "job", "mountPath": JOB_DIR, "readOnly": True},
                                             {"name": "workspace", "mountPath": "/workspace"},
                                             {"name": "shm", "mountPath": "/dev/shm"}]
        assert pod["volumes"] == [{"name": "job", "configMap": {"name": "my-job-job"}},
                                  {"name": "workspace", **workspace},  # the run folder lands on the PVC (master)
                                  {"name": "shm", "emptyDir": {"medium": "Memory"}}]
        assert container["command"][:2] == ["sh", "-c"]
        assert f"app.py train {JOB_DIR}/job.yaml --workspace /workspace" in container["command"][2]


@pytest.mark.parametrize("env,want", [
    ({"RANK": "2", "MASTER_ADDR": "my-job-master-0", "MASTER_PORT": "23456"}, ("2", "my-job-master-0", "23456")),
    ({"RANK": "5", "MASTER_ADDR": "x", "MASTER_PORT": "1", "PET_NODE_RANK": "1", "PET_MASTER_ADDR": "m",
      "PET_MASTER_PORT": "29500"}, ("1", "m", "29500")),  # torchrun-style variables win when the operator sets them
])
def test_pod_command_hands_the_operator_variables_to_the_job(env, want):
    """Run the pod's shell line with `python` replaced by echo: the --set values each pod would train with."""
    shell, flag, script = pod_command("/workspace")
    script = script.replace("exec python", "exec echo")
    out = subprocess.run([shell, flag, script], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                         text=True, check=True).stdout.split()
    sets = dict(out[i + 1].split("=", 1) for i, word in enumerate(out) if word == "--set")
    assert (sets["runtime.node_rank"], sets["runtime.main_address"], sets["runtime.main_port"]) == want


def test_one_node_has_no_workers_and_no_pvc_means_an_empty_dir(tiny_model_dir):
    spec = spec_from_dict(tiny_job(tiny_model_dir))
    _, pj = manifests(spec, nodes=1, gpus_per_node=1, image="img", name="Solo Run!")
    assert pj["metadata"]["name"] == "solo-run" and "namespace" not in pj["metadata"]
    assert list(pj["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    volumes = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["volumes"]
    assert volumes[1] == {"name": "workspace", "emptyDir": {}}


def test_bad_arguments_name_their_flag(tiny_model_dir):
    spec = spec_from_dict(tiny_job(tiny_model_dir))
    for kwargs, flag in [({"nodes": 0}, "--nodes"), ({"gpus_per_node": 0}, "--gpus-per-node"),
                         ({"image": " "}, "--image"), ({"name": "!!!"}, "--name")]:
        args = {"nodes": 2, "gpus_per_node": 2, "image": "img", "name": "job", **kwargs}
        with pytest.raises(ManifestError) as err:
            manifests(spec, **args)
        assert err.value.option == flag
