"""Parse text the way java.util.Properties.load(InputStream) does (ISO-8859-1, escapes)."""

from __future__ import annotations

_BLANK = " \t\f"
_EOL = "\r\n"


def _logical_lines(text: str) -> list[str]:
    """Split into logical lines exactly like Properties.LineReader (comments dropped)."""
    lines: list[str] = []
    buf: list[str] = []
    skip_blank = True
    appended_begin = False
    backslash = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        i += 1
        if skip_blank:
            if c in _BLANK or (not appended_begin and c in _EOL):
                continue
            skip_blank = False
            appended_begin = False
        if not buf and c in "#!":
            while i < n and text[i] not in _EOL:
                i += 1
            skip_blank = True
            continue
        if c not in _EOL:
            buf.append(c)
            backslash = (not backslash) if c == "\\" else False
            continue
        if not buf:
            skip_blank = True
            continue
        if i >= n:
            break
        if backslash:
            buf.pop()  # the continuation backslash is not part of the line
            skip_blank = True
            appended_begin = True
            backslash = False
            if c == "\r" and text[i] == "\n":
                i += 1
        else:
            lines.append("".join(buf))
            buf = []
            skip_blank = True
    if buf:
        if backslash:
            buf.pop()
        lines.append("".join(buf))
    return lines


def _unescape(s: str) -> str:
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        c = s[i] if i < n else ""
        i += 1
        if c == "u":
            digits = s[i : i + 4]
            if len(digits) < 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError("Malformed \\uxxxx encoding.")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append({"t": "\t", "r": "\r", "n": "\n", "f": "\f"}.get(c, c))
    return "".join(out)


def _split(line: str) -> tuple[str, str]:
    key_len, value_start, has_sep, backslash = 0, len(line), False, False
    while key_len < len(line):
        c = line[key_len]
        if c in "=:" and not backslash:
            value_start, has_sep = key_len + 1, True
            break
        if c in _BLANK and not backslash:
            value_start = key_len + 1
            break
        backslash = (not backslash) if c == "\\" else False
        key_len += 1
    while value_start < len(line):
        c = line[value_start]
        if c not in _BLANK:
            if not has_sep and c in "=:":
                has_sep = True
            else:
                break
        value_start += 1
    return _unescape(line[:key_len]), _unescape(line[value_start:])


def parse_properties(data: bytes) -> dict[str, str]:
    """Keys and values of a .properties file; later duplicates win, as in Java.

    Raises ValueError on a malformed \\uXXXX escape (Java throws IllegalArgumentException).
    """
    result: dict[str, str] = {}
    for line in _logical_lines(data.decode("latin-1")):
        key, value = _split(line)
        result[key] = value
    return result
