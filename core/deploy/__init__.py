"""Running a job somewhere else than this machine: Kubernetes manifests (k8s.py)."""
