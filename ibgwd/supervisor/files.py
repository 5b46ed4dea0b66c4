"""Writes what the children read (IBC config.ini, jts.ini, the VNC password file, the ssh
passphrase and askpass helper) and reports a digest per component so a reload knows which units
must restart."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ibgwd.config.model import Settings
from ibgwd.isolation import xauth
from ibgwd.isolation.fs import ensure_dir, repair_ownership, rewrite
from ibgwd.render.render import RenderedFile, render_files
from ibgwd.render.write import write_files
from ibgwd.units import tunnel
from ibgwd.units.spec import Paths

XMX = re.compile(r"^-Xmx\d+[kKmMgG]?$", re.MULTILINE)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RuntimeFiles:
    paths: Paths
    uid: int
    gid: int

    def write(self, settings: Settings) -> dict[str, str]:
        owned = (self.paths.home, *(Path(g.settings_path) for g in settings.gateways))
        for directory in (
            self.paths.runtime_dir / "ibc",
            self.paths.runtime_dir / "vnc",
            self.paths.runtime_dir / "x",
            *owned,
        ):
            ensure_dir(directory, self.uid, self.gid)
        # The gateway user's trees in the instance's state directory are its own, whatever an
        # ownership fix-up did to them (systemd's StateDirectory= chown to root after `chown -R`
        # of the state directory, a move from the single shared user to one per instance):
        # give them back, links untouched. Paths elsewhere are the admin's to manage.
        for directory in (*owned, Path(settings.ssh.key_dir)):
            if directory.is_relative_to(self.paths.state_dir) and directory.is_dir():
                repair_ownership(directory, self.uid, self.gid)
        files = list(render_files(settings, runtime_dir=self.paths.runtime_dir))
        # The display's cookie: made once per display number and kept while the runtime
        # directory lives (Xvfb reads it at start; a new one would lock out later clients).
        files.append(
            RenderedFile(
                path=self.paths.xauthority(settings.display),
                text=xauth.as_text(xauth.xauthority(settings.display, xauth.new_cookie())),
                mode=0o600,
                secret=True,
                only_if_missing=True,
            )
        )
        if settings.vnc_password is not None and settings.vnc_enabled:
            files.append(
                RenderedFile(
                    path=self.paths.vnc_password_file,
                    text=settings.vnc_password.reveal() + "\n",
                    mode=0o600,
                    secret=True,
                    only_if_missing=False,
                )
            )
        files += self._tunnel_files(settings)
        write_files(files, uid=self.uid, gid=self.gid)
        apply_java_heap(settings)
        digests: dict[str, str] = {}
        for g in settings.gateways:
            ini = self.paths.ibc_ini(g.mode)
            digests[f"ibc-{g.mode.value}"] = _digest(
                next((f.text for f in files if f.path == ini), "")
            )
        digests["vnc"] = _digest(
            next((f.text for f in files if f.path == self.paths.vnc_password_file), "")
        )
        secret = next((f.text for f in files if f.path == tunnel.passphrase_file(self.paths)), "")
        for g in settings.gateways:
            digests[f"tunnel-{g.mode.value}"] = _digest(secret)
        return digests

    def clear(self) -> None:
        """Remove what was rendered under the runtime directory (kept across ibgwd restarts by
        RuntimeDirectoryPreserve=, since the children that read it survive them)."""
        for child in self.paths.runtime_dir.iterdir() if self.paths.runtime_dir.is_dir() else ():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def _tunnel_files(self, settings: Settings) -> list[RenderedFile]:
        """The passphrase (0600) and its askpass helper; a passphrase no longer configured is
        removed. The default key directory is created (empty, 0700) for the user to fill."""
        passphrase = tunnel.passphrase_file(self.paths)
        if settings.tunnel_enabled and not Path(settings.ssh.key_dir).exists():
            ensure_dir(Path(settings.ssh.key_dir), self.uid, self.gid)
        if not settings.tunnel_enabled or not settings.ssh.passphrase:
            passphrase.unlink(missing_ok=True)
            return []
        ensure_dir(tunnel.ssh_dir(self.paths), self.uid, self.gid)
        return [
            RenderedFile(
                path=passphrase,
                text=settings.ssh.passphrase.reveal(),
                mode=0o600,
                secret=True,
                only_if_missing=False,
            ),
            RenderedFile(
                path=tunnel.askpass_file(self.paths),
                text=tunnel.askpass_script(self.paths),
                mode=0o500,
                secret=False,
                only_if_missing=False,
            ),
        ]


def apply_java_heap(settings: Settings) -> None:
    """JAVA_HEAP_SIZE: set -Xmx in the Gateway's vmoptions (any previous value, not only 768m)."""
    if settings.java_heap_mb is None:
        return
    vmoptions = (
        Path(settings.tws_path) / "ibgateway" / settings.gateway_version / "ibgateway.vmoptions"
    )
    # TWS_PATH may belong to the gateway user (layouts migrated from the old image): no link
    # there may redirect root's write (ibgwd/isolation/fs.py).
    rewrite(vmoptions, XMX, f"-Xmx{settings.java_heap_mb}m")
