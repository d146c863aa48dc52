"""Go's text conventions, so messages read exactly like the kubelet's: %q
quoting (strconv.Quote) and an OS error's text as Go prints it."""

from __future__ import annotations

_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(text: str) -> str:
    """strconv.Quote: double quotes, Go escapes, printable Unicode kept."""
    out = ['"']
    for ch in text:
        escaped = _GO_ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_strerror(exc: OSError) -> str:
    """syscall.Errno's text: the C message with a lower-case first letter
    ("no such file or directory")."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
