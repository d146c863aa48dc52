"""metav1.Status errors with the API server's codes, reasons and message formats.

Every failure the double answers is an ApiStatusError; the HTTP layer writes its
`status` dict, the control-plane methods raise it to test code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class ApiStatusError(Exception):
    """A failure as the API server reports it: HTTP code, reason, message and the Status body."""

    def __init__(self, code: int, reason: str, message: str, status: dict[str, Any] | None = None):
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status if status is not None else status_body(code, reason, message)


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                list_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A metav1.Status in the field order the API server marshals it."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": list_meta or {},
                            "status": "Failure", "message": message}
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def _err(code: int, reason: str, message: str, details: dict[str, Any] | None = None,
         list_meta: dict[str, Any] | None = None) -> ApiStatusError:
    return ApiStatusError(code, reason, message, status_body(code, reason, message, details, list_meta))


def qualified(group: str, resource: str) -> str:
    """schema.GroupResource.String(): `pods`, `leases.coordination.k8s.io`."""
    return f"{resource}.{group}" if group else resource


def _details(group: str, kind: str, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def not_found(group: str, resource: str, name: str) -> ApiStatusError:
    return _err(404, "NotFound", f'{qualified(group, resource)} "{name}" not found',
                _details(group, resource, name))


def path_not_found() -> ApiStatusError:
    return _err(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(group: str, resource: str, name: str) -> ApiStatusError:
    return _err(409, "AlreadyExists", f'{qualified(group, resource)} "{name}" already exists',
                _details(group, resource, name))


def conflict(group: str, resource: str, name: str, why: str) -> ApiStatusError:
    return _err(409, "Conflict", f'Operation cannot be fulfilled on {qualified(group, resource)} "{name}": {why}',
                _details(group, resource, name))


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def bad_request(message: str) -> ApiStatusError:
    return _err(400, "BadRequest", message)


def method_not_allowed() -> ApiStatusError:
    return _err(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def unsupported_media_type(accepted: list[str]) -> ApiStatusError:
    return _err(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media "
                "types include: " + ", ".join(accepted))


def not_acceptable(accepted: str) -> ApiStatusError:
    return _err(406, "NotAcceptable", f"only the following media types are accepted: {accepted}")


def unauthorized() -> ApiStatusError:
    return _err(401, "Unauthorized", "Unauthorized")


def forbidden(group: str, resource: str, name: str, why: str) -> ApiStatusError:
    """apierrors.NewForbidden: details.kind is the resource, as the real server sends it."""
    if not resource:
        msg = f"forbidden: {why}"
    elif name:
        msg = f'{qualified(group, resource)} "{name}" is forbidden: {why}'
    else:
        msg = f"{qualified(group, resource)} is forbidden: {why}"
    return _err(403, "Forbidden", msg, _details(group, resource, name))


def expired(message: str, list_meta: dict[str, Any] | None = None) -> ApiStatusError:
    return _err(410, "Expired", message, None, list_meta)


def gone(message: str) -> ApiStatusError:
    return _err(410, "Gone", message)


def timeout_too_large(rv: int, current: int) -> ApiStatusError:
    msg = f"Too large resource version: {rv}, current: {current}"
    return _err(504, "Timeout", msg, {"causes": [{"reason": "ResourceVersionTooLarge", "message": msg}],
                                      "retryAfterSeconds": 1})


def internal(message: str) -> ApiStatusError:
    """A plain Go error reaching the handler: 500 with an empty reason."""
    return _err(500, "", message)


def not_implemented(message: str) -> ApiStatusError:
    return _err(501, "NotImplemented", message)


def unprocessable(message: str) -> ApiStatusError:
    """errors.NewGenericServerResponse(422, ...) as the patch handlers use it."""
    return _err(422, "Invalid", message)


# ---- field.ErrorList → 422 Invalid ------------------------------------------------------------

CAUSE = {"Required": "FieldValueRequired", "Invalid": "FieldValueInvalid", "NotSupported": "FieldValueNotSupported",
         "Forbidden": "FieldValueForbidden", "Duplicate": "FieldValueDuplicate", "TooLong": "FieldValueTooLong",
         "TooMany": "FieldValueTooMany", "NotFound": "FieldValueNotFound"}


def go_value(value: Any) -> str:
    """How field.Error prints a bad value (%q for strings, %d for numbers, JSON-ish for the rest)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass
class FieldError:
    """One field.Error: type (Required, Invalid, ...), path, bad value, detail."""
    type: str
    field: str
    value: Any = None
    detail: str = ""
    supported: tuple[str, ...] = ()

    def body(self) -> str:
        if self.type == "Required":
            s = "Required value"
        elif self.type == "Forbidden":
            s = "Forbidden"
        elif self.type == "TooLong":
            s = "Too long"
        elif self.type == "TooMany":
            s = "Too many"
        elif self.type == "Duplicate":
            s = f"Duplicate value: {go_value(self.value)}"
        elif self.type == "NotSupported":
            s = f"Unsupported value: {go_value(self.value)}"
            if self.supported:
                s += ": supported values: " + ", ".join(json.dumps(v) for v in self.supported)
        elif self.type == "NotFound":
            s = f"Not found: {go_value(self.value)}"
        else:
            s = f"Invalid value: {go_value(self.value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required", field, None, detail)


def invalid(field: str, value: Any, detail: str = "") -> FieldError:
    return FieldError("Invalid", field, value, detail)


def forbidden_field(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, None, detail)


def not_supported(field: str, value: Any, supported: tuple[str, ...]) -> FieldError:
    return FieldError("NotSupported", field, value, "", supported)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("Duplicate", field, value)


def too_long(field: str, limit: int) -> FieldError:
    return FieldError("TooLong", field, None, f"may not be more than {limit} bytes")


def invalid_error(group: str, kind: str, name: str, errs: list[FieldError]) -> ApiStatusError:
    """apierrors.NewInvalid: `Pod "x" is invalid: [a: ..., b: ...]` with one cause per field error."""
    what = f"{kind}.{group}" if group else kind
    if len(errs) == 1:
        agg = str(errs[0])
    else:
        agg = "[" + ", ".join(str(e) for e in errs) + "]"
    causes = [{"reason": CAUSE.get(e.type, "FieldValueInvalid"), "message": e.body(), "field": e.field}
              for e in errs]
    details = _details(group, kind, name)
    details["causes"] = causes
    return _err(422, "Invalid", f'{what} "{name}" is invalid: {agg}', details)
