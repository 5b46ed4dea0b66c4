"""deploy/kubernetes: `kubectl kustomize` renders the base and the example overlay, every object
validates offline against the Kubernetes schemas (kubernetes-validate), and the properties
docs/kubernetes.md promises hold in what is rendered: one session per account, probes on
ibgwd and never on the Gateway API, systemd's container interface, credentials as *_FILE,
grace period above ibgwd's stop time, selectors that select what they should.

The Prometheus Operator kinds (ServiceMonitor, PrometheusRule) have no schema in
kubernetes-validate and none is vendored here: CUSTOM_KINDS lists them, and the tests below
check them instead (selectors, ports, the rules equal to docs/monitoring/alerts.yml, promtool).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
BASE = DEPLOY / "base"
EXAMPLE = DEPLOY / "overlays" / "example"
# Kubernetes versions the manifests are checked against: the first with user namespaces
# (hostUsers) on by default, and the newest kubernetes-validate knows.
VERSIONS = ("1.33.0", "1.37.0")
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
RELAY_PORTS = {"live": 4003, "paper": 4004}  # the image's RELAY_PORT_LIVE / RELAY_PORT_PAPER
MEMORY_DIRS = {"/run", "/run/lock", "/tmp"}

Obj = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found (kubectl kustomize renders deploy/kubernetes)")
    return found


def render(path: Path) -> list[Obj]:
    r = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return render(BASE)


@pytest.fixture(scope="module")
def example() -> list[Obj]:
    return render(EXAMPLE)


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def account(o: Obj) -> str:
    return str(o["metadata"]["labels"].get("app.kubernetes.io/instance", "default"))


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return True
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for e in selector.get("matchExpressions", []):
        assert e["operator"] == "In", e
        ok = ok and labels.get(e["key"]) in e["values"]
    return ok


def container(sts: Obj) -> Obj:
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    return dict(c)


def env(sts: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(sts)["env"]}


def test_base_and_example_render_the_expected_objects(base: list[Obj], example: list[Obj]) -> None:
    kinds = sorted(o["kind"] for o in base)
    assert kinds == [
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceMonitor",
        "StatefulSet",
    ]
    names = sorted((o["kind"], o["metadata"]["name"]) for o in example)
    per_account = {(k, f"ibgwd-{a}") for k in kinds for a in ("live", "paper")}
    assert set(names) == per_account | {("PrometheusRule", "ibgwd")}
    assert len(names) == len(set(names))
    assert {o["metadata"].get("namespace") for o in example} == {"trading"}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(
    base: list[Obj], example: list[Obj], version: str
) -> None:
    import kubernetes_validate

    checked = 0
    for o in [*base, *example]:
        if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(o, version, strict=True)  # raises on any error
        checked += 1
    assert checked == 4 + 8


def test_one_session_per_account(base: list[Obj], example: list[Obj]) -> None:
    for sts in of_kind([*base, *example], "StatefulSet"):
        spec = sts["spec"]
        assert spec["replicas"] == 1
        assert spec["podManagementPolicy"] == "OrderedReady"
        assert spec["updateStrategy"] == {"type": "OnDelete"}  # no surge, no surprise restart
    pdbs = of_kind(example, "PodDisruptionBudget")
    for pdb in pdbs:
        assert pdb["spec"]["maxUnavailable"] == 0


def test_probes_ask_ibgwd_and_never_the_gateway_api(base: list[Obj], example: list[Obj]) -> None:
    for sts in of_kind([*base, *example], "StatefulSet"):
        c = container(sts)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == 9108 == int(env(sts)["METRICS_ADDRESS"].rsplit(":", 1)[1])
        for probe, path in (
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ):
            assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
            assert c[probe]["timeoutSeconds"] >= 5  # /livez may wait 3 s for ibgwd's loop
        # Liveness gives systemd's own restart of ibgwd (WatchdogSec + RestartSec) time first.
        liveness = c["livenessProbe"]
        service = unit_service_section()
        watchdog = seconds(service["WatchdogSec"]) + seconds(service["RestartSec"])
        assert liveness["periodSeconds"] * liveness["failureThreshold"] > watchdog


def unit_service_section() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "systemd" / "ibgwd.service")
    return unit["Service"]


def seconds(value: str) -> int:
    value = value.strip()
    if value.endswith("min"):
        return int(value[:-3]) * 60
    return int(value.removesuffix("s"))


def test_grace_period_exceeds_ibgwds_stop_time_and_stop_is_graceful(example: list[Obj]) -> None:
    stop = seconds(unit_service_section()["TimeoutStopSec"])
    for sts in of_kind(example, "StatefulSet"):
        pod = sts["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > stop + 30  # + systemd's own shutdown
        assert env(sts)["SHUTDOWN_ACTION"] == "pause"  # the grace period allows a PAUSE
        pre_stop = container(sts)["lifecycle"]["preStop"]["exec"]["command"]
        # A system halt (IBC PAUSE: restart token kept), not `systemctl stop` (IBC STOP).
        assert pre_stop[:2] == ["sh", "-c"] and "systemctl --no-block halt;" in pre_stop[2]
        assert "systemctl show -P ActiveState ibgwd.service" in pre_stop[2]
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "\nSTOPSIGNAL SIGRTMIN+3\n" in dockerfile  # what containerd and CRI-O send
    assert "\nENV container=oci\n" in dockerfile  # systemd knows it is in a container


def test_systemds_container_interface(example: list[Obj]) -> None:
    for sts in of_kind(example, "StatefulSet"):
        pod = sts["spec"]["template"]["spec"]
        assert pod["hostUsers"] is False
        assert pod["enableServiceLinks"] is False  # no RELAY_PORT=tcp://... from Services
        assert pod["automountServiceAccountToken"] is False
        assert "privileged" not in str(pod)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container(sts)["volumeMounts"]}
        memory = {
            p
            for p, n in mounts.items()
            if volumes.get(n, {}).get("emptyDir", {}).get("medium") == "Memory"
        }
        assert memory == MEMORY_DIRS
        assert "container" not in env(sts)  # the image's ENV container=oci tells systemd
        annotations = sts["spec"]["template"]["metadata"]["annotations"]
        assert annotations["io.kubernetes.cri-o.cgroup2-mount-hierarchy-rw"] == "true"


def test_credentials_come_from_the_accounts_secret_as_files(example: list[Obj]) -> None:
    for sts in of_kind(example, "StatefulSet"):
        name = account(sts)
        pod = sts["spec"]["template"]["spec"]
        secret = next(v for v in pod["volumes"] if "secret" in v)
        assert secret["secret"]["secretName"] == f"ibgwd-credentials-{name}"
        mount = next(m for m in container(sts)["volumeMounts"] if m["name"] == secret["name"])
        assert mount["readOnly"] is True
        values = env(sts)
        files = {k: v for k, v in values.items() if k.endswith("_FILE")}
        assert set(files) == {"TWS_USERID_FILE", "TWS_PASSWORD_FILE", "VNC_SERVER_PASSWORD_FILE"}
        for path in files.values():
            assert path.startswith(mount["mountPath"] + "/")
        assert not {"TWS_PASSWORD", "VNC_SERVER_PASSWORD"} & set(values)  # never as values
        assert values["VNC_BIND_ADDRESS"] == "127.0.0.1"  # VNC only through port-forward


def test_settings_live_on_the_accounts_volume(example: list[Obj]) -> None:
    for sts in of_kind(example, "StatefulSet"):
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        mount = next(
            m for m in container(sts)["volumeMounts"] if m["name"] == claim["metadata"]["name"]
        )
        assert mount["mountPath"] == env(sts)["TWS_SETTINGS_PATH"]
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain",
            "whenScaled": "Retain",
        }


def test_each_accounts_service_reaches_its_relay_and_only_its_pod(example: list[Obj]) -> None:
    pods = {
        account(s): s["spec"]["template"]["metadata"]["labels"]
        for s in of_kind(example, "StatefulSet")
    }
    assert set(pods) == {"live", "paper"}
    for sts in of_kind(example, "StatefulSet"):
        name = account(sts)
        assert env(sts)["TRADING_MODE"] == name
        assert selects(sts["spec"]["selector"], pods[name])
        api = next(p for p in container(sts)["ports"] if p["name"] == "api")
        assert api["containerPort"] == RELAY_PORTS[name]
        assert sts["spec"]["serviceName"] == f"ibgwd-{name}"
    for svc in of_kind(example, "Service"):
        name = account(svc)
        selected = {
            a
            for a, labels in pods.items()
            if selects({"matchLabels": svc["spec"]["selector"]}, labels)
        }
        assert selected == {name}
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
        assert ports == {"api": (RELAY_PORTS[name], "api"), "metrics": (9108, "metrics")}


def test_network_policy_admits_only_the_accounts_labelled_clients(example: list[Obj]) -> None:
    pods = {
        account(s): s["spec"]["template"]["metadata"]["labels"]
        for s in of_kind(example, "StatefulSet")
    }
    for policy in of_kind(example, "NetworkPolicy"):
        name = account(policy)
        targets = {
            a for a, labels in pods.items() if selects(policy["spec"]["podSelector"], labels)
        }
        assert targets == {name}
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        api, metrics = policy["spec"]["ingress"]
        assert api["ports"] == [{"port": "api"}]
        (client,) = api["from"]
        assert selects(client["podSelector"], {f"ibgwd.io/client-{name}": "true"})
        assert not selects(client["podSelector"], {"ibgwd.io/client-other": "true"})
        assert not selects(client["podSelector"], {})
        assert metrics["ports"] == [{"port": "metrics"}]
        assert "podSelector" not in metrics["from"][0]


def test_disruption_budget_covers_the_accounts_pod(example: list[Obj]) -> None:
    pods = {
        account(s): s["spec"]["template"]["metadata"]["labels"]
        for s in of_kind(example, "StatefulSet")
    }
    for pdb in of_kind(example, "PodDisruptionBudget"):
        selected = {a for a, labels in pods.items() if selects(pdb["spec"]["selector"], labels)}
        assert selected == {account(pdb)}


def test_service_monitor_scrapes_the_accounts_metrics_as_job_ibgwd(example: list[Obj]) -> None:
    services = {account(s): s for s in of_kind(example, "Service")}
    for monitor in of_kind(example, "ServiceMonitor"):
        selected = {
            a
            for a, s in services.items()
            if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
        }
        assert selected == {account(monitor)}
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
        assert {"targetLabel": "job", "replacement": "ibgwd"} in endpoint["relabelings"]


def test_prometheus_rule_carries_the_alert_rules_unchanged(
    example: list[Obj], tmp_path: Path
) -> None:
    (rule,) = of_kind(example, "PrometheusRule")
    alerts = yaml.safe_load(
        (REPO / "docs" / "monitoring" / "alerts.yml").read_text(encoding="utf-8")
    )
    assert rule["spec"]["groups"] == alerts["groups"]
    tool = DEPLOY / "tools" / "prometheusrule.py"
    r = subprocess.run(
        [sys.executable, str(tool), "--check"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    promtool = shutil.which("promtool")
    if promtool:  # scripts/setup.sh installs it with prometheus
        rules = tmp_path / "rules.yml"
        rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
        check = subprocess.run(
            [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
