"""The deployment files agree with the code: every command is a real `hookline` command line,
every metric an alert or panel reads is one the code exports, every variable has an example."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.deploy_support import (
    K8S,
    ROOT,
    by_kind_name,
    hookline_args,
    k8s_docs,
    pod_spec,
)

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROCFILE = ROOT / "Procfile"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hookline-dashboard.json"
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"

# The metrics hookline exports (the names alerts and dashboards may use).
COUNTERS = {
    "hookline_ingest_requests_total",
    "hookline_ingest_enqueue_failures_total",
    "hookline_events_applied_total",
    "hookline_dead_letters_total",
    "hookline_deliveries_total",
}
GAUGES = {
    "hookline_inbox_depth",
    "hookline_active_leases",
    "hookline_oldest_lease_age_seconds",
    "hookline_endpoints_failing",
    "hookline_partitions_ahead_seconds",
    "hookline_default_partition_rows",
    "hookline_held_delivery_oldest_seconds",
    "hookline_held_deliveries_stranded",
    "hookline_deliveries_pending",
    "hookline_deliveries_held",
    "hookline_oldest_due_delivery_age_seconds",
}
# Classic histograms: queried through their _bucket, _sum and _count series.
HISTOGRAMS = {
    "hookline_ingest_ack_seconds",
    "hookline_batch_size",
    "hookline_ack_to_commit_seconds",
    "hookline_delivery_seconds",
}
KNOWN_SERIES = (
    COUNTERS | GAUGES | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)

HOOKLINE_SERVICES = {"migrate", "ingest", "worker", "scheduler", "flower"}
COMPOSE_SERVICES = HOOKLINE_SERVICES | {"redis", "postgres", "lb"}
ONE_SHOT = {"migrate"}
PROCESS_TYPES = {"release", "web", "worker", "scheduler", "flower"}
RUNBOOK_ANCHORS = {
    "inbox-depth",
    "oldest-lease",
    "dead-letters",
    "failing-endpoints",
    "held-deliveries",
    "no-progress",
    "partitions",
    "fan-out-backlog",
}
CONTRACT_ENV = {
    "DATABASE_URL",
    "REDIS_URL",
    "HOOKLINE_API_TOKEN",
    "HOOKLINE_CALLBACK_TOKEN",
    "HOOKLINE_MAX_BODY_BYTES",
    "HOOKLINE_FLOWER_BASIC_AUTH",
    "HOOKLINE_LOG_FORMAT",
    "PROMETHEUS_MULTIPROC_DIR",
    "HOOKLINE_TRUSTED_PROXY_HOPS",
    "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS",
}


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    from hookline.cli import build_parser

    return build_parser()


@pytest.fixture(scope="module")
def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    pytest.fail("hookline.cli.build_parser() has no subcommands")


def check_command_line(
    parser: argparse.ArgumentParser, subcommands: set[str], args: list[str], where: str
) -> None:
    """args (after `hookline`) name a real subcommand and parse with the real parser."""
    assert args, f"{where}: `hookline` without a subcommand"
    assert args[0] in subcommands, (
        f"{where}: `hookline {args[0]}` is not a subcommand (have {sorted(subcommands)})"
    )
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{where}: `hookline {shlex.join(args)}` is rejected by the parser ({exc})")


_VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}|\$(\w+)")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Shell/compose style ${VAR}, ${VAR:-default}, ${VAR:?message} and $VAR."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        if name in env:
            return env[name]
        if m.group(2) == "-":
            return m.group(3)
        raise AssertionError(f"no value for ${name} in {text!r}")

    return _VAR.sub(sub, text)


def env_example() -> tuple[dict[str, str], set[str]]:
    """(active assignments, names only mentioned in commented-out assignments)."""
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if m := re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line):
            active[m.group(1)] = m.group(2)
        elif m := re.match(r"^#\s*([A-Z_][A-Z0-9_]*)=", line):
            commented.add(m.group(1))
    return active, commented


_PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, labels and keywords removed)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end() :].lstrip().startswith("(") or m.group(0) in _PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names


# --- self-check of the PromQL helper ---------------------------------------------------------


def test_metric_names_helper() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{source=~"$source"}[5m])))'
    ) == {"a_seconds_bucket"}
    assert metric_names("max(x) > 0 and (sum(rate(y_total[5m])) or vector(0)) == 0") == {
        "x",
        "y_total",
    }
    assert metric_names("sum(rate(z_total[$__rate_interval] offset 1h)) * 60 > 1e3") == {"z_total"}


# --- (a) docker-compose.yml -------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_argv(service: dict) -> list[str]:
    """The process a compose service runs: its entrypoint (the image's, hookline) + command."""
    entrypoint = service.get("entrypoint", ["hookline"])
    command = service.get("command", [])
    if isinstance(entrypoint, str):
        entrypoint = shlex.split(entrypoint)
    if isinstance(command, str):
        command = shlex.split(command)
    return [str(word) for word in [*entrypoint, *command]]


def test_compose_has_the_services(compose: dict) -> None:
    assert set(compose["services"]) >= COMPOSE_SERVICES


def test_compose_hookline_services_build_the_image(compose: dict) -> None:
    for name in HOOKLINE_SERVICES:
        service = compose["services"][name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
        env_file = service["env_file"]
        assert ".env" in ([env_file] if isinstance(env_file, str) else env_file), name


def test_compose_redis_is_durable(compose: dict) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    line = " ".join(words)
    assert "--appendonly yes" in line
    assert "--appendfsync everysec" in line
    assert "--maxmemory-policy noeviction" in line
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_compose_postgres_has_a_volume(compose: dict) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    named = {v.split(":", 1)[0] for v in postgres["volumes"]} | {
        v.split(":", 1)[0] for v in compose["services"]["redis"]["volumes"]
    }
    assert named <= set(compose["volumes"])


def test_compose_commands_are_hookline_subcommands(
    compose: dict, parser: argparse.ArgumentParser, subcommands: set[str]
) -> None:
    active, _ = env_example()
    for name in HOOKLINE_SERVICES:
        argv = [interpolate(word, active) for word in compose_argv(compose["services"][name])]
        check_command_line(parser, subcommands, hookline_args(argv), f"compose service {name}")


def test_compose_subcommand_per_service(compose: dict) -> None:
    for name in HOOKLINE_SERVICES:
        args = hookline_args(compose_argv(compose["services"][name]))
        assert args[0] == name, f"compose service {name} runs `hookline {args[0]}`"


def test_compose_long_running_services_have_healthchecks(compose: dict) -> None:
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            continue
        healthcheck = service.get("healthcheck")
        assert healthcheck and healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} disables its healthcheck"


def test_compose_everything_waits_for_migrate(compose: dict) -> None:
    assert compose["services"]["migrate"].get("restart") in ("no", None)
    for name in HOOKLINE_SERVICES - ONE_SHOT:
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name


def test_compose_worker_can_scale(compose: dict) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports"), "a host port stops `--scale worker=N`"


def test_compose_ingest_scales_behind_the_load_balancer(compose: dict) -> None:
    ingest, lb = compose["services"]["ingest"], compose["services"]["lb"]
    assert "container_name" not in ingest
    assert not ingest.get("ports"), "a host port on ingest stops `--scale ingest=N`"
    assert [str(p) for p in ingest["expose"]] == ["8000"]
    assert "--port" in ingest["command"]
    assert ingest["command"][ingest["command"].index("--port") + 1] == "8000"
    assert lb["image"].startswith("haproxy:")
    assert lb["ports"] == ["${HOOKLINE_INGEST_PORT:-8000}:8000"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in lb["volumes"]}
    assert mounts["./deploy/haproxy/haproxy.cfg"] == "/usr/local/etc/haproxy/haproxy.cfg"
    assert "/lb-healthz" in " ".join(lb["healthcheck"]["test"])


def test_compose_trusted_proxy_hops_match_the_load_balancer(compose: dict) -> None:
    active, _ = env_example()
    hops = interpolate(str(compose["services"]["ingest"]["environment"]
                           ["HOOKLINE_TRUSTED_PROXY_HOPS"]), active)
    proxies = [name for name, s in compose["services"].items()
               if str(s.get("image", "")).startswith(("haproxy:", "nginx:", "traefik:"))]
    assert int(hops) == len(proxies) == 1, (hops, proxies)
    # ... and that proxy is one hop: it appends the client's address and sets the scheme.
    cfg = HAPROXY_CFG.read_text()
    assert re.search(r"^\s+option forwardfor$", cfg, re.M)
    assert re.search(r"^\s+http-request set-header X-Forwarded-Proto ", cfg, re.M)


def haproxy_section(name: str) -> list[str]:
    """The directives of one section of deploy/haproxy/haproxy.cfg (comments dropped)."""
    lines, inside = [], False
    for line in HAPROXY_CFG.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            inside = line.strip() == name
        elif inside and line.strip() and not line.strip().startswith("#"):
            lines.append(" ".join(line.split()))
    assert lines, f"deploy/haproxy/haproxy.cfg has no section {name!r}"
    return lines


def test_haproxy_balances_over_every_ingest_replica_with_health_checks(compose: dict) -> None:
    backend = haproxy_section("backend ingest")
    [template] = [d for d in backend if d.startswith("server-template ")]
    _, _, count, target, *rest = template.split()
    assert target == "ingest:8000" and "ingest" in compose["services"]
    assert int(count) >= 3 and "resolvers docker" in " ".join(rest)
    assert "http-check send meth GET uri /healthz" in backend  # not /readyz: see the file
    assert "http-check expect status 200" in backend
    defaults = next(d for d in backend if d.startswith("default-server "))
    assert " check" in defaults and " fall " in defaults and " rise " in defaults
    assert "parse-resolv-conf" in haproxy_section("resolvers docker")
    assert "bind :8000" in haproxy_section("frontend callbacks")


def test_haproxy_sends_a_request_a_stopping_replica_met_to_another() -> None:
    defaults = haproxy_section("defaults")
    assert "option redispatch 1" in defaults
    retries = next(d for d in defaults if d.startswith("retries "))
    assert int(retries.split()[1]) >= 2
    retry_on = next(d for d in defaults if d.startswith("retry-on ")).split()[1:]
    assert {"conn-failure", "empty-response"} <= set(retry_on)
    # Never a retry after a timeout: the first copy may be queued already.
    assert not {"response-timeout", "all-retryable-errors"} & set(retry_on)
    frontend = " ".join(haproxy_section("frontend callbacks"))
    assert "set-status 503 if { status 502 } || { status 504 }" in frontend
    assert "set-header Retry-After" in frontend


@pytest.mark.skipif(not Path("/usr/sbin/haproxy").exists(), reason="no /usr/sbin/haproxy "
                    "(apt-get install haproxy, as .ci/run does)")
def test_haproxy_accepts_the_config() -> None:
    done = subprocess.run(["/usr/sbin/haproxy", "-c", "-f", str(HAPROXY_CFG)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_scheduler_is_single(compose: dict) -> None:
    scheduler = compose["services"]["scheduler"]
    assert "deploy" not in scheduler or scheduler["deploy"].get("replicas", 1) == 1


# --- (d) .env.example --------------------------------------------------------------------------


def test_env_example_names_every_compose_variable() -> None:
    text = COMPOSE.read_text()
    referenced = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    assert referenced, "docker-compose.yml references no ${VAR}"
    active, _ = env_example()
    missing = referenced - set(active)
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_mentions_every_contract_variable() -> None:
    active, commented = env_example()
    missing = CONTRACT_ENV - set(active) - commented
    assert not missing, f".env.example does not mention {sorted(missing)}"


def test_env_example_has_no_real_secrets() -> None:
    active, _ = env_example()
    for name, value in active.items():
        if any(word in name for word in ("PASSWORD", "TOKEN", "BASIC_AUTH")):
            assert "change-me" in value, f"{name} should hold a change-me placeholder"


# --- (b) Kubernetes manifests ------------------------------------------------------------------


def test_k8s_manifests_parse() -> None:
    docs = k8s_docs()
    assert docs
    for path, doc in docs:
        assert isinstance(doc, dict), path.name
        if path.name != "kustomization.yaml":
            assert doc.get("apiVersion") and doc.get("kind"), path.name
            assert doc["metadata"]["name"], path.name


def test_k8s_kinds_present() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _p, d in k8s_docs() if "metadata" in d}
    for expected in [
        ("Deployment", "hookline-ingest"),
        ("Service", "hookline-ingest"),
        ("HorizontalPodAutoscaler", "hookline-ingest"),
        ("Deployment", "hookline-worker"),
        ("Deployment", "hookline-scheduler"),
        ("Deployment", "hookline-flower"),
        ("Service", "hookline-flower"),
        ("ConfigMap", "hookline-config"),
        ("Secret", "hookline-secrets"),
        ("Job", "hookline-migrate"),
        ("ScaledObject", "hookline-worker"),
    ]:
        assert expected in kinds, expected


def test_k8s_commands_are_hookline_subcommands(
    parser: argparse.ArgumentParser, subcommands: set[str]
) -> None:
    checked = 0
    for path, doc in k8s_docs():
        spec = pod_spec(doc)
        if spec is None:
            continue
        for container in spec["containers"]:
            argv = [*container.get("command", ["hookline"]), *container.get("args", [])]
            where = f"{path.name} {doc['kind']}/{doc['metadata']['name']}"
            check_command_line(parser, subcommands, hookline_args(argv), where)
            checked += 1
    assert checked >= 5


def test_k8s_env_refers_to_known_config() -> None:
    configmaps = {d["metadata"]["name"] for _p, d in k8s_docs() if d.get("kind") == "ConfigMap"}
    secrets = {d["metadata"]["name"] for _p, d in k8s_docs() if d.get("kind") == "Secret"}
    for path, doc in k8s_docs():
        spec = pod_spec(doc)
        if spec is None:
            continue
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, path.name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, path.name


def test_k8s_ingest_probes_and_autoscaling() -> None:
    ingest = by_kind_name("Deployment", "hookline-ingest")
    container = ingest["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = by_kind_name("HorizontalPodAutoscaler", "hookline-ingest")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "hookline-ingest"
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in ingest["spec"], "the HPA owns the ingest replica count"
    service = by_kind_name("Service", "hookline-ingest")
    assert service["spec"]["selector"] == ingest["spec"]["selector"]["matchLabels"]


def test_k8s_worker_drains_before_stopping() -> None:
    worker = by_kind_name("Deployment", "hookline-worker")
    spec = worker["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= 60
    assert "hookline_inbox_depth" in K8S.joinpath("worker.yaml").read_text()
    ports = {p["containerPort"] for p in spec["containers"][0]["ports"]}
    assert 9101 in ports


def test_k8s_worker_keda_scales_on_the_inbox() -> None:
    scaled = by_kind_name("ScaledObject", "hookline-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "hookline-worker"
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == "hookline:inbox"


def test_k8s_scheduler_never_runs_twice() -> None:
    scheduler = by_kind_name("Deployment", "hookline-scheduler")
    assert scheduler["spec"]["replicas"] == 1
    assert scheduler["spec"]["strategy"]["type"] == "Recreate"


def test_k8s_flower_service_matches() -> None:
    flower = by_kind_name("Deployment", "hookline-flower")
    service = by_kind_name("Service", "hookline-flower")
    assert service["spec"]["selector"] == flower["spec"]["selector"]["matchLabels"]


def test_k8s_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    # Templates and optional CRD-based extras are applied by hand.
    assert "secret.example.yaml" not in kustomization["resources"]


def test_k8s_pods_run_as_non_root() -> None:
    for path, doc in k8s_docs():
        spec = pod_spec(doc)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True, path.name
        assert spec["securityContext"]["runAsUser"] != 0, path.name


# --- (c) Procfile -----------------------------------------------------------------------------


def procfile() -> dict[str, str]:
    entries = {}
    for line in PROCFILE.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line):
            entries[m.group(1)] = m.group(2)
    return entries


def test_procfile_process_types() -> None:
    assert set(procfile()) >= PROCESS_TYPES


def test_procfile_commands_are_hookline_subcommands(
    parser: argparse.ArgumentParser, subcommands: set[str]
) -> None:
    expected = {
        "release": "migrate",
        "web": "ingest",
        "worker": "worker",
        "scheduler": "scheduler",
        "flower": "flower",
    }
    for process, command in procfile().items():
        argv = shlex.split(interpolate(command, {"PORT": "5000"}))
        args = hookline_args(argv)
        check_command_line(parser, subcommands, args, f"Procfile {process}")
        if process in expected:
            assert args[0] == expected[process], process
    assert "$PORT" in procfile()["web"]


# --- (f) Dockerfile ---------------------------------------------------------------------------


def dockerfile_final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_dockerfile_entrypoint_and_cmd(
    parser: argparse.ArgumentParser, subcommands: set[str]
) -> None:
    stage = dict(dockerfile_final_stage())
    entrypoint = json.loads(stage["ENTRYPOINT"])
    cmd = json.loads(stage["CMD"])
    assert entrypoint == ["hookline"]
    check_command_line(parser, subcommands, cmd, "Dockerfile CMD")
    assert cmd[0] == "ingest"
    assert "8000" in stage["EXPOSE"].split()


def test_dockerfile_is_multi_stage_and_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    users = [rest for keyword, rest in dockerfile_final_stage() if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":", 1)[0]
    assert user not in ("root", "0")
    assert re.search(r"^FROM \S*python:3\.11-slim|^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)


# --- (e) Prometheus ---------------------------------------------------------------------------


def test_prometheus_scrapes_ingest_and_workers() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    ports = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for sd in job.get("dns_sd_configs", []):
            ports.add(int(sd["port"]))
        for static in job.get("static_configs", []):
            ports.update(int(target.rsplit(":", 1)[1]) for target in static["targets"])
    assert {8000, 9101} <= ports
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS.parent / rule_file).is_file(), rule_file


def alert_rules() -> list[dict]:
    config = yaml.safe_load(ALERTS.read_text())
    return [rule for group in config["groups"] for rule in group["rules"] if "alert" in rule]


def test_alerts_use_known_metrics() -> None:
    rules = alert_rules()
    assert rules
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric in {rule['expr']!r}"
        unknown = names - KNOWN_SERIES
        assert not unknown, f"{rule['alert']}: unknown metrics {sorted(unknown)}"


def test_alerts_have_runbooks() -> None:
    anchors = set()
    for rule in alert_rules():
        runbook = rule.get("annotations", {}).get("runbook", "")
        m = re.fullmatch(r"docs/operations\.md#([a-z0-9-]+)", runbook)
        assert m, f"{rule['alert']}: runbook {runbook!r}"
        assert m.group(1) in RUNBOOK_ANCHORS, f"{rule['alert']}: unknown anchor {m.group(1)}"
        anchors.add(m.group(1))
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
    assert anchors == RUNBOOK_ANCHORS


def test_alerts_cover_the_required_conditions() -> None:
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    assert "hookline_inbox_depth" in exprs
    assert "hookline_oldest_lease_age_seconds" in exprs
    assert "rate(hookline_dead_letters_total" in exprs
    assert "hookline_endpoints_failing" in exprs
    assert "hookline_held_deliveries_stranded" in exprs
    assert "hookline_held_delivery_oldest_seconds" in exprs
    assert "rate(hookline_events_applied_total" in exprs
    assert "hookline_oldest_due_delivery_age_seconds" in exprs
    assert "hookline_deliveries_pending" in exprs
    assert "hookline_deliveries_held" in exprs


# --- (g) Grafana --------------------------------------------------------------------------------


def dashboard_panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def test_dashboard_exprs_use_known_metrics() -> None:
    used = set()
    exprs = 0
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, f"panel {panel['title']!r}: no metric in {target['expr']!r}"
            unknown = names - KNOWN_SERIES
            assert not unknown, f"panel {panel['title']!r}: unknown metrics {sorted(unknown)}"
            used |= names
            exprs += 1
    assert exprs
    bases = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    missing = (COUNTERS | GAUGES | HISTOGRAMS) - bases
    assert not missing, f"no panel shows {sorted(missing)}"


def test_runbook_anchors_are_headings_in_operations_md() -> None:
    """Each alert's runbook anchor is a heading of docs/operations.md (GitHub's slugs)."""
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / "operations.md").read_text(), re.M)
    slugs = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    assert not RUNBOOK_ANCHORS - slugs, sorted(RUNBOOK_ANCHORS - slugs)


def test_dashboard_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        g = panel["gridPos"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_dashboard_ids_are_unique() -> None:
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids))
