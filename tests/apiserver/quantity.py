"""resource.Quantity as the API server decodes and re-encodes it: parse (400 on bad syntax or suffix),
round up to nano precision, and print in canonical form ("2000m" -> "2", "1.5Gi" -> "1536Mi",
"1000" -> "1k"), keeping the binary / decimal SI / exponent format of the input."""

from __future__ import annotations

import math
import re
from fractions import Fraction

_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BIN_SUFFIX = {v: k for k, v in _BINARY.items()}
MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


class QuantityError(ValueError):
    pass


def parse(text: str) -> tuple[Fraction, str]:
    """(value, format) with format "BinarySI", "DecimalSI" or "DecimalExponent"."""
    m = _RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise QuantityError(MSG)
    num, suffix = m.groups()
    if num.count(".") > 1 or num.strip("+-") in ("", "."):
        raise QuantityError(MSG)
    try:
        value = Fraction(num)
    except ValueError:
        raise QuantityError(MSG) from None
    if suffix in _BINARY:
        value *= 2 ** _BINARY[suffix]
        fmt = "BinarySI"
    elif suffix in _DECIMAL:
        value *= Fraction(10) ** _DECIMAL[suffix]
        fmt = "DecimalSI"
    elif re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
        value *= Fraction(10) ** int(suffix[1:])
        fmt = "DecimalExponent"
    else:
        raise QuantityError("unable to parse quantity's suffix")
    nanos = value * 10**9
    rounded = Fraction(math.ceil(nanos) if nanos >= 0 else -math.ceil(-nanos), 10**9)
    return rounded, fmt


def canonical(text: str) -> str:
    value, fmt = parse(text)
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mag = abs(value)
    if fmt == "BinarySI":
        if mag < 1024 or mag.denominator != 1:
            fmt = "DecimalSI"
        else:
            n, exp = int(mag), 0
            while n % 1024 == 0 and exp < 60:
                n //= 1024
                exp += 10
            return f"{sign}{n}{_BIN_SUFFIX.get(exp, '')}"
    exp = -9
    mantissa = mag * 10**9
    while mantissa.denominator == 1 and mantissa % 1000 == 0 and exp < 18:
        mantissa /= 1000
        exp += 3
    if fmt == "DecimalExponent" or exp not in _DEC_SUFFIX:
        return f"{sign}{int(mantissa)}" + (f"e{exp}" if exp else "")
    return f"{sign}{int(mantissa)}{_DEC_SUFFIX[exp]}"
