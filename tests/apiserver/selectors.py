"""Label selectors (labels.Parse syntax) and field selectors (fields.ParseSelector) and their matching."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ApiStatusError, bad_request

_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def qualified_name_errors(key: str) -> list[str]:
    """validation.IsQualifiedName: optional DNS-subdomain prefix + '/' + name of at most 63 chars."""
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        if len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix):
            return ["prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                    "'-' or '.', and must start and end with an alphanumeric character"]
    else:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix "
                "and '/' (e.g. 'example.com/MyName')"]
    errs = []
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED_NAME.match(name):
        errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE.match(value):
        errs.append("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
    return errs


# ---- label selectors ------------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    key: str
    op: str          # exists, !, =, !=, in, notin, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        v = labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("=", "in"):
            return has and v in self.values
        if self.op in ("!=", "notin"):
            return not has or v not in self.values
        if self.op in ("gt", "lt"):
            if not has:
                return False
            try:
                lhs = int(v)  # type: ignore[arg-type]
            except ValueError:
                return False
            rhs = int(self.values[0])
            return lhs > rhs if self.op == "gt" else lhs < rhs
        return False


_TOKEN = re.compile(r"\s*(\(|\)|,|==|!=|=|!|>|<|[^\s(),=!<>]+)")


def parse_label_selector(text: str) -> list[Requirement]:
    """labels.Parse; errors are 400 BadRequest with the parser's message."""
    tokens: list[str] = []
    pos = 0
    text_s = text.strip()
    while pos < len(text_s):
        m = _TOKEN.match(text_s, pos)
        if not m:
            raise bad_request(f"unable to parse requirement: found unexpected character in '{text_s[pos:]}'")
        tokens.append(m.group(1))
        pos = m.end()
        while pos < len(text_s) and text_s[pos].isspace():
            pos += 1
    reqs: list[Requirement] = []
    i = 0

    def expect_value() -> str:
        nonlocal i
        if i >= len(tokens) or tokens[i] in ("(", ")", ",", "=", "==", "!=", "!", ">", "<"):
            got = tokens[i] if i < len(tokens) else "EOS"
            raise bad_request(f"found '{got}', expected: identifier")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        negate = False
        if tokens[i] == "!":
            negate = True
            i += 1
        if i >= len(tokens) or tokens[i] in ("(", ")", ",", "=", "==", "!=", ">", "<"):
            got = tokens[i] if i < len(tokens) else "EOS"
            raise bad_request(f"found '{got}', expected: !, identifier, or 'end of string'")
        key = tokens[i]
        i += 1
        _check_key(key)
        if negate:
            reqs.append(Requirement(key, "!"))
        elif i >= len(tokens) or tokens[i] == ",":
            reqs.append(Requirement(key, "exists"))
        else:
            op = tokens[i]
            i += 1
            if op in ("=", "=="):
                reqs.append(Requirement(key, "=", (_check_value(expect_value_or_empty(tokens, i)),)))
                i = _skip_value(tokens, i)
            elif op == "!=":
                reqs.append(Requirement(key, "!=", (_check_value(expect_value_or_empty(tokens, i)),)))
                i = _skip_value(tokens, i)
            elif op in ("in", "notin"):
                if i >= len(tokens) or tokens[i] != "(":
                    raise bad_request(f"found '{tokens[i] if i < len(tokens) else 'EOS'}', expected: '('")
                i += 1
                vals: list[str] = []
                while True:
                    if i < len(tokens) and tokens[i] == ")":
                        if not vals:
                            vals.append("")
                        i += 1
                        break
                    if i < len(tokens) and tokens[i] == ",":
                        vals.append("")
                        i += 1
                        continue
                    vals.append(_check_value(expect_value()))
                    if i < len(tokens) and tokens[i] == ",":
                        i += 1
                        if i < len(tokens) and tokens[i] == ")":
                            vals.append("")
                        continue
                    if i < len(tokens) and tokens[i] == ")":
                        i += 1
                        break
                    raise bad_request(f"found '{tokens[i] if i < len(tokens) else 'EOS'}', expected: ',' or ')'")
                reqs.append(Requirement(key, op, tuple(vals)))
            elif op in (">", "<"):
                val = expect_value()
                if not re.fullmatch(r"-?\d+", val):
                    raise bad_request(f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be "
                                      f"an integer")
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (val,)))
            else:
                raise bad_request(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(tokens):
            if tokens[i] != ",":
                raise bad_request(f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
            if i >= len(tokens):
                raise bad_request("found 'EOS', expected: identifier")
    return reqs


def expect_value_or_empty(tokens: list[str], i: int) -> str:
    if i >= len(tokens) or tokens[i] == ",":
        return ""
    if tokens[i] in ("(", ")", "=", "==", "!=", "!", ">", "<"):
        raise bad_request(f"found '{tokens[i]}', expected: identifier")
    return tokens[i]


def _skip_value(tokens: list[str], i: int) -> int:
    return i if i >= len(tokens) or tokens[i] == "," else i + 1


def _check_key(key: str) -> None:
    errs = qualified_name_errors(key)
    if errs:
        raise bad_request(f'unable to parse requirement: key: Invalid value: "{key}": {"; ".join(errs)}')


def _check_value(value: str) -> str:
    errs = label_value_errors(value)
    if errs:
        raise bad_request(f'unable to parse requirement: values[0][{value}]: Invalid value: "{value}": '
                          f'{"; ".join(errs)}')
    return value


def labels_match(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


# ---- field selectors ------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldTerm:
    field: str
    op: str  # = or !=
    value: str


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, esc = [], [], False
    for ch in text:
        if esc:
            cur.append("\\" + ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if esc:
        cur.append("\\")
    out.append("".join(cur))
    return out


def _unescape(value: str) -> str:
    out, esc = [], False
    for ch in value:
        if esc:
            if ch not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch in ",=":
            raise bad_request(f"invalid field selector: unescaped {ch} in value")
        else:
            out.append(ch)
    if esc:
        raise bad_request("invalid field selector: unterminated escape sequence")
    return "".join(out)


def parse_field_selector(text: str, convert: Callable[[str], str]) -> list[FieldTerm]:
    """fields.ParseSelector, then the kind's field label conversion (400 on an unsupported label)."""
    terms: list[FieldTerm] = []
    if not text.strip():
        return terms
    for part in _split_unescaped(text, ","):
        if not part:
            continue
        for op in ("!=", "==", "="):
            idx = part.find(op)
            if idx >= 0:
                field, raw = part[:idx].strip(), part[idx + len(op):]
                terms.append(FieldTerm(field, "!=" if op == "!=" else "=", _unescape(raw)))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
    out = []
    for t in terms:
        out.append(FieldTerm(convert(t.field), t.op, t.value))
    return out


def fields_match(terms: list[FieldTerm], values: dict[str, str]) -> bool:
    for t in terms:
        v = values.get(t.field, "")
        if (v == t.value) != (t.op == "="):
            return False
    return True


def field_selector_name(terms: list[FieldTerm]) -> str:
    """The name a metadata.name= selector pins (RequestInfo uses it for authorization)."""
    for t in terms:
        if t.field == "metadata.name" and t.op == "=":
            return t.value
    return ""


def label_conversion_error(label: str) -> ApiStatusError:
    return bad_request(f"field label not supported: {label}")
