"""Typed CRI errors.

Callers decide by type, not by parsing strings: a pod worker retries on
`RuntimeUnavailable`, treats `NotFoundError` on delete as done, and reports
`InvalidRequestError` as a pod error instead of retrying forever.
"""

from __future__ import annotations

import grpc


class CRIError(Exception):
    """A CRI call failed; `method` and `endpoint` say which call went where."""

    def __init__(self, message: str, *, method: str = "", endpoint: str = "",
                 code: grpc.StatusCode | None = None, details: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.endpoint = endpoint
        self.code = code
        self.details = details


class RuntimeUnavailable(CRIError):
    """The runtime cannot be reached now (missing socket, refused, died mid-call).

    Transient by nature: the caller may retry later.
    """


class NotCRIEndpoint(CRIError):
    """Something answers on the socket, but it does not speak CRI runtime.v1."""


class UnsupportedRuntime(CRIError):
    """The runtime speaks CRI, but not a version nodeagent can use."""


class NotFoundError(CRIError):
    """The sandbox, container or image named in the request does not exist."""


class InvalidRequestError(CRIError):
    """The runtime refused the request as invalid; retrying will not help."""


class AlreadyExistsError(CRIError):
    """A sandbox or container with the same name already exists."""


class DeadlineExceeded(CRIError):
    """The call did not complete within its deadline."""


_BY_CODE: dict[grpc.StatusCode, type[CRIError]] = {
    grpc.StatusCode.UNAVAILABLE: RuntimeUnavailable,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequestError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: NotCRIEndpoint,
}

# containerd 1.6 returns most errors as UNKNOWN (it wraps Go errors without a
# gRPC code); these texts are stable across 1.6/1.7/2.x and are the only way to
# tell a caller "this will never work" from "try again". Checked in order.
_UNKNOWN_TEXTS: tuple[tuple[str, type[CRIError]], ...] = (
    # The CRI plugin answers before it has recovered its state after a
    # (re)start: a few ms, seen as a flaky "did not become ready".
    ("server is not initialized yet", RuntimeUnavailable),
    ("is reserved for", AlreadyExistsError),          # sandbox/container name in use
    ("invalid reference format", InvalidRequestError),  # image reference
    ("must include metadata", InvalidRequestError),
    ("no runtime for", InvalidRequestError),          # unknown runtime_handler
    ("not found", NotFoundError),
    ("does not exist", NotFoundError),
)


def from_rpc_error(err: grpc.aio.AioRpcError | grpc.RpcError, *, method: str,
                   endpoint: str) -> CRIError:
    """Map a gRPC status to the typed error a caller can act on."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else "") or ""
    cls = _BY_CODE.get(code)
    if cls is None and code == grpc.StatusCode.UNKNOWN:
        lowered = details.lower()
        cls = next((c for text, c in _UNKNOWN_TEXTS if text in lowered), None)
    cls = cls or CRIError
    if cls is NotCRIEndpoint:
        message = (f"{endpoint}: {method} is not implemented there; "
                   f"is this a CRI runtime.v1 socket? ({details})")
    elif cls is RuntimeUnavailable:
        message = f"{endpoint}: container runtime unavailable during {method}: {details}"
    elif cls is DeadlineExceeded:
        message = f"{endpoint}: {method} did not finish before its deadline"
    else:
        message = f"{endpoint}: {method} failed ({code.name}): {details}"
    return cls(message, method=method, endpoint=endpoint, code=code, details=details)
