"""The texts the kubelet writes when it evicts or refuses a pod
(pkg/kubelet/eviction/helpers.go evictionMessage, eviction_manager.go Admit).

Quantities print as Go's resource.Quantity.String() would (canonical form:
50Mi, 52428801, 123k), so messages match the kubelet's byte for byte.
"""

from __future__ import annotations

from decimal import Decimal

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import Pod

REASON = "Evicted"
NODE_LOW = "The node was low on resource: {}. "
THRESHOLD_MET = "Threshold quantity: {}, available: {}. "
CONTAINER_MSG = "Container {} was using {}, request is {}, has larger consumption of {}. "
NODE_CONDITION = "The node had condition: [{}]. "  # Go prints a []NodeConditionType as [a b]

_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T",
                     15: "P", 18: "E"}


def _decimal_si(amount: Decimal, exponent_form: bool = False) -> str:
    """Largest exponent (a multiple of 3) that leaves an integer mantissa."""
    if amount == 0:
        return "0"
    best = -9
    for exp in range(18, -10, -3):
        if (amount / (Decimal(10) ** exp)) == (amount / (Decimal(10) ** exp)).to_integral_value():
            best = exp
            break
    mantissa = amount / (Decimal(10) ** best)
    mantissa = mantissa.to_integral_value(rounding="ROUND_CEILING")  # below 1n: Go rounds up
    if exponent_form:
        return f"{mantissa}" + (f"e{best}" if best else "")
    return f"{mantissa}{_DECIMAL_SUFFIXES[best]}"


def format_bytes(value: int, binary: bool = True) -> str:
    """resource.NewQuantity(value, BinarySI|DecimalSI).String()."""
    return _format(Decimal(value), "binary" if binary else "decimal")


def _format(amount: Decimal, fmt: str) -> str:
    if fmt == "binary":
        if -1024 < amount < 1024 or amount != amount.to_integral_value():
            return _decimal_si(amount)
        n = int(amount)
        i = 0
        while i < len(_BINARY_SUFFIXES) - 1 and n % 1024 == 0:
            n //= 1024
            i += 1
        return f"{n}{_BINARY_SUFFIXES[i]}"
    return _decimal_si(amount, exponent_form=(fmt == "exponent"))


def format_quantity(q: Quantity | None) -> str:
    """A parsed quantity's String(): the format its suffix chose, canonicalised."""
    if q is None:
        return "0"
    text = q.text if isinstance(q.text, str) else str(q.text)
    tail = text.lstrip("+-0123456789.")
    if tail[:1] in ("e", "E"):
        fmt = "exponent"
    elif tail.endswith("i"):
        fmt = "binary"
    else:
        fmt = "decimal"
    return _format(q.amount, fmt)


def eviction_message(resource: str, pod: Pod, threshold_bytes: int | None,
                     available: int | None, binary: bool,
                     container_usage: dict[str, int] | None) -> tuple[str, dict[str, str]]:
    """evictionMessage: the starved resource, the threshold, and each container
    using more than it requested (memory and ephemeral-storage only)."""
    message = NODE_LOW.format(resource)
    annotations: dict[str, str] = {}
    if threshold_bytes is not None and available is not None:
        message += THRESHOLD_MET.format(format_bytes(threshold_bytes, binary),
                                        format_bytes(available, binary))
    if container_usage is None:
        return message, annotations
    offending: list[str] = []
    usages: list[str] = []
    for name, used in container_usage.items():
        spec = next((c for c in [*pod.spec.containers, *pod.spec.init_containers]
                     if c.name == name), None)
        if spec is None:
            continue
        request = spec.resources.requests.get(resource)
        if used > (request.value() if request is not None else 0):
            message += CONTAINER_MSG.format(name, format_bytes(used), format_quantity(request),
                                            resource)
            offending.append(name)
            usages.append(format_bytes(used))
    annotations["offending_containers"] = ",".join(offending)
    annotations["offending_containers_usage"] = ",".join(usages)
    annotations["starved_resource"] = resource
    return message, annotations


def admission_message(conditions: list[str]) -> str:
    return NODE_CONDITION.format(" ".join(conditions))
