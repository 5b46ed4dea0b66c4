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
from ibgwd.render.render import RenderedFile, render_files
from ibgwd.render.write import write_files
from ibgwd.supervisor.supervisor import ensure_dir
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
        for directory in (
            self.paths.runtime_dir / "ibc",
            self.paths.runtime_dir / "vnc",
            self.paths.home,
            *(Path(g.settings_path) for g in settings.gateways),
        ):
            ensure_dir(directory, self.uid, self.gid)
        files = list(render_files(settings, runtime_dir=self.paths.runtime_dir))
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
    if not vmoptions.is_file():
        return
    text = vmoptions.read_text(encoding="utf-8")
    new = XMX.sub(f"-Xmx{settings.java_heap_mb}m", text)
    if new != text:
        tmp = vmoptions.with_name(vmoptions.name + ".ibgwd-tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.chmod(vmoptions.stat().st_mode & 0o777)
        tmp.replace(vmoptions)
