"""Downloading over HTTPS (the one module of install-gateway that touches the network)."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from typing import BinaryIO, Protocol

from ibgwd import __version__
from ibgwd.errors import EX_UNAVAILABLE, InstallError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class DownloadError(InstallError):
    """A download failed (network, HTTP status); nothing was installed."""

    exit_code = EX_UNAVAILABLE


class NotFoundError(DownloadError):
    """The server answered 404."""


class Fetcher(Protocol):
    def read_text(self, url: str) -> str: ...

    def download(self, url: str, dest: BinaryIO) -> None: ...


class UrllibFetcher:
    """HTTPS with a timeout on every socket operation; redirects followed (GitHub uses them)."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        self._timeout_s = timeout_s

    def _open(self, url: str) -> BinaryIO:
        if not url.startswith("https://"):
            raise DownloadError(f"refusing non-HTTPS URL {url}")
        request = urllib.request.Request(url, headers={"User-Agent": f"ibgwd/{__version__}"})
        try:
            response: BinaryIO = urllib.request.urlopen(request, timeout=self._timeout_s)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise NotFoundError(f"{url}: not found (HTTP 404)") from e
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"{url}: {e}") from e
        return response

    def read_text(self, url: str) -> str:
        log.info("fetch url=%s", url)
        with self._open(url) as response:
            return response.read(1 << 20).decode("utf-8", "replace")

    def download(self, url: str, dest: BinaryIO) -> None:
        log.info("download url=%s", url)
        try:
            with self._open(url) as response:
                while chunk := response.read(CHUNK):
                    dest.write(chunk)
        except OSError as e:
            raise DownloadError(f"{url}: {e}") from e
