"""Pod manifests (static pod files) -> validated, defaulted Pods.

A file holds YAML or JSON, possibly several YAML documents separated by
`---`. Each document is a Pod (apiVersion v1), or a PodList/List whose items
are Pods. Every document is handled on its own: decode, apply_defaults,
validate_pod (+ validate_static_pod for static pods). A bad document yields
one ManifestError listing all its problems ("; "-separated) and never stops
the good documents of the same file, so one typo does not take down every
static pod defined next to it.

Unknown fields are warnings, not errors, like the API server's non-strict
decoding. In static manifests `status` is dropped with a warning: the agent
owns pod status, and a recorded `status.qosClass` would otherwise override
the computed QoS class (GetPodQOS reads status first). YAML timestamps stay
strings, as sigs.k8s.io/yaml leaves them.

Hostile or broken input must not hang or crash the agent, so work is bounded:
  * files over MAX_MANIFEST_BYTES are refused unread;
  * at most MAX_FILE_NODES YAML nodes are parsed per file (every document
    counts one more), so neither huge mappings nor millions of "---" can
    keep the (slow, pure-Python) parser busy for minutes;
  * a document whose decoded tree, YAML aliases expanded, has more than
    MAX_DOCUMENT_NODES values is refused before it is walked ("billion
    laughs");
  * flow nesting ([ / {) deeper than MAX_FLOW_NESTING is refused before
    parsing, since PyYAML's scanner is quadratic in that depth, and deeper
    block nesting ends in RecursionError: "document nests too deeply".
libyaml's binding composes nodes recursively in C and crashes the whole
process on deeply nested input, so its composer is never used. Its parser,
which is iterative, produces the events (10x faster than PyYAML's scanner)
and the Python composer, with the node budget and RecursionError guard,
builds the nodes. A document with a YAML error is parsed again by the pure
Python loader, whose messages name the problem the way users know it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from nodeagent.api.codec import DecodeError, decode_with_warnings
from nodeagent.api.defaults import DEFAULT_NAMESPACE, apply_defaults
from nodeagent.api.types import Pod, PodStatus
from nodeagent.api.validation import validate_pod, validate_static_pod

MAX_MANIFEST_BYTES = 10 * 1024 * 1024
# A typical pod is a few hundred nodes, so this allows hundreds of pods per
# file while capping PyYAML (~45 µs a node) at a few seconds.
MAX_FILE_NODES = 100_000
MAX_DOCUMENT_NODES = 200_000
# Real pods nest a dozen levels deep.
MAX_FLOW_NESTING = 100
API_VERSION = "v1"
POD_KIND = "Pod"
LIST_KINDS = ("PodList", "List")
ERROR_SEPARATOR = "; "

# A line that starts or ends a YAML document ("---", "--- {…}", "...").
_DOC_MARKER = re.compile(r"^(---|\.\.\.)(?:[ \t\r]|$)")
_FLOW_BRACKET = re.compile(r"[\[\]{}]")


@dataclass(frozen=True)
class ManifestError:
    """Why one document (or the whole file, document 0) was rejected."""

    source: str
    document: int  # 1-based; 0 = the file as a whole
    pod: str | None  # "namespace/name" when known
    message: str

    def __str__(self) -> str:
        parts = [self.source]
        if self.document:
            parts.append(f"document {self.document}")
        if self.pod:
            parts.append(f'pod "{self.pod}"')
        parts.append(self.message)
        return ": ".join(parts)


@dataclass
class ManifestResult:
    pods: list[tuple[int, Pod]] = field(default_factory=list)  # (document, pod)
    errors: list[ManifestError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _DocumentError(Exception):
    """A document cannot be turned into a pod; the message says why."""

    def __init__(self, message: str, pod: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pod = pod


class _BudgetExhausted(Exception):
    """The file holds more YAML than MAX_FILE_NODES allows."""


@dataclass
class _Budget:
    """YAML nodes the rest of this file may still parse."""

    remaining: int = MAX_FILE_NODES

    def spend(self, nodes: int = 1) -> None:
        self.remaining -= nodes
        if self.remaining < 0:
            raise _BudgetExhausted


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings and charges every node."""

    def __init__(self, stream: str, budget: _Budget) -> None:
        super().__init__(stream)
        self.budget = budget

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.budget.spend()
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class _FastLoader(yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor,
                      yaml.resolver.Resolver):
        """libyaml's (iterative) parser for events; Python's composer, constructor
        and resolver above it, so the same budget and guards apply."""

        def __init__(self, stream: str, budget: _Budget) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self.budget = budget

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.budget.spend()
            return super().compose_node(parent, index)

    _FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    _LOADERS: tuple[type, ...] = (_FastLoader, _Loader)
else:  # pragma: no cover - PyYAML built without libyaml
    _LOADERS = (_Loader,)


def parse_manifest(data: str | bytes, source: str, *, static: bool = True) -> ManifestResult:
    """All pods in a manifest file, plus one error per rejected document."""
    result = ManifestResult()
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_MANIFEST_BYTES:
        result.errors.append(ManifestError(
            source, 0, None, f"file is {size} bytes, larger than the "
                             f"{MAX_MANIFEST_BYTES // (1024 * 1024)} MiB limit for manifests"))
        return result
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            result.errors.append(ManifestError(
                source, 0, None, f"file is not UTF-8 text (invalid byte at offset {exc.start})"))
            return result
    else:
        text = data.removeprefix("\ufeff")

    for number, loaded in _documents(text):
        if isinstance(loaded, _DocumentError):
            result.errors.append(ManifestError(source, number, loaded.pod, loaded.message))
        elif loaded is not None:  # None: an empty document
            _handle_document(loaded, number, source, static, result)
    return result


# -- splitting and loading ------------------------------------------------------------


def _documents(text: str) -> list[tuple[int, Any]]:
    """(document number, loaded data or _DocumentError) for each document."""
    if not text.lstrip().startswith(("{", "[")):
        return list(_yaml_documents(text))
    # Looks like JSON: parse it as JSON, for JSON's error positions. JSON is
    # YAML, so flow-style YAML such as {a: 1} still gets a YAML attempt.
    try:
        return [(1, _checked(json.loads(text)))]
    except _DocumentError as exc:
        return [(1, exc)]
    except RecursionError:
        return [(1, _DocumentError("document nests too deeply"))]
    except json.JSONDecodeError as exc:
        json_error = _DocumentError(
            f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    docs = list(_yaml_documents(text))
    if len(docs) == 1 and isinstance(docs[0][1], _DocumentError) \
            and docs[0][1].message.startswith("YAML syntax error"):
        return [(1, json_error)]
    return docs


def _yaml_documents(text: str) -> Iterator[tuple[int, Any]]:
    budget = _Budget()
    for number, (first_line, chunk, has_content) in enumerate(_split_yaml(text), start=1):
        try:
            budget.spend()
            yield number, (_load_yaml(chunk, first_line, budget) if has_content else None)
        except _BudgetExhausted:
            yield number, _DocumentError(
                f"the file holds more than {MAX_FILE_NODES} YAML nodes; this document and "
                f"any after it were not read")
            return


def _split_yaml(text: str) -> Iterator[tuple[int, str, bool]]:
    """(first line number, text, has content) per YAML document, lazily.

    Documents are split on their markers and parsed one by one so a syntax
    error in one cannot hide the others (a YAML stream parser stops at its
    first error). A "---" always starts a document (possibly empty); text
    before the first "---" or after a "..." is one only if it holds more
    than blanks and comments.
    """
    start, body, explicit = 1, [], False
    lines = text.split("\n")
    for lineno, line in enumerate(lines, start=1):
        if lineno < len(lines):
            line += "\n"
        marker = _DOC_MARKER.match(line)
        if marker is None:
            body.append(line)
            continue
        yield from _finished_chunk(start, body, explicit)
        if marker.group(1) == "---":
            start, body, explicit = lineno, [line], True  # "--- {a: 1}" carries content
        else:
            start, body, explicit = lineno + 1, [], False  # "..." ends a document
    yield from _finished_chunk(start, body, explicit)


def _finished_chunk(start: int, body: list[str], explicit: bool) -> Iterator[tuple[int, str, bool]]:
    chunk = "".join(body)
    content = _has_content(chunk[3:] if explicit else chunk)
    if explicit or content:
        yield start, chunk, content


def _has_content(chunk: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in chunk.split("\n"))


def _load_yaml(chunk: str, first_line: int, budget: _Budget) -> Any:
    """The document's data, or a _DocumentError saying why there is none."""
    if _flow_nesting_exceeds(chunk, MAX_FLOW_NESTING):
        return _DocumentError(f"document nests too deeply (more than {MAX_FLOW_NESTING} "
                              f"levels of [ and {{)")
    if len(_LOADERS) > 1:
        remaining = budget.remaining
        fast = _LOADERS[0](chunk, budget)
        try:
            return _checked(fast.get_single_data())
        except yaml.YAMLError:
            budget.remaining = remaining  # the pure-Python loader says what is wrong
        except (_DocumentError, RecursionError):
            pass  # handled below exactly as the pure-Python loader's
        finally:
            fast.dispose()
    loader = _Loader(chunk, budget)
    try:
        return _checked(loader.get_single_data())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = (f" at line {mark.line + first_line}, column {mark.column + 1}"
                 if mark is not None else "")
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}: {problem}"
        return _DocumentError(f"YAML syntax error{where}: {problem}")
    except yaml.YAMLError as exc:
        return _DocumentError(f"YAML error: {exc}")
    except _DocumentError as exc:
        return exc
    except RecursionError:
        return _DocumentError("document nests too deeply")
    finally:
        loader.dispose()


def _flow_nesting_exceeds(chunk: str, limit: int) -> bool:
    """An upper bound of the flow nesting depth goes past `limit`.

    Brackets inside strings count too, which only makes the bound looser;
    stopping at the limit keeps this linear even on a file of "[".
    """
    depth = 0
    for match in _FLOW_BRACKET.finditer(chunk):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        elif depth:
            depth -= 1
    return False


def _checked(loaded: Any) -> Any:
    """Refuse documents that expand to too many values (YAML alias bombs)."""
    count = 0
    stack = [loaded]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_DOCUMENT_NODES:
            raise _DocumentError(
                f"document expands to more than {MAX_DOCUMENT_NODES} values "
                f"(YAML aliases expanding too far?); refusing it")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return loaded


# -- one document ------------------------------------------------------------------------


def _handle_document(doc: Any, number: int, source: str, static: bool,
                     result: ManifestResult) -> None:
    try:
        items = _pod_objects(doc)
    except _DocumentError as exc:
        result.errors.append(ManifestError(source, number, exc.pod, exc.message))
        return
    for where, obj, kind_required in items:
        try:
            pod, warnings = _to_pod(obj, where, static, kind_required)
        except _DocumentError as exc:
            result.errors.append(ManifestError(source, number, exc.pod, exc.message))
            continue
        pod_id = pod.full_name
        result.warnings.extend(str(ManifestError(source, number, pod_id, w)) for w in warnings)
        result.pods.append((number, pod))


def _pod_objects(doc: Any) -> list[tuple[str, Any, bool]]:
    """(where, object, kind required) for each pod the document holds.

    `where` is "" for a Pod document, "items[i]" for a list item. PodList
    items may omit kind/apiVersion (their type is known), List items may not.
    """
    if not isinstance(doc, dict):
        raise _DocumentError(f"document is {_describe(doc)}, not an object")
    kind = doc.get("kind")
    if kind in LIST_KINDS:
        _check_api_version(doc, kind)
        items = doc.get("items")
        if items is None:
            return []
        if not isinstance(items, list):
            raise _DocumentError(f"items is {_describe(items)}, not a list of pods")
        return [(f"items[{i}]", item, kind == "List") for i, item in enumerate(items)]
    _check_kind(doc, "")
    return [("", doc, True)]


def _check_kind(obj: dict[str, Any], where: str, *, required: bool = True) -> None:
    prefix = f"{where}: " if where else ""
    kind = obj.get("kind")
    if kind is None:
        if required:
            raise _DocumentError(f'{prefix}kind is missing, a manifest must set kind "{POD_KIND}"')
    elif not isinstance(kind, str):
        raise _DocumentError(f"{prefix}kind must be a string, not {_describe(kind)}")
    elif kind != POD_KIND:
        # Not a pod, so no "pod ..." label even if it has a name.
        raise _DocumentError(f'{prefix}kind is "{kind}", only "{POD_KIND}" is supported in a manifest')
    _check_api_version(obj, kind or POD_KIND, where, required=required)


def _check_api_version(obj: dict[str, Any], kind: str, where: str = "", *,
                       required: bool = True) -> None:
    prefix = f"{where}: " if where else ""
    version = obj.get("apiVersion")
    if version is None:
        if required:
            raise _DocumentError(f'{prefix}apiVersion is missing, {kind} needs apiVersion "{API_VERSION}"',
                                 _pod_id(obj))
    elif not isinstance(version, str):
        raise _DocumentError(f"{prefix}apiVersion must be a string, not {_describe(version)}",
                             _pod_id(obj))
    elif version != API_VERSION:
        raise _DocumentError(f'{prefix}apiVersion "{version}" is not supported, {kind} needs '
                             f'apiVersion "{API_VERSION}"', _pod_id(obj))


def _to_pod(obj: Any, where: str, static: bool, kind_required: bool) -> tuple[Pod, list[str]]:
    prefix = f"{where}." if where else ""
    if not isinstance(obj, dict):
        raise _DocumentError(f"{where or 'document'} is {_describe(obj)}, not an object")
    if where:
        _check_kind(obj, where, required=kind_required)
    pod_id = _pod_id(obj)
    try:
        pod, warnings = decode_with_warnings(Pod, obj, where)
    except DecodeError as exc:
        raise _DocumentError(str(exc), pod_id) from None
    if static and pod.status != PodStatus():
        warnings.append(f"{prefix}status: ignored, the node agent owns the status of static pods")
        pod.status = PodStatus()
    apply_defaults(pod)
    errors = validate_pod(pod)
    if static:
        errors += validate_static_pod(pod)
    if errors:
        messages = [f"{prefix}{e}" for e in errors]
        raise _DocumentError(ERROR_SEPARATOR.join(messages), pod.full_name if pod.metadata.name else None)
    return pod, warnings


def _pod_id(obj: Any) -> str | None:
    """namespace/name from raw data, for errors raised before decoding works."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        return None
    namespace = meta.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        namespace = DEFAULT_NAMESPACE
    return f"{namespace}/{meta['name']}"


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "empty"
    return f"a {type(value).__name__}"
