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
    # Java strings are UTF-16: a pair of \uD8xx\uDCxx escapes is one character
    return "".join(out).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


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


def escape_value(text: str) -> str:
    """A value that ``parse_properties`` (and Java's Properties.load) reads back as ``text``.

    Pure ASCII: ``\\ = : # !`` and a leading space are escaped, everything outside
    printable ASCII becomes \\uXXXX (UTF-16 code units).
    """
    out: list[str] = []
    for index, ch in enumerate(text):
        if ch in "\\=:#!" or (ch == " " and index == 0):
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            data = ch.encode("utf-16-be", "surrogatepass")
            out.extend(
                f"\\u{int.from_bytes(data[i : i + 2], 'big'):04x}" for i in range(0, len(data), 2)
            )
    return "".join(out)
