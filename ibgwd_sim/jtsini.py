"""Make sure jts.ini holds the lines IBC adds for an unattended Gateway (pure text edit)."""

from __future__ import annotations

from pathlib import Path

REQUIRED: dict[str, tuple[tuple[str, str], ...]] = {
    "IBGateway": (("ApiOnly", "true"),),
    "Logon": (
        ("s3store", "true"),
        ("Locale", "en"),
        ("displayedproxymsg", "1"),
        ("UseSSL", "true"),
    ),
}


def augment(text: str) -> str:
    """Add missing required keys to their sections (creating sections); keep everything else."""
    lines = text.splitlines()
    for section, pairs in REQUIRED.items():
        header = f"[{section}]"
        try:
            start = next(i for i, ln in enumerate(lines) if ln.strip() == header)
        except StopIteration:
            lines += [header, *(f"{k}={v}" for k, v in pairs)]
            continue
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("[")),
            len(lines),
        )
        present = {ln.split("=", 1)[0].strip() for ln in lines[start + 1 : end] if "=" in ln}
        missing = [f"{k}={v}" for k, v in pairs if k not in present]
        lines[end:end] = missing
    return "\n".join(lines) + "\n"


def ensure(path: Path) -> None:
    try:
        text = path.read_text(encoding="latin-1")
    except FileNotFoundError:
        text = ""
    new = augment(text)
    if new != text:
        path.write_text(new, encoding="latin-1")
