"""Kubernetes resource quantities (k8s.io/apimachinery resource.Quantity).

Exact decimal arithmetic: `100m` CPU is 0.1, `1Gi` is 1073741824. Values
round up to integers the way the API does (`Value()`/`MilliValue()` ceil).
The original text is kept, so a quantity prints as the user wrote it.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
            "P": Decimal(10**15), "E": Decimal(10**18)}
_PATTERN = re.compile(
    r"^(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")


class InvalidQuantityError(ValueError):
    pass


class Quantity:
    """An exact amount; compare and add them like numbers."""

    __slots__ = ("text", "amount")

    def __init__(self, text: str | int | float) -> None:
        if isinstance(text, bool):
            raise InvalidQuantityError(f"quantities must match the regular expression "
                                       f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}")
        if isinstance(text, (int, float)):
            text = str(text) if isinstance(text, int) else repr(text)
        self.text = text.strip() if isinstance(text, str) else text
        self.amount = parse_amount(self.text)

    def value(self) -> int:
        """Whole units, rounded up (bytes for memory, cores for cpu)."""
        return math.ceil(self.amount)

    def milli_value(self) -> int:
        """Thousandths, rounded up (millicores for cpu)."""
        return math.ceil(self.amount * 1000)

    def is_zero(self) -> bool:
        return self.amount == 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.amount == other.amount

    def __lt__(self, other: Quantity) -> bool:
        return self.amount < other.amount

    def __le__(self, other: Quantity) -> bool:
        return self.amount <= other.amount

    def __hash__(self) -> int:
        return hash(self.amount)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Quantity({self.text!r})"


def parse_amount(text: str) -> Decimal:
    match = _PATTERN.match(text) if isinstance(text, str) else None
    if not match:
        raise InvalidQuantityError(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}")
    try:
        number = Decimal(match["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules this out
        raise InvalidQuantityError(f"invalid quantity {text!r}") from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * Decimal(10) ** int(suffix[1:])
