"""Test helper: a real Prometheus server (Debian's /usr/bin/prometheus) scraping given targets.

    with Prometheus(["127.0.0.1:9108"], tmp_path) as prom:
        prom.wait_for('ibgwd_api_up{mode="paper"}', lambda r: value(r) == 1)

Binds 127.0.0.1 on a free port, keeps its TSDB in the given temp dir, scrapes every second.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROMETHEUS = "/usr/bin/prometheus"
Result = list[dict[str, Any]]


class PrometheusError(RuntimeError):
    pass


def value(result: Result) -> float | None:
    """The value of a single-series instant-query result, None if there is no series."""
    if len(result) != 1:
        return None
    return float(result[0]["value"][1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(
        self,
        targets: Sequence[str],
        work_dir: Path,
        *,
        job: str = "ibgwd",
        scrape_interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        binary: str = PROMETHEUS,
    ) -> None:
        self.targets = list(targets)
        self.work_dir = work_dir
        self.job = job
        self.scrape_interval_s = scrape_interval_s
        self.rule_files = list(rule_files)
        self.binary = binary
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log = work_dir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": self.job, "static_configs": [{"targets": self.targets}]}
            ],
        }
        path = self.work_dir / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    def start(self, timeout_s: float = 30.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        for _attempt in range(3):  # another test may grab the free port before we bind it
            self.port = _free_port()
            with self._log.open("ab") as log:
                self._process = subprocess.Popen(
                    [
                        self.binary,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.work_dir / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--log.level=warn",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready(timeout_s):
                return
            self.stop()
        raise PrometheusError(f"prometheus did not become ready; log:\n{self.log_tail()}")

    def _wait_ready(self, timeout_s: float) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> Result:
        """Instant query through /api/v1/query; the list of result series."""
        data = self.api("/api/v1/query", query=expr)
        return list(data["result"])

    def wait_for(
        self, expr: str, predicate: Callable[[Result], bool], timeout_s: float = 30.0
    ) -> Result:
        """Query until predicate(result) holds; PrometheusError with the last result if not."""
        deadline = time.monotonic() + timeout_s
        result: Result = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if predicate(result):
                return result
            time.sleep(0.2)
        raise PrometheusError(f"{expr!r}: condition not met in {timeout_s}s; last {result}")

    def targets_health(self) -> list[str]:
        return [t["health"] for t in self.api("/api/v1/targets")["activeTargets"]]

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
