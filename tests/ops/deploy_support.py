"""Reading the deployment files: shared by tests/ops/test_deploy.py and
tests/ops/test_deploy_probes.py (a test module imports no other)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


def hookline_args(argv: list[str]) -> list[str]:
    """The arguments after the `hookline` executable in argv."""
    for i, word in enumerate(argv):
        if Path(word).name == "hookline":
            return argv[i + 1 :]
    raise AssertionError(f"not a hookline command line: {argv}")


def load_yaml_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_docs() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) for doc in load_yaml_docs(path)]


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if doc.get("kind") == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def by_kind_name(kind: str, name: str) -> dict:
    for _path, doc in k8s_docs():
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/k8s")
