"""Escaping text for java.util.Properties files, which is how IBC reads config.ini."""

from __future__ import annotations

_SPECIAL = {"\\": "\\\\", "=": "\\=", ":": "\\:", "#": "\\#", "!": "\\!"}
_CONTROL = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}


def escape_value(text: str) -> str:
    """Escape a property value so Properties.load() returns exactly `text`.

    The result is pure ASCII (so ISO-8859-1 and UTF-8 readers agree): backslash and
    `= : # !` are escaped, leading and trailing spaces are escaped (load() would drop
    leading ones), control characters use their short escapes, and every other character
    outside printable ASCII becomes \\uXXXX (UTF-16 code units, so surrogate pairs for
    characters beyond the BMP).
    """
    out: list[str] = []
    last = len(text) - 1
    for index, ch in enumerate(text):
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        elif ch in _CONTROL:
            out.append(_CONTROL[ch])
        elif ch == " " and (index == 0 or index == last or _only_spaces(text, index)):
            out.append("\\ ")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(_unicode_escapes(ch))
    return "".join(out)


def _only_spaces(text: str, index: int) -> bool:
    """True when text[index] is part of the leading or trailing run of spaces."""
    return text[:index].strip(" ") == "" or text[index:].strip(" ") == ""


def _unicode_escapes(ch: str) -> list[str]:
    data = ch.encode("utf-16-be", "surrogatepass")
    units = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return [f"\\u{unit:04x}" for unit in units]
