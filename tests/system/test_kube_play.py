"""deploy/kubernetes under `podman kube play` (issue 19's acceptance): the example overlay's
paper StatefulSet, as the pod its controller would create, runs the image built from this
repository with the simulated gateway; the probes report healthy, ib_async completes
reqCurrentTime through the port the relay Service targets, and a stop within the grace period
ends gracefully (IBC got PAUSE, exit 0), and the replacement pod logs in with the restart
token.

podman 4.3 (Debian 12) is not a kubelet. What it cannot do is translated here, one function
per difference, and docs/kubernetes.md lists the same differences:

- StatefulSet: not a kind podman plays; the test plays its pod template as the Pod
  `<name>-0` with the claim `<template>-<name>-0`, as the StatefulSet controller would.
- Secret volumes crash podman 4.3 (nil pointer in VolumeFromSecret): the Secret's files are
  a read-only hostPath with the same mount path and file modes.
- emptyDir is a disk volume in podman 4.3 whatever its medium: the Memory emptyDirs on /run,
  /run/lock and /tmp are left to podman's systemd mode, which mounts tmpfs there (asserted).
- hostUsers: false becomes --userns=auto in podman, and on this host (cgroup v1 hybrid,
  cgroupfs) systemd cannot get a cgroup inside a user namespace: --userns=host.
- Ports and probes: no network here but the pod's own (--network=none): no port mappings,
  probe ports resolved by name as the kubelet does. podman runs only the liveness probe (as a
  `curl -f` health check); the test sends the startup and readiness probes' requests itself.
- terminationGracePeriodSeconds is not podman's stop timeout (10 s): `podman pod stop -t`.
  podman runs no preStop hook: the first test's stop rests on the image's STOPSIGNAL alone,
  the second runs the hook itself and then sends SIGTERM, as a runtime without STOPSIGNAL would.

A stop is a system shutdown for ibgwd: IBC PAUSE keeps the Gateway's restart token on the
claim, and the first test's replacement pod (an upgrade) logs in with it, without 2FA.
- No Services: the client connects, inside the pod's network namespace, to the container
  port the relay Service's targetPort names.
- restartPolicy Never: podman would restart a container that halted in its pod (Always),
  where the kubelet does not for a pod being deleted.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from container_image import podman, remove_libpod_cgroups, wait_for
from harness.box import REPO

pytestmark = pytest.mark.system

EXAMPLE = REPO / "deploy" / "kubernetes" / "overlays" / "example"
ACCOUNT = "paper"  # the simulated gateway's default mode
SITE_IN_POD = "/opt/test-site-packages"
CREDENTIALS = {"tws_userid": "demo", "tws_password": "Kube-pw #1 'q'", "vnc_password": "vnc-K8s"}
SIGRTMIN_3 = 37

Obj = dict[str, Any]


def rendered() -> list[Obj]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found (kubectl kustomize renders deploy/kubernetes)")
    r = subprocess.run(
        [kubectl, "kustomize", str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def pod_from_statefulset(sts: Obj, suffix: str) -> tuple[Obj, Obj]:
    """The Pod and PVC the StatefulSet controller would make for ordinal 0 (names suffixed, so
    a test run never meets another's leftovers)."""
    pod_name = f"{sts['metadata']['name']}-0-{suffix}"
    template = copy.deepcopy(sts["spec"]["template"])
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    claim_name = f"{claim['metadata']['name']}-{pod_name}"
    template["spec"]["volumes"].append(
        {"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}}
    )
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name},
        "spec": claim["spec"],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, **template["metadata"]},
        "spec": template["spec"],
    }
    return pod, pvc


def secret_as_host_path(pod: Obj, directory: Path) -> None:
    for volume in pod["spec"]["volumes"]:
        if "secret" in volume:
            mode = volume.pop("secret").get("defaultMode", 0o644)
            for key, value in CREDENTIALS.items():
                (directory / key).write_text(value, encoding="utf-8")
                (directory / key).chmod(mode)
            volume["hostPath"] = {"path": str(directory), "type": "Directory"}


def memory_dirs_to_podmans_tmpfs(pod: Obj) -> set[str]:
    volumes = pod["spec"]["volumes"]
    memory = {v["name"] for v in volumes if v.get("emptyDir", {}).get("medium") == "Memory"}
    pod["spec"]["volumes"] = [v for v in volumes if v["name"] not in memory]
    (c,) = pod["spec"]["containers"]
    paths = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in memory}
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] not in memory]
    return paths


def resolve_ports(pod: Obj) -> dict[str, int]:
    (c,) = pod["spec"]["containers"]
    ports = {p["name"]: int(p["containerPort"]) for p in c.pop("ports")}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        get["port"] = ports.get(get["port"], get["port"])
    return ports


def no_restart_after_a_halt(pod: Obj) -> None:
    # The kubelet does not restart the container of a pod being deleted; podman restarts an
    # exited container whose pod says Always (the StatefulSet's only policy).
    pod["spec"]["restartPolicy"] = "Never"


def add_test_client_libraries(pod: Obj) -> None:
    site = Path(sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    pod["spec"]["volumes"].append(
        {"name": "test-site", "hostPath": {"path": str(site / "site-packages")}}
    )
    (c,) = pod["spec"]["containers"]
    c["volumeMounts"].append({"name": "test-site", "mountPath": SITE_IN_POD, "readOnly": True})


class PlayedPod:
    def __init__(self, pod: Obj, pvc: Obj, workdir: Path) -> None:
        self.workdir = workdir
        self.name = str(pod["metadata"]["name"])
        (c,) = pod["spec"]["containers"]
        self.container = f"{self.name}-{c['name']}"
        self.claim = str(pvc["metadata"]["name"])
        self.spec = pod

    def replay(self) -> None:
        """Remove the pod and play it again on the same claim (the StatefulSet's replacement)."""
        podman("pod", "rm", "-f", "-t", "0", self.name)
        kube = self.workdir / "kube-again.yaml"
        kube.write_text(yaml.safe_dump(self.spec), encoding="utf-8")
        podman("kube", "play", "--userns=host", "--network=none", str(kube), timeout=300)

    def exec(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        r = podman(
            "exec",
            self.container,
            "env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            *argv,
            check=check,
            timeout=timeout,
        )
        return r.stdout

    def http(self, probe: Obj) -> tuple[int, str]:
        """The probe's HTTP GET, sent from inside the pod as the kubelet sends it to the pod."""
        get = probe["httpGet"]
        r = podman(
            "exec",
            self.container,
            "curl",
            "-s",
            "--max-time",
            str(probe.get("timeoutSeconds", 1)),
            "-w",
            "\n%{http_code}",
            f"http://127.0.0.1:{get['port']}{get['path']}",
            check=False,
        )
        body, _, code = r.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body

    def volume_file(self, relative: str) -> str:
        mountpoint = podman("volume", "inspect", "-f", "{{.Mountpoint}}", self.claim).stdout
        path = Path(mountpoint.strip(), relative)
        return path.read_text(encoding="utf-8") if path.exists() else ""


@pytest.fixture
def played(image: str, tmp_path: Path) -> Iterator[PlayedPod]:
    objs = rendered()
    sts = find(objs, "StatefulSet", f"ibgwd-{ACCOUNT}")
    pod, pvc = pod_from_statefulset(sts, uuid.uuid4().hex[:8])
    (c,) = pod["spec"]["containers"]
    c["image"] = image
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secret_as_host_path(pod, credentials)
    assert memory_dirs_to_podmans_tmpfs(pod) == {"/run", "/run/lock", "/tmp"}
    resolve_ports(pod)
    no_restart_after_a_halt(pod)
    add_test_client_libraries(pod)
    kube = tmp_path / "kube.yaml"
    kube.write_text(yaml.safe_dump_all([pvc, pod]), encoding="utf-8")
    p = PlayedPod(pod, pvc, tmp_path)
    try:
        podman("kube", "play", "--userns=host", "--network=none", str(kube), timeout=300)
        yield p
    finally:
        podman("pod", "rm", "-f", "-t", "0", p.name, check=False)
        podman("volume", "rm", "-f", p.claim, check=False)
        remove_libpod_cgroups()


def test_statefulset_pod_runs_is_healthy_serves_the_relay_and_stops_gracefully(
    played: PlayedPod,
) -> None:
    objs = rendered()
    sts = find(objs, "StatefulSet", f"ibgwd-{ACCOUNT}")
    service = find(objs, "Service", f"ibgwd-{ACCOUNT}")
    (c,) = played.spec["spec"]["containers"]
    t0 = time.monotonic()

    # Startup probe: /livez answers once systemd booted and ibgwd's loop runs.
    wait_for(lambda: played.http(c["startupProbe"])[0] == 200, 180, "the startup probe")
    took_live = time.monotonic() - t0
    # Readiness probe: /readyz 200 once the gateway's API answered ibgwd's check.
    wait_for(lambda: played.http(c["readinessProbe"])[0] == 200, 180, "the readiness probe")
    took_ready = time.monotonic() - t0
    print(f"kube play: startup probe ok after {took_live:.1f} s, ready after {took_ready:.1f} s")
    code, body = played.http(c["readinessProbe"])
    assert (code, json.loads(body)) == (200, {"status": "ok", "gateways": {ACCOUNT: "ready"}})

    # Liveness probe: podman's health check made from it reports healthy.
    config = json.loads(podman("inspect", "-f", "{{json .Config}}", played.container).stdout)
    assert "http://localhost:9108/livez" in " ".join(config["Healthcheck"]["Test"])
    check = podman("healthcheck", "run", played.container, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    health = json.loads(podman("inspect", "-f", "{{json .State.Health}}", played.container).stdout)
    assert health["Status"] == "healthy", health

    # systemd's container interface as the manifest asks for it, and the settings on the claim.
    for path in ("/run", "/run/lock", "/tmp"):
        fstype = played.exec("findmnt", "-n", "-o", "FSTYPE", "-T", path).strip()
        assert fstype == "tmpfs", (path, fstype)
    env = {e["name"]: e["value"] for e in c["env"]}
    assert played.exec("cat", env["TWS_USERID_FILE"]) == CREDENTIALS["tws_userid"]
    # The Gateway's settings directory is the claim's volume: the simulator's files are there.
    assert "event=login_completed" in played.volume_file("sim-events.log")
    assert "jts.ini" in played.exec("ls", env["TWS_SETTINGS_PATH"]).split()

    # A client through the relay: the container port the Service's targetPort names.
    (api,) = [p for p in service["spec"]["ports"] if p["name"] == "api"]
    port = next(
        p["containerPort"]
        for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]
        if p["name"] == api["targetPort"]
    )
    client = played.exec(
        f"PYTHONPATH={SITE_IN_POD}",
        "python3",
        "-c",
        "import sys\nfrom ib_async import IB\nib = IB()\n"
        "ib.connect('127.0.0.1', int(sys.argv[1]), clientId=23, timeout=20)\n"
        "print('server_time', ib.reqCurrentTime().isoformat())\nib.disconnect()\n",
        str(port),
        timeout=90,
    )
    assert "server_time 20" in client, client

    # `kubectl logs` shows the journal: here `podman logs`, the same stream.
    logs = podman("logs", played.container).stdout
    assert "IBC: Login has completed" in logs and "event=ready" in logs
    assert CREDENTIALS["tws_password"] not in logs

    # Stop as the kubelet does: the image's stop signal, the pod's grace period.
    assert config["StopSignal"] == SIGRTMIN_3
    grace = int(sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    t_stop = time.monotonic()
    podman("pod", "stop", "-t", str(grace), played.name, timeout=grace + 60)
    took_stop = time.monotonic() - t_stop
    print(f"kube play: pod stopped in {took_stop:.1f} s (grace period {grace} s)")
    state = json.loads(podman("inspect", "-f", "{{json .State}}", played.container).stdout)
    assert state["ExitCode"] == 0, state  # 137 would mean SIGKILL at the end of the grace period
    # A pod stop is a system shutdown for ibgwd: IBC PAUSE, the restart token on the claim.
    events = played.volume_file("sim-events.log")
    assert "event=command command=PAUSE" in events and "event=autorestart_written" in events

    # An upgrade: the old pod is gone, the StatefulSet makes a new one on the same claim. It
    # logs in with the restart token: no full login, no 2FA.
    before = len(events.splitlines())
    played.replay()
    wait_for(lambda: played.http(c["readinessProbe"])[0] == 200, 180, "the new pod's readiness")
    after = played.volume_file("sim-events.log").splitlines()[before:]
    assert any("event=autorestart_consumed" in line for line in after), after


def test_prestop_hook_stops_the_gateway_gracefully_even_before_a_sigterm(
    played: PlayedPod,
) -> None:
    # podman runs no preStop hook: the test runs it as the kubelet would (exec, then the stop
    # signal). A runtime that sends SIGTERM instead of the image's STOPSIGNAL only makes systemd
    # re-execute; the Gateway must already have been paused through IBC by then.
    (c,) = played.spec["spec"]["containers"]
    wait_for(lambda: played.http(c["readinessProbe"])[0] == 200, 180, "the readiness probe")
    hook = c["lifecycle"]["preStop"]["exec"]["command"]
    grace = int(played.spec["spec"]["terminationGracePeriodSeconds"])
    t0 = time.monotonic()
    # The hook returns once ibgwd is down; the halt may end the exec session first.
    played.exec(*hook, check=False, timeout=grace)
    events = played.volume_file("sim-events.log")
    assert "event=command command=PAUSE" in events and "event=autorestart_written" in events
    podman("kill", "-s", "TERM", played.container, check=False)  # what such a runtime sends

    def exited() -> bool:
        status = podman("inspect", "-f", "{{.State.Status}}", played.container).stdout
        return status.strip() in ("exited", "stopped")

    try:
        wait_for(exited, grace, "the container to halt")
    except AssertionError as e:
        logs = podman("logs", "--tail", "30", played.container, check=False).stdout
        raise AssertionError(f"{e}\n{logs}") from None
    print(f"kube play: preStop + SIGTERM: container ended after {time.monotonic() - t0:.1f} s")
    code = podman("inspect", "-f", "{{.State.ExitCode}}", played.container).stdout.strip()
    assert code == "0", code  # systemd halted by itself: nothing left for SIGKILL
