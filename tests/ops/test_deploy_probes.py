"""The k8s manifests keep ingest in service through a PostgreSQL outage, restart a worker
only when its own heartbeat stops, migrate before the rollout, and drain workers one at a
time (issue 22, defect 5). Statically, against the real parser and routes."""

from __future__ import annotations

import pytest

from hookline.cli import build_parser
from tests.ops.deploy_support import by_kind_name, hookline_args, pod_spec


def _container(name: str) -> dict:
    return by_kind_name("Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def test_ingest_readiness_checks_only_what_callbacks_need(rt):
    from ingest.app import create_app

    path = _container("hookline-ingest")["readinessProbe"]["httpGet"]["path"]
    doc = create_app(rt=rt, send_drain=lambda: None).test_client().get(path).get_json()
    assert doc["checks"] == {"redis": "ok"}, f"{path} must not check PostgreSQL"


def test_worker_liveness_is_the_heartbeat_not_a_broker_ping():
    probe = _container("hookline-worker")["livenessProbe"]
    argv = probe["exec"]["command"]
    assert "inspect" not in argv and "ping" not in argv
    args = hookline_args(argv)
    assert args[0] == "worker-alive"
    parsed = build_parser().parse_args(args)
    # Several probes pass between two beats, and a broker reconnect sleep (30 s) fits.
    assert parsed.max_age >= 60
    assert probe["periodSeconds"] * probe["failureThreshold"] >= parsed.max_age / 2


@pytest.mark.parametrize("name", ["hookline-worker", "hookline-scheduler"])
def test_new_pods_wait_for_the_migrate_job(name):
    spec = pod_spec(by_kind_name("Deployment", name))
    [init] = spec["initContainers"]
    args = build_parser().parse_args(hookline_args(["hookline", *init["args"]]))
    assert args.command == "migrate" and args.wait


def test_ingest_starts_without_waiting_for_postgresql():
    assert "initContainers" not in pod_spec(by_kind_name("Deployment", "hookline-ingest"))


def test_the_migrate_job_is_a_pre_rollout_hook():
    notes = by_kind_name("Job", "hookline-migrate")["metadata"]["annotations"]
    assert "pre-upgrade" in notes["helm.sh/hook"] and notes["argocd.argoproj.io/hook"] == "PreSync"


def test_workers_have_a_disruption_budget():
    pdb = by_kind_name("PodDisruptionBudget", "hookline-worker")
    worker = by_kind_name("Deployment", "hookline-worker")
    assert pdb["spec"]["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1
