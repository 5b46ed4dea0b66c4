"""Property: any environment and conffile gives a valid model or a ConfigError, never another
exception, and no secret value ever appears in the error."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibgwd.config import spec
from ibgwd.config.load import load_settings
from ibgwd.errors import ConfigError

SECRET_MARK = "§"  # only secret values contain it, so it can be searched for in errors
NAMES = [s.name for s in spec.SETTINGS]
plain_text = st.text(st.characters(blacklist_characters=SECRET_MARK, blacklist_categories=("Cs",)))
secret_text = st.builds(lambda a, b: SECRET_MARK + a + SECRET_MARK + b, plain_text, plain_text)
plausible = st.sampled_from(
    [
        "",
        "yes",
        "no",
        "live",
        "paper",
        "both",
        "0",
        "4001",
        "70000",
        "11:45 PM",
        "07:05",
        "Etc/UTC",
        "127.0.0.1",
        "::1",
        "10.0.0.0/8",
        "/tmp",
        "a@b",
        "1.5",
        "-1",
        " x ",
        '"q"',
    ]
)


@st.composite
def sources(draw: st.DrawFn) -> tuple[dict[str, str], str, dict[str, str], dict[str, str]]:
    env: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=12)):
        secret = name in spec.SECRET_NAMES
        env[name] = draw(secret_text if secret else st.one_of(plausible, plain_text))
    env.update(draw(st.dictionaries(plain_text, plain_text, max_size=3)))
    lines = []
    for name in draw(st.lists(st.sampled_from([*NAMES, "BOGUS", "TZ"]), max_size=8)):
        value = draw(secret_text if name in spec.SECRET_NAMES else st.one_of(plausible, plain_text))
        quote = draw(st.sampled_from(["", "'", '"']))
        lines.append(f"{name}={quote}{value}{quote}")
    lines += draw(st.lists(plain_text, max_size=3))
    files = {
        n: draw(secret_text) for n in draw(st.sets(st.sampled_from(sorted(spec.SECRET_NAMES))))
    }
    creds = {
        n.lower(): draw(secret_text)
        for n in draw(st.sets(st.sampled_from(sorted(spec.SECRET_NAMES))))
    }
    return env, "\n".join(lines), files, creds


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sources())
def test_loader_returns_settings_or_config_error_and_never_echoes_a_secret(
    src: tuple[dict[str, str], str, dict[str, str], dict[str, str]],
) -> None:
    env, conf, files, creds = src
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ibgwd.conf").write_text(conf, encoding="utf-8", errors="surrogatepass")
        for name, value in files.items():
            (root / name).write_text(value, encoding="utf-8")
            env[name + "_FILE"] = str(root / name)
        (root / "creds").mkdir()
        for name, value in creds.items():
            (root / "creds" / name).write_text(value, encoding="utf-8")
        try:
            settings_ = load_settings(
                "default", config_dir=root, environ=env, credentials_dir=root / "creds"
            )
        except ConfigError as e:
            text = str(e) + "".join(repr(p) for p in e.problems)
            assert SECRET_MARK not in text
            assert e.problems
        else:
            assert SECRET_MARK not in repr(settings_)
