# ibgwd: IB Gateway + IBC supervised by ibgwd under systemd (PID 1) in a container.
# A drop-in replacement for the gnzsnz/ib-gateway-docker image: same environment variables,
# same *_FILE secrets, same ports (4003/4004 API relays, 5900 VNC) plus metrics on 9108.
# How to build and run (Docker and podman flags systemd needs): docs/container.md.
#
#   scripts/build-deb.sh                                  # -> dist/ibgwd_<version>_all.deb
#   docker build -t ibgwd .                               # GATEWAY=download: IB's stable channel
#   docker build --build-arg GATEWAY=simulated -t ibgwd:sim .   # no IB account needed
#
# Build arguments:
#   BASE_IMAGE        Debian 12 (bookworm) or a derivative with apt
#   GATEWAY           download | local | simulated
#   GATEWAY_CHANNEL   stable | latest                 (download)
#   GATEWAY_VERSION   e.g. 10.37.1o; empty = the channel's current version (download)
#   GATEWAY_SHA256    pin the installer's sha256; empty = IB's published checksum (download)
#   IBC_VERSION       e.g. 3.23.0; empty = the latest IBC release (download)
#   IBC_SHA256        pin the IBC zip's sha256
#   GATEWAY_INSTALLER file name under image/local/ (local): ibgateway-*-linux-x64.sh
#   IBC_ZIP           file name under image/local/ (local): IBCLinux-<version>.zip
#   IBGWD_DEB_SHA256  sha256 of dist/ibgwd_*_all.deb: checked, and a new package is a new layer

ARG BASE_IMAGE=debian:bookworm
FROM ${BASE_IMAGE}

ARG GATEWAY=download
ARG GATEWAY_CHANNEL=stable
ARG GATEWAY_VERSION=
ARG GATEWAY_SHA256=
ARG IBC_VERSION=
ARG IBC_SHA256=
ARG GATEWAY_INSTALLER=
ARG IBC_ZIP=

ARG DEBIAN_FRONTEND=noninteractive

# Layer 1, cached unless GATEWAY changes: systemd, dbus and ibgwd's dependencies (the .deb's
# Depends: so the .deb layer below needs no apt-get update; it falls back to one if a Depends
# was added since), including the X libraries the real Gateway's JRE loads.
# curl: `podman kube play` turns an httpGet probe into `curl -f` run in the container.
# Versions are those of the base's Debian release: not pinned, security updates welcome
# (DL3008); $extra is a list of package names, split on purpose (SC2086).
# hadolint ignore=DL3008,SC2086
RUN case "$GATEWAY" in \
        simulated) extra="python3-tk python3-xlib x11-utils" ;; \
        download|local) extra="unzip xfonts-base" ;; \
        *) echo "GATEWAY='$GATEWAY': accepted: download, local, simulated" >&2; exit 78 ;; \
    esac \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        systemd systemd-sysv dbus procps tzdata \
        python3 python3-dasbus python3-gi python3-jinja2 python3-prometheus-client \
        python3-sdnotify python3-systemd xvfb x11vnc socat openssh-client curl \
        ca-certificates fontconfig libx11-6 libxext6 libxi6 libxrender1 libxtst6 nftables \
        $extra \
 && rm -rf /var/lib/apt/lists/* \
 && systemctl mask getty.target console-getty.service systemd-timesyncd.service \
        systemd-firstboot.service systemd-networkd-wait-online.service \
        sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount

# Layer 2: the package (the newest dist/ibgwd_*_all.deb), bind-mounted: not copied into a layer.
# IBGWD_DEB_SHA256 (optional) is checked against it and, unlike a bind-mounted file, is part of
# the layer's cache key: pass it so a rebuilt package of the same version is not served from a
# stale cached layer (--build-arg IBGWD_DEB_SHA256=$(sha256sum dist/ibgwd_*_all.deb | cut -c1-64)).
ARG IBGWD_DEB_SHA256=
# hadolint ignore=DL3008
RUN --mount=type=bind,source=dist,target=/tmp/dist \
    deb= ; best= ; \
    for d in /tmp/dist/ibgwd_*_all.deb; do \
        [ -e "$d" ] || continue; v=${d#/tmp/dist/ibgwd_}; v=${v%_all.deb}; \
        if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then deb=$d; best=$v; fi; \
    done \
 ; if [ -z "$deb" ]; then echo "no dist/ibgwd_*_all.deb: run scripts/build-deb.sh" >&2; exit 66; fi \
 && sum=$(sha256sum "$deb") \
 && if [ -n "$IBGWD_DEB_SHA256" ] && [ "${sum%% *}" != "$IBGWD_DEB_SHA256" ]; then \
        echo "IBGWD_DEB_SHA256 does not match $deb (${sum%% *})" >&2; exit 65; fi \
 && { apt-get install -y --no-install-recommends "$deb" \
      || { echo "the package depends on more than layer 1 installs: apt-get update" >&2; \
           apt-get update && apt-get install -y --no-install-recommends "$deb"; }; } \
 && rm -rf /var/lib/apt/lists/*

# Layer 3: IB Gateway + IBC at /opt/ibgwd, where ibgwd looks by default (ibgwd install-gateway).
RUN --mount=type=bind,source=image/local,target=/tmp/local \
    case "$GATEWAY" in \
      download) \
        ibgwd install-gateway --channel "$GATEWAY_CHANNEL" \
            ${GATEWAY_VERSION:+--version "$GATEWAY_VERSION"} \
            ${GATEWAY_SHA256:+--sha256 "$GATEWAY_SHA256"} \
            ${IBC_VERSION:+--ibc-version "$IBC_VERSION"} \
            ${IBC_SHA256:+--ibc-sha256 "$IBC_SHA256"} ;; \
      local) \
        ibgwd install-gateway --from "/tmp/local/${GATEWAY_INSTALLER:?GATEWAY=local needs GATEWAY_INSTALLER}" \
            --ibc-from "/tmp/local/${IBC_ZIP:?GATEWAY=local needs IBC_ZIP}" \
            ${GATEWAY_VERSION:+--version "$GATEWAY_VERSION"} \
            ${GATEWAY_SHA256:+--sha256 "$GATEWAY_SHA256"} \
            ${IBC_SHA256:+--ibc-sha256 "$IBC_SHA256"} ;; \
      simulated) \
        python3 -m ibgwd_sim install --prefix /opt/ibgwd-sim \
         && mkdir -p /opt/ibgwd/ibc /opt/ibgwd/ibgateway \
         && ln -s /opt/ibgwd-sim/ibc /opt/ibgwd/ibc/current \
         && ln -s "$(find /opt/ibgwd-sim/Jts/ibgateway -mindepth 1 -maxdepth 1 -type d)" \
                /opt/ibgwd/ibgateway/current ;; \
    esac

# Layer 4: the container glue (docs/container.md): PID 1's environment -> ibgwd.service, the
# journal copied to the container's log, the health check.
COPY image/container_env.py /usr/lib/ibgwd-container/import-env
COPY image/healthcheck.py /usr/lib/ibgwd-container/healthcheck
COPY image/init.sh /usr/local/sbin/init
COPY image/ibgwd-container-env.service /etc/systemd/system/
COPY image/ibgwd.service.d/container.conf /etc/systemd/system/ibgwd.service.d/
COPY image/ibgwd-container-log.service /etc/systemd/system/
RUN chmod 0755 /usr/lib/ibgwd-container/import-env /usr/lib/ibgwd-container/healthcheck \
        /usr/local/sbin/init \
 && systemctl enable ibgwd-container-env.service ibgwd-container-log.service ibgwd.service

# In a container the relays, VNC and metrics listen on every address; publish them on the
# host's loopback (compose.yaml) unless you mean to expose them.
ENV RELAY_BIND_ADDRESS=0.0.0.0 \
    VNC_BIND_ADDRESS=0.0.0.0 \
    METRICS_ADDRESS=0.0.0.0:9108 \
    RELAY_PORT_LIVE=4003 \
    RELAY_PORT_PAPER=4004
EXPOSE 4003 4004 5900 9108

# Healthy = ibgwd alive (/livez), not "API ready": engines and orchestrators that act on
# "unhealthy" (Swarm, autoheal) restart the container, and every restart is a full login with
# 2FA, while ibgwd recovers the Gateway itself. compose.yaml asks /readyz for depends_on.
# Kubernetes ignores HEALTHCHECK and uses the probes in deploy/kubernetes/. Needs the docker
# image format (podman/buildah: --format docker).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/lib/ibgwd-container/healthcheck", "livez"]

# systemd's container interface: tells PID 1 it runs in a container where the engine does not
# (Docker, Kubernetes runtimes; podman sets its own). Units with ConditionVirtualization=container
# (ibgwd-container-env.service) depend on it.
ENV container=oci

# systemd shuts down on SIGRTMIN+3; ibgwd then sends IBC STOP before the Gateway goes down.
STOPSIGNAL SIGRTMIN+3
# systemd, after keeping the container's log stream for the journal (image/init.sh).
CMD ["/usr/local/sbin/init"]
