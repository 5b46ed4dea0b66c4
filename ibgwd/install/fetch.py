"""Downloading over HTTPS (the one module of install-gateway that touches the network).

Every URL, the first and each redirect target, must be ``https://``: a redirect to ``http://``
(or any other scheme) is refused before it is followed, so a download can never fall back to
an unauthenticated transport. Certificates are checked against the system's trust store
(``SSL_CERT_FILE``/``SSL_CERT_DIR`` are honoured, as by every OpenSSL client).
"""

from __future__ import annotations

import http.client
import logging
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import IO, BinaryIO, Protocol

from ibgwd import __version__
from ibgwd.errors import EX_UNAVAILABLE, InstallError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_REDIRECTS = 10

# Progress callback: (bytes so far, total bytes or None when the server did not say).
Progress = Callable[[int, int | None], None]


class DownloadError(InstallError):
    """A download failed (network, HTTP status, a refused redirect); nothing was installed."""

    exit_code = EX_UNAVAILABLE


class NotFoundError(DownloadError):
    """The server answered 404."""


class Fetcher(Protocol):
    def read_text(self, url: str) -> str: ...

    def download(self, url: str, dest: BinaryIO, progress: Progress | None = None) -> None: ...


def check_https(url: str, what: str = "URL") -> None:
    if not url.lower().startswith("https://"):
        raise DownloadError(f"refusing non-HTTPS {what} {url}: only https:// is accepted")


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only when its target is https (urllib's default also takes http)."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        check_https(newurl, f"redirect (HTTP {code} from {req.full_url}) to")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class UrllibFetcher:
    """HTTPS with a timeout on every socket operation; https-only redirects (GitHub uses them)."""

    def __init__(self, timeout_s: float = 60.0, context: ssl.SSLContext | None = None) -> None:
        self._timeout_s = timeout_s
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context or ssl.create_default_context()),
            _HttpsOnlyRedirects(),
        )

    def _open(self, url: str) -> BinaryIO:
        check_https(url)
        request = urllib.request.Request(url, headers={"User-Agent": f"ibgwd/{__version__}"})
        try:
            response: BinaryIO = self._opener.open(request, timeout=self._timeout_s)
        except DownloadError:
            raise
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise NotFoundError(f"{url}: not found (HTTP 404)") from e
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError) as e:
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            if isinstance(reason, DownloadError):
                raise reason from e
            raise DownloadError(f"{url}: {reason}") from e
        return response

    def read_text(self, url: str) -> str:
        log.info("fetch url=%s", url)
        with self._open(url) as response:
            return response.read(1 << 20).decode("utf-8", "replace")

    def download(self, url: str, dest: BinaryIO, progress: Progress | None = None) -> None:
        log.info("download url=%s", url)
        try:
            with self._open(url) as response:
                length = getattr(response, "headers", {}).get("Content-Length")
                total = int(length) if length and str(length).isdigit() else None
                done = 0
                while chunk := response.read(CHUNK):
                    dest.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except DownloadError:
            raise
        except OSError as e:
            raise DownloadError(f"{url}: {e}") from e


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_progress(done: int, total: int | None, elapsed_s: float) -> str:
    """``12.0 MiB of 300.0 MiB (4 %), 2.5 MiB/s, 2 min left`` (pure, for the tty line)."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    text = _size(done)
    if total:
        text += f" of {_size(total)} ({100 * done // total} %)"
    if rate > 0:
        text += f", {_size(rate)}/s"
        if total and done < total:
            left = (total - done) / rate
            text += f", {left / 60:.0f} min left" if left >= 90 else f", {left:.0f} s left"
    return text


class TtyProgress:
    """One self-overwriting line on a terminal, at most every 0.2 s; silent elsewhere."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._start = time.monotonic()
        self._last = 0.0
        self._shown = False

    @property
    def enabled(self) -> bool:
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.2 and done != total):
            return
        self._last = now
        line = f"{self._label}: {format_progress(done, total, now - self._start)}"
        self._stream.write(f"\r\x1b[K{line}")
        self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()
