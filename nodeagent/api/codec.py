"""JSON/YAML-decoded data <-> the typed API dataclasses.

Decoding is driven by the dataclasses' type hints and is as strict about
types as Go's encoding/json is for the API server: a number where a string
is expected, or `true` where an integer is expected, is an error naming the
field path (`spec.containers[0].ports[1].containerPort`), because guessing a
conversion would run something other than what the manifest says. Unknown
fields are ignored like the API server's non-strict decoder does, but are
reported so a misspelt `imagePullPolcy` does not pass silently.

Encoding follows Go's `omitempty`: zero values are left out unless the
field's metadata says `keep=True`; an optional (`X | None`) field is left out
only when it is None, since there `0`, `false` and `{}` are meaningful (a
pointer in Go). For pods that went through defaulting,
`decode(type(x), encode(x)) == x`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import types
import typing
from typing import Any, TypeVar, get_args, get_origin

from nodeagent.api.quantity import InvalidQuantityError, Quantity

T = TypeVar("T")

# Go decodes API integers into int32/int64; nothing wider can be meant.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class DecodeError(ValueError):
    """The data does not fit the API type at `path` (a JSON field path)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclasses.dataclass(frozen=True)
class _FieldInfo:
    name: str          # Python attribute
    json: str          # JSON key
    hint: Any          # resolved type hint
    optional: bool     # the hint admits None (a Go pointer)
    keep: bool         # print even when zero (not omitempty)


def json_name(field: dataclasses.Field[Any]) -> str:
    """The field's JSON key: metadata "json", else camelCase of its name."""
    override = field.metadata.get("json")
    if override:
        return str(override)
    head, *rest = field.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def decode(cls: type[T], data: Any, path: str = "") -> T:
    """Build a `cls` from decoded JSON/YAML, ignoring unknown fields."""
    return _Decoder().value(cls, data, path)


def decode_with_warnings(cls: type[T], data: Any, path: str = "") -> tuple[T, list[str]]:
    """Like decode(), also returning one warning per unknown field."""
    decoder = _Decoder()
    obj = decoder.value(cls, data, path)
    return obj, [f"{p}: unknown field" for p in decoder.unknown]


def encode(obj: Any) -> Any:
    """The JSON-ready form of a dataclass tree (dicts, lists, scalars)."""
    return _Encoder().value(obj)


@functools.cache
def _fields_of(cls: type) -> tuple[_FieldInfo, ...]:
    """The JSON view of a dataclass's fields.

    Memoised because resolving string annotations dominates decoding time;
    the table is derived only from the class definition, so it is as
    constant as the class itself.
    """
    module = sys.modules.get(cls.__module__)
    hints = typing.get_type_hints(cls, globalns=vars(module) if module else None)
    return tuple(
        _FieldInfo(name=fld.name, json=json_name(fld), hint=hints[fld.name],
                   optional=_is_union(hints[fld.name]) and type(None) in get_args(hints[fld.name]),
                   keep=bool(fld.metadata.get("keep", False)))
        for fld in dataclasses.fields(cls))


@functools.cache
def prepare(cls: type) -> None:
    """Resolve the field tables of `cls` and of every dataclass it holds now,
    not on the first decode or encode: a fresh process otherwise spends ~5 ms
    of its first manifest's parse (and ~1 ms of its first status) on them."""
    pending, seen = [cls], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for info in _fields_of(current):
            pending.extend(_dataclasses_in(info.hint))


def _dataclasses_in(hint: Any) -> list[type]:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return [hint]
    return [c for arg in get_args(hint) for c in _dataclasses_in(arg)]


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (typing.Union, types.UnionType)


def _json_kind(value: Any) -> str:
    """How a decoded value looks in JSON terms, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({json.dumps(shown, ensure_ascii=False)})"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _key_text(key: Any) -> str:
    """Map keys as sigs.k8s.io/yaml turns YAML keys into JSON strings."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


class _Decoder:
    """One decode call; collects the paths of the unknown fields it saw."""

    def __init__(self) -> None:
        self.unknown: list[str] = []

    def value(self, hint: Any, value: Any, path: str) -> Any:
        if value is None:
            return self.zero(hint)
        if hint is Any:
            return value
        if _is_union(hint):
            return self.union(hint, value, path)
        origin = get_origin(hint)
        if origin is list:
            return self.array(get_args(hint)[0], value, path)
        if origin is dict:
            return self.mapping(get_args(hint)[1], value, path)
        if hint is Quantity:
            return self.quantity(value, path)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self.object(hint, value, path)
        if hint is bool:
            if not isinstance(value, bool):
                raise DecodeError(path, f"expected a boolean, got {_json_kind(value)}")
            return value
        if hint is int:
            return self.integer(value, path)
        if hint is str:
            if not isinstance(value, str):
                raise DecodeError(path, f"expected a string, got {_json_kind(value)}")
            return value
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DecodeError(path, f"expected a number, got {_json_kind(value)}")
            return float(value)
        raise TypeError(f"codec cannot decode into {hint!r}")

    def zero(self, hint: Any) -> Any:
        """The value an absent/null field or element takes (Go's zero value)."""
        if hint is Any or (_is_union(hint) and type(None) in get_args(hint)):
            return None
        if _is_union(hint):  # int | str: IntOrString's zero is the int 0
            return self.zero(get_args(hint)[0])
        origin = get_origin(hint)
        if origin is list:
            return []
        if origin is dict:
            return {}
        if hint is Quantity:
            return Quantity("0")
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return hint()
        return {bool: False, int: 0, str: "", float: 0.0}[hint]

    def union(self, hint: Any, value: Any, path: str) -> Any:
        members = [m for m in get_args(hint) if m is not type(None)]
        if len(members) == 1:
            return self.value(members[0], value, path)
        if set(members) == {int, str}:
            if isinstance(value, str):
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return self.integer(value, path)
            raise DecodeError(path, f"expected an integer or a string, got {_json_kind(value)}")
        raise TypeError(f"codec cannot decode into {hint!r}")

    def integer(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DecodeError(path, f"expected an integer, got {_json_kind(value)}")
        if not INT64_MIN <= value <= INT64_MAX:
            raise DecodeError(path, f"integer {value} is out of range for a 64-bit field")
        return value

    def quantity(self, value: Any, path: str) -> Quantity:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise DecodeError(path, f"expected a quantity (string or number), got {_json_kind(value)}")
        try:
            return Quantity(value)
        except InvalidQuantityError as exc:
            raise DecodeError(path, str(exc)) from None

    def array(self, item: Any, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise DecodeError(path, f"expected an array, got {_json_kind(value)}")
        return [self.value(item, element, f"{path}[{i}]") for i, element in enumerate(value)]

    def mapping(self, item: Any, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise DecodeError(path, f"expected an object, got {_json_kind(value)}")
        out: dict[str, Any] = {}
        for key, element in value.items():
            text = _key_text(key)
            out[text] = self.value(item, element, f"{path}[{text}]")
        return out

    def object(self, cls: type, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise DecodeError(path, f"expected an object, got {_json_kind(value)}")
        infos = _fields_of(cls)
        by_json = {info.json: info for info in infos}
        kwargs: dict[str, Any] = {}
        prefix = f"{path}." if path else ""
        for key, element in value.items():
            text = _key_text(key)
            info = by_json.get(text)
            if info is None:
                self.unknown.append(prefix + text)
                continue
            if element is None:
                continue  # null = absent: keep the dataclass default
            kwargs[info.name] = self.value(info.hint, element, prefix + text)
        return cls(**kwargs)


_SCALARS = frozenset({str, int, float, bool, type(None)})


class _Encoder:
    def value(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in _SCALARS:  # most values: decide by exact type, cheaply
            return obj
        if kind is list:
            return [self.value(v) for v in obj]
        if kind is dict:
            # Go's encoding/json prints map keys sorted.
            return {k: self.value(obj[k]) for k in sorted(obj)}
        if kind is Quantity:
            return obj.text
        if hasattr(kind, "__dataclass_fields__"):
            return self.object(obj)
        return obj

    def object(self, obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for info in _fields_of(type(obj)):
            raw = getattr(obj, info.name)
            encoded = self.value(raw)
            if info.keep or not self.omit(info, raw, encoded):
                out[info.json] = encoded
        return out

    @staticmethod
    def omit(info: _FieldInfo, raw: Any, encoded: Any) -> bool:
        if raw is None:
            return True
        if info.optional:
            return False  # a set pointer prints even when it points at a zero value
        if isinstance(raw, bool):
            return raw is False
        if isinstance(raw, Quantity):
            return False
        return encoded in ("", 0, [], {})
