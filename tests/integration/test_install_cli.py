"""install-gateway as a process: the simulated install4j installer run unprivileged, a real zip,
a real SIGKILL mid-way, and downloads from a local HTTPS server whose CA only the test trusts."""

from __future__ import annotations

import hashlib
import http.server
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ib_installer import build_ibc_zip, build_installer

REPO = Path(__file__).resolve().parents[2]
README_INSTALLER = "ibgateway-stable-standalone-linux-x64.sh"  # IB's own download name

HANG = 'touch "$dir/.install4j/hanging"; exec sleep 600'
FAIL = 'echo "Installation failed: disk full"; exit 1'


@pytest.fixture
def prefix_parent() -> Iterator[Path]:
    """Where the prefix goes: below directories the install user may enter (pytest's own
    tmp_path is below /tmp/pytest-of-root, mode 700), and that only root can write."""
    d = Path(tempfile.mkdtemp(prefix="ibgwd-install-test-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


@pytest.fixture
def work(tmp_path: Path, prefix_parent: Path) -> dict[str, Path]:
    return {
        "gw1": build_installer(
            tmp_path / "ibgateway-10.30.1t-standalone-linux-x64.sh",
            "10.30.1t",
            hook='env > "$dir/.install4j/environment"',
        ),
        "gw2": build_installer(tmp_path / README_INSTALLER, "10.37.1o"),
        "hang": build_installer(tmp_path / "hang" / README_INSTALLER, "10.37.1o", hook=HANG),
        "fail": build_installer(tmp_path / "fail" / README_INSTALLER, "10.37.1o", hook=FAIL),
        "ibc1": build_ibc_zip(tmp_path / "IBCLinux-3.20.0.zip", "3.20.0"),
        "ibc2": build_ibc_zip(tmp_path / "IBCLinux-3.24.2.zip", "3.24.2"),
        "prefix": prefix_parent / "opt" / "ibgwd",
    }


def args(work: dict[str, Path], gw: str = "gw1", ibc: str = "ibc1") -> list[str]:
    return ["--from", str(work[gw]), "--ibc-from", str(work[ibc]), "--prefix", str(work["prefix"])]


def cli(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ibgwd.install", *argv],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def state(prefix: Path) -> dict[str, object]:
    return {
        "gateway": sorted(os.listdir(prefix / "ibgateway")),
        "ibc": sorted(os.listdir(prefix / "ibc")),
        "gateway_current": os.readlink(prefix / "ibgateway" / "current"),
        "ibc_current": os.readlink(prefix / "ibc" / "current"),
    }


OLD_STATE = {
    "gateway": ["10.30.1t", "current"],
    "ibc": ["3.20.0", "current"],
    "gateway_current": "10.30.1t",
    "ibc_current": "3.20.0",
}


def install_user_uid() -> int:
    return pwd.getpwnam("ibgwd-install").pw_uid


def test_install_from_local_files_runs_the_installer_unprivileged(work: dict[str, Path]) -> None:
    sha = hashlib.sha256(work["gw1"].read_bytes()).hexdigest()
    proc = cli([*args(work), "--sha256", sha], IBGWD_CALLER_ENV_MARKER="leak")
    assert proc.returncode == 0, proc.stderr
    assert state(work["prefix"]) == OLD_STATE
    gw = work["prefix"] / "ibgateway" / "10.30.1t"
    assert (gw / ".install4j" / "inst_jre.cfg").read_text() == f"{gw}/jre\n"
    # the simulated installer recorded who ran it: the install user, never root
    uid = int((gw / ".install4j" / "installer.uid").read_text())
    assert uid == install_user_uid() and uid != 0
    environment = (gw / ".install4j" / "environment").read_text()
    assert "IBGWD_CALLER_ENV_MARKER" not in environment  # an empty environment, not ours
    assert f"HOME={work['prefix']}/.staging-" in environment
    # ...and everything it wrote is root's now, writable by no one else
    for path in [gw, *gw.rglob("*")]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (0, 0), path
        assert st.st_mode & 0o7022 == 0, f"{path} mode {st.st_mode:o}"
    assert os.access(work["prefix"] / "ibc" / "current" / "scripts" / "ibcstart.sh", os.X_OK)
    assert "IB Gateway 10.30.1t" in proc.stdout and "(verified)" in proc.stdout
    assert "running IB's installer as user ibgwd-install" in proc.stdout
    assert f"TWS_PATH={work['prefix']} IB_GATEWAY_VERSION=current" in proc.stdout


def test_readme_command_reads_the_version_from_ibs_installer(work: dict[str, Path]) -> None:
    """README: ibgwd install-gateway --from ibgateway-stable-standalone-linux-x64.sh ..."""
    proc = cli(args(work, "gw2", "ibc2"))
    assert proc.returncode == 0, proc.stderr
    assert os.readlink(work["prefix"] / "ibgateway" / "current") == "10.37.1o"
    assert "(not verified)" in proc.stdout  # a local file, unpinned: said, not refused


def test_checksum_mismatch_exits_nonzero_and_changes_nothing(work: dict[str, Path]) -> None:
    assert cli(args(work)).returncode == 0
    proc = cli([*args(work, "gw2", "ibc2"), "--sha256", "0" * 64])
    assert proc.returncode == 70
    assert "sha256 mismatch" in proc.stderr and "nothing was installed" in proc.stderr
    assert state(work["prefix"]) == OLD_STATE


def test_failing_installer_exits_nonzero_and_changes_nothing(work: dict[str, Path]) -> None:
    assert cli(args(work)).returncode == 0
    proc = cli(args(work, "fail", "ibc2"))
    assert proc.returncode == 70
    assert "status 1" in proc.stderr and "disk full" in proc.stderr
    assert "as user ibgwd-install" in proc.stderr
    assert state(work["prefix"]) == OLD_STATE
    assert [p.name for p in work["prefix"].iterdir() if p.name.startswith(".staging")] == []


def test_hostile_installer_cannot_plant_a_link_root_would_follow(
    work: dict[str, Path], tmp_path: Path
) -> None:
    evil = build_installer(
        tmp_path / "evil" / README_INSTALLER,
        "10.37.1o",
        hook='ln -s /etc "$dir/jars/etc"; chmod 4777 "$dir/jre/bin/java"',
    )
    assert cli(args(work)).returncode == 0
    proc = cli(["--from", str(evil), *args(work)[2:]])
    assert proc.returncode == 70, proc.stdout + proc.stderr
    assert "link leading outside" in proc.stderr and "jars/etc -> /etc" in proc.stderr
    assert state(work["prefix"]) == OLD_STATE


@pytest.fixture
def killable() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)


def wait_hanging(prefix: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not list(prefix.glob(".staging-*/gateway-work/ibgateway/.install4j/hanging")):
        assert proc.poll() is None, "install-gateway exited before the installer hung"
        assert time.monotonic() < deadline, "simulated installer never started"
        time.sleep(0.05)


def test_sigkill_mid_install_leaves_previous_current_and_next_run_cleans_up(
    work: dict[str, Path], killable: list[subprocess.Popen[bytes]]
) -> None:
    assert cli(args(work)).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "ibgwd.install", *args(work, "hang", "ibc2")],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    killable.append(proc)
    prefix = work["prefix"]
    wait_hanging(prefix, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    assert state(prefix) == OLD_STATE  # no 10.37.1o, current untouched
    assert [p.name for p in prefix.iterdir() if p.name.startswith(".staging-")] != []
    # the installer (in its own session, as ibgwd-install) died with its parent
    deadline = time.monotonic() + 10
    while (
        subprocess.run(["pgrep", "-u", "ibgwd-install", "-x", "sleep"], check=False).returncode == 0
    ):
        assert time.monotonic() < deadline, "the installer outlived install-gateway"
        time.sleep(0.05)

    done = cli(args(work, "gw2", "ibc2"))  # the lock died with the process
    assert done.returncode == 0, done.stderr
    assert os.readlink(prefix / "ibgateway" / "current") == "10.37.1o"
    assert [p.name for p in prefix.iterdir() if p.name.startswith(".staging-")] == []


def test_concurrent_install_is_refused_while_one_runs(
    work: dict[str, Path], killable: list[subprocess.Popen[bytes]]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ibgwd.install", *args(work, "hang")],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    killable.append(proc)
    wait_hanging(work["prefix"], proc)
    second = cli(args(work, "gw2", "ibc2"))
    assert second.returncode == 70
    assert "another install-gateway is running" in second.stderr


def test_list_and_use_roll_back(work: dict[str, Path]) -> None:
    assert cli(args(work)).returncode == 0
    assert cli(args(work, "gw2", "ibc2")).returncode == 0
    prefix = ["--prefix", str(work["prefix"])]
    listed = cli(["--list", *prefix])
    assert listed.returncode == 0 and "* 10.37.1o  (current)" in listed.stdout
    used = cli(["--use", "10.30.1t", *prefix])
    assert used.returncode == 0, used.stderr
    assert os.readlink(work["prefix"] / "ibgateway" / "current") == "10.30.1t"
    assert os.readlink(work["prefix"] / "ibc" / "current") == "3.24.2"  # untouched
    missing = cli(["--use", "9.99", *prefix])
    assert missing.returncode == 70 and "9.99 is not installed" in missing.stderr


# --- downloads from a local HTTPS server -----------------------------------------------------


@dataclass
class Site:
    """Routes: path -> (status, body, headers); every request is logged."""

    routes: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    base: str = ""


def openssl(*argv: str, cwd: Path) -> None:
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA (trusted only through SSL_CERT_FILE) and a cert for 127.0.0.1."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ibgwd test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)  # fmt: skip
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=d)  # fmt: skip
    (d / "ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext",
            cwd=d)  # fmt: skip
    return d


def serve(site: Site, context: ssl.SSLContext | None) -> Iterator[Site]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            site.asked.append(self.path)
            status, body, headers = site.routes.get(self.path, (404, b"not found", {}))
            self.send_response(status)
            for k, v in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if context is not None else "http"
    site.base = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def https(pki: Path) -> Iterator[Site]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    yield from serve(Site(), context)


@pytest.fixture
def plain_http() -> Iterator[Site]:
    yield from serve(Site(), None)


def download(
    work: dict[str, Path], url: str, *extra: str, pki: Path
) -> subprocess.CompletedProcess[str]:
    argv = ["--url", url, *extra, "--ibc-from", str(work["ibc1"]), "--prefix", str(work["prefix"])]
    return cli(argv, SSL_CERT_FILE=str(pki / "ca.pem"))


def test_unpinned_download_is_refused_before_it_is_fetched(
    work: dict[str, Path], https: Site, pki: Path
) -> None:
    https.routes["/" + README_INSTALLER] = (200, work["gw2"].read_bytes(), {})
    proc = download(work, f"{https.base}/{README_INSTALLER}", pki=pki)
    assert proc.returncode == 77, proc.stderr
    assert "IB publishes no checksum" in proc.stderr and "--allow-unverified" in proc.stderr
    assert https.asked == []
    assert not (work["prefix"] / "ibgateway").exists()


def test_pinned_download_over_https_installs_verified(
    work: dict[str, Path], https: Site, pki: Path
) -> None:
    body = work["gw2"].read_bytes()
    https.routes["/" + README_INSTALLER] = (200, body, {})
    pin = hashlib.sha256(body).hexdigest()
    proc = download(work, f"{https.base}/{README_INSTALLER}", "--sha256", pin, pki=pki)
    assert proc.returncode == 0, proc.stderr
    assert https.asked == ["/" + README_INSTALLER]
    assert "IB Gateway 10.37.1o: " in proc.stdout and "(verified)" in proc.stdout
    gw = work["prefix"] / "ibgateway" / "10.37.1o"
    assert int((gw / ".install4j" / "installer.uid").read_text()) == install_user_uid()


def test_allow_unverified_installs_and_says_so(
    work: dict[str, Path], https: Site, pki: Path
) -> None:
    https.routes["/" + README_INSTALLER] = (200, work["gw2"].read_bytes(), {})
    proc = download(work, f"{https.base}/{README_INSTALLER}", "--allow-unverified", pki=pki)
    assert proc.returncode == 0, proc.stderr
    assert "IB Gateway 10.37.1o: " in proc.stdout and "(not verified)" in proc.stdout


def test_redirect_to_http_is_refused_and_never_followed(
    work: dict[str, Path], https: Site, plain_http: Site, pki: Path
) -> None:
    body = work["gw2"].read_bytes()
    plain_http.routes["/" + README_INSTALLER] = (200, body, {})
    https.routes["/" + README_INSTALLER] = (
        302, b"", {"Location": f"{plain_http.base}/{README_INSTALLER}"},
    )  # fmt: skip
    pin = hashlib.sha256(body).hexdigest()
    proc = download(work, f"{https.base}/{README_INSTALLER}", "--sha256", pin, pki=pki)
    assert proc.returncode == 69, proc.stderr
    assert "refusing non-HTTPS redirect" in proc.stderr and plain_http.base in proc.stderr
    assert plain_http.asked == []
    assert not (work["prefix"] / "ibgateway" / "10.37.1o").exists()


def test_redirect_that_stays_on_https_is_followed(
    work: dict[str, Path], https: Site, pki: Path
) -> None:
    body = work["gw2"].read_bytes()
    https.routes["/mirror/" + README_INSTALLER] = (200, body, {})
    https.routes["/" + README_INSTALLER] = (
        301, b"", {"Location": f"{https.base}/mirror/{README_INSTALLER}"},
    )  # fmt: skip
    pin = hashlib.sha256(body).hexdigest()
    proc = download(work, f"{https.base}/{README_INSTALLER}", "--sha256", pin, pki=pki)
    assert proc.returncode == 0, proc.stderr
    assert https.asked == ["/" + README_INSTALLER, "/mirror/" + README_INSTALLER]


def test_untrusted_certificate_is_refused(work: dict[str, Path], https: Site) -> None:
    https.routes["/" + README_INSTALLER] = (200, work["gw2"].read_bytes(), {})
    pin = hashlib.sha256(work["gw2"].read_bytes()).hexdigest()
    argv = ["--url", f"{https.base}/{README_INSTALLER}", "--sha256", pin,
            "--ibc-from", str(work["ibc1"]), "--prefix", str(work["prefix"])]  # fmt: skip
    proc = cli(argv, SSL_CERT_FILE=os.devnull)
    assert proc.returncode == 69
    assert "CERTIFICATE_VERIFY_FAILED" in proc.stderr


def test_plain_http_url_is_refused(work: dict[str, Path]) -> None:
    proc = cli(["--url", "http://127.0.0.1:9/x.sh", "--allow-unverified", *args(work)[2:]])
    assert proc.returncode == 69 and "refusing non-HTTPS --url" in proc.stderr
