"""APIServerDouble: the HTTPS front (aiohttp.web in its own thread and event loop), request
routing as the API server's RequestInfo resolver does it, authn/authz filters, watch streaming,
and the synchronous control-plane methods tests call."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import errors as E
from . import reviews
from .auth import ADMIN, Authorizer, ServiceAccountTokens, TokenTable, UserInfo, forbidden_path_reason, \
    forbidden_reason, with_authenticated
from .certs import CertificateAuthority, identity_from_cert, write
from .registry import Registry, Selection, WriteOptions, parse_rv, selection
from .resources import BY_PATH, RESOURCES, ResourceType, by_kind, group_versions
from .store import Event, Store, Watcher

Obj = dict[str, Any]
BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
JSON = "application/json"
BODY_TYPES = ["application/json", "application/yaml"]
VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "gitCommit": "apiserver-double",
           "gitTreeState": "clean", "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5",
           "compiler": "gc", "platform": "linux/amd64"}


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    user: str
    status: int
    time: float


@dataclass
class RequestInfo:
    """What the API server's RequestInfoFactory resolves from a path and method."""
    resource_request: bool
    verb: str
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    rt: ResourceType | None = None
    path: str = ""
    selector_name: str = ""


def _json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type=JSON)
    for w in warnings or []:
        resp.headers.add("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return resp


def _error_response(err: E.ApiStatusError) -> web.Response:
    return _json_response(err.status, err.code)


def _accepts_json(accept: str) -> bool:
    if not accept.strip():
        return True
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        mtype = fields[0].lower()
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        if "as" in params or "g" in params:
            continue  # Table / PartialObjectMetadata / aggregated discovery: not served
        if params.get("q") == "0":
            continue
        if mtype in ("application/json", "*/*", "application/*", "application/json;stream=watch"):
            return True
    return False


class APIServerDouble:
    """A strict Kubernetes API server double over real HTTPS; see tests/apiserver/__init__.py."""

    def __init__(self, workdir: Path, *, bookmark_interval: float = 1.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bookmark_interval = bookmark_interval
        self._ca = CertificateAuthority()
        serving = self._ca.serving()
        self.ca_file = write(self.workdir / "apiserver-ca.crt", self._ca.cert_pem, 0o644)
        self._cert_file = write(self.workdir / "apiserver.crt", serving.cert_pem)
        self._key_file = write(self.workdir / "apiserver.key", serving.key_pem)
        self.tokens = TokenTable()
        self.authorizer = Authorizer()
        self.sa_tokens = ServiceAccountTokens()
        self._records: list[RequestRecord] = []
        self._records_lock = threading.Lock()
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._watch_tasks: set[asyncio.Task[Any]] = set()
        self._store: Store | None = None
        self._registry: Registry | None = None
        self._user_counter = 0

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> APIServerDouble:
        if self._thread is not None:
            raise RuntimeError("the API server double is already started")
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="apiserver-double", daemon=True)
        self._thread.start()
        ready.wait()
        self._call(self._init_state())
        self._call(self._listen())
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        try:
            self._call(self._unlisten())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None
            self._loop = None

    def pause(self) -> None:
        """An outage: stop listening and drop every open connection (open watches end abruptly)."""
        self._call(self._unlisten())

    def resume(self) -> None:
        self._call(self._listen())

    def compact(self) -> None:
        self._call(self._compact())

    def __enter__(self) -> APIServerDouble:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the API server double is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _init_state(self) -> None:
        self._store = Store()
        self._registry = Registry(self._store)
        self._registry.root_ca = self._ca.cert_pem.decode()
        ns_rt = BY_PATH[("", "v1", "namespaces")]
        for ns in BOOTSTRAP_NAMESPACES:
            self._registry.create(ns_rt, None, {"metadata": {"name": ns}}, WriteOptions())

    async def _listen(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=3 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        sslctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        sslctx.load_cert_chain(self._cert_file, self._key_file)
        sslctx.load_verify_locations(cafile=str(self.ca_file))
        sslctx.verify_mode = ssl.CERT_OPTIONAL
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(128)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        site = web.SockSite(runner, sock, ssl_context=sslctx)
        await site.start()
        self._runner = runner

    async def _unlisten(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        for task in list(self._watch_tasks):
            task.cancel()
        server = runner.server
        if server is not None:
            for handler in server.connections:
                transport = handler.transport
                if transport is not None:
                    transport.abort()
        await runner.cleanup()

    async def _compact(self) -> None:
        assert self._store is not None
        self._store.compact()

    # ---- identities, authorization, records ------------------------------------------------

    def add_token(self, token: str, user: str, groups: tuple[str, ...] | list[str] = ("system:authenticated",),
                  uid: str = "") -> None:
        self.tokens.add(token, user, groups, uid)

    def deny(self, subject: str, verb: str, resource: str, subresource: str = "") -> None:
        self.authorizer.deny(subject, verb, resource, subresource)

    def allow_all(self) -> None:
        self.authorizer.allow_all()

    @property
    def requests(self) -> list[RequestRecord]:
        with self._records_lock:
            return list(self._records)

    def kubeconfig(self, path: Path, *, user: str = "system:node:node1",
                   groups: tuple[str, ...] | list[str] = ("system:nodes", "system:authenticated"),
                   auth: str = "token") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        user_entry: Obj
        if auth == "token":
            self._user_counter += 1
            token = base64.urlsafe_b64encode(f"{user}:{self._user_counter}:{time.time_ns()}".encode()).decode()
            token = token.rstrip("=")
            self.add_token(token, user, groups)
            user_entry = {"token": token}
        elif auth == "cert":
            pair = self._ca.client(user, tuple(g for g in groups if g != "system:authenticated"))
            cert = write(path.with_name(path.name + ".client.crt"), pair.cert_pem)
            key = write(path.with_name(path.name + ".client.key"), pair.key_pem)
            user_entry = {"client-certificate": str(cert), "client-key": str(key)}
        else:
            raise ValueError(f"auth must be 'token' or 'cert', not {auth!r}")
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "double", "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self._ca.cert_pem).decode()}}],
            "users": [{"name": user, "user": user_entry}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": user}}],
            "current-context": "double",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # ---- control plane (synchronous, as system:admin) --------------------------------------

    def create(self, obj: Obj) -> Obj:
        async def go() -> Obj:
            rt = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            ns = (obj.get("metadata") or {}).get("namespace") or ("default" if rt.namespaced else None)
            return self._reg.create(rt, ns, obj, WriteOptions())
        return self._call(go())

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        async def go() -> Obj | None:
            rt = by_kind(api_version, kind)
            return self._store_.get(self._reg.key(rt, namespace, name))
        return self._call(go())

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        async def go() -> list[Obj]:
            rt = by_kind(api_version, kind)
            return self._store_.items(rt.id, namespace if rt.namespaced else None)
        return self._call(go())

    def update(self, obj: Obj) -> Obj:
        async def go() -> Obj:
            rt = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            meta = obj.get("metadata") or {}
            ns = meta.get("namespace") or ("default" if rt.namespaced else None)
            return self._reg.update(rt, ns, meta.get("name", ""), obj, "", WriteOptions())[0]
        return self._call(go())

    def patch(self, api_version: str, kind: str, namespace: str | None, name: str, patch: Any,
              content_type: str, subresource: str = "") -> Obj:
        body = patch if isinstance(patch, bytes) else json.dumps(patch).encode()

        async def go() -> Obj:
            rt = by_kind(api_version, kind)
            return self._reg.patch(rt, namespace, name, body, content_type, subresource, WriteOptions())
        return self._call(go())

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str, *,
               grace_period_seconds: int | None = None, preconditions: Obj | None = None) -> Obj | None:
        async def go() -> Obj | None:
            rt = by_kind(api_version, kind)
            opts: Obj = {}
            if grace_period_seconds is not None:
                opts["gracePeriodSeconds"] = grace_period_seconds
            if preconditions:
                opts["preconditions"] = preconditions
            result, _ = self._reg.delete(rt, namespace, name, opts)
            return result if result.get("kind") != "Status" else None
        return self._call(go())

    @property
    def _reg(self) -> Registry:
        assert self._registry is not None
        return self._registry

    @property
    def _store_(self) -> Store:
        assert self._store is not None
        return self._store

    # ---- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user: UserInfo | None = None
        status = 500
        try:
            user = self._authenticate(request)
            info = self._request_info(request)
            self._authorize(user, info)
            resp = await self._dispatch(request, user, info)
            status = resp.status
            return resp
        except E.ApiStatusError as err:
            status = err.code
            return _error_response(err)
        except asyncio.CancelledError:
            status = 0
            raise
        except (ConnectionError, RuntimeError) as exc:
            if request.transport is None or request.transport.is_closing():
                status = 0
                raise
            err = E.internal(f"Internal error occurred: {exc!r}")
            traceback.print_exc()
            status = 500
            return _error_response(err)
        except Exception as exc:  # a bug in the double: answer as the real server answers a plain error
            traceback.print_exc()
            status = 500
            return _error_response(E.internal(f"Internal error occurred: {exc!r}"))
        finally:
            rec = RequestRecord(request.method, request.path, dict(request.query),
                                request.headers.get("Content-Type", ""), user.name if user else "", status,
                                time.time())
            with self._records_lock:
                self._records.append(rec)

    def _authenticate(self, request: web.Request) -> UserInfo:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise E.unauthorized()
            user, _, _ = reviews.authenticate_token(self._reg, self.tokens, self.sa_tokens, token.strip())
            if user is None:
                raise E.unauthorized()
            return user
        sslobj = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if der:
            name, groups = identity_from_cert(der)
            return UserInfo(name, "", with_authenticated(groups))
        raise E.unauthorized()

    def _request_info(self, request: web.Request) -> RequestInfo:
        path = request.path
        method = request.method.upper()
        verb_for = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            return RequestInfo(False, verb_for.get(method, method.lower()), path=path)
        if parts[0] == "api":
            if len(parts) < 2:
                return RequestInfo(False, verb_for.get(method, method.lower()), path=path)
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) < 3:
                return RequestInfo(False, verb_for.get(method, method.lower()), path=path)
            group, version, rest = parts[1], parts[2], parts[3:]
        if not rest:
            return RequestInfo(False, verb_for.get(method, method.lower()), group=group, version=version, path=path)
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        elif rest[0] == "namespaces" and len(rest) >= 2:
            namespace = rest[1]
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        verb = verb_for.get(method, method.lower())
        watch = request.query.get("watch", "") in ("true", "1")
        if method in ("GET", "HEAD"):
            if watch:
                verb = "watch"
            elif not name:
                verb = "list"
        elif method == "DELETE" and not name:
            verb = "deletecollection"
        info = RequestInfo(True, verb, group, version, namespace, resource, sub, name, path=path)
        if verb in ("list", "watch") and not name:
            # RequestInfo takes the name of a list/watch from a metadata.name field selector
            for term in request.query.get("fieldSelector", "").split(","):
                k, op, v = term.partition("=")
                if k.strip() == "metadata.name" and op and not k.endswith("!"):
                    info.selector_name = v[1:] if v.startswith("=") else v
        info.rt = BY_PATH.get((group, version, resource))
        if len(rest) > 3:
            info.rt = None
        return info

    def _authorize(self, user: UserInfo, info: RequestInfo) -> None:
        if not info.resource_request:
            if not self.authorizer.allowed(user, info.verb, info.path, ""):
                raise E.forbidden("", "", "", forbidden_path_reason(user.name, info.verb, info.path))
            return
        if not self.authorizer.allowed(user, info.verb, info.resource, info.subresource):
            reason = forbidden_reason(user.name, info.verb, info.resource, info.subresource, info.group,
                                      info.namespace)
            raise E.forbidden(info.group, info.resource, info.name or info.selector_name, reason)

    async def _dispatch(self, request: web.Request, user: UserInfo, info: RequestInfo) -> web.StreamResponse:
        if not _accepts_json(request.headers.get("Accept", "")):
            raise E.not_acceptable("application/json, application/json;stream=watch")
        if not info.resource_request:
            return self._non_resource(request, info)
        rt = info.rt
        if rt is None:
            raise E.path_not_found()
        namespaced_path = bool(info.namespace) and rt.resource != "namespaces"
        if namespaced_path and not rt.namespaced:
            raise E.path_not_found()
        if rt.namespaced and not info.namespace and info.name:
            raise E.path_not_found()
        if info.subresource and info.subresource not in rt.subresources:
            raise E.path_not_found()
        method = request.method.upper()
        q = request.query
        ns = (info.namespace or None) if rt.namespaced else None
        opts = WriteOptions()
        fv = q.get("fieldValidation", "Warn") or "Warn"
        if fv not in ("Strict", "Warn", "Ignore"):
            raise E.bad_request(f'fieldValidation: Unsupported value: "{fv}": supported values: "Ignore", '
                                f'"Strict", "Warn"')
        opts.field_validation = fv
        dry = q.getall("dryRun", [])
        for d in dry:
            if d != "All":
                raise E.invalid_error("meta.k8s.io", "CreateOptions", "", [E.not_supported("dryRun", d, ("All",))])
        opts.dry_run = bool(dry)
        path_name = info.name

        if info.subresource == "token":
            if method != "POST":
                raise E.method_not_allowed()
            body = await self._body(request)
            return _json_response(reviews.token_request(self._reg, self.sa_tokens, info.namespace, path_name,
                                                        body, opts), 201, opts.warnings)
        if rt.virtual:
            if method != "POST" or path_name:
                raise E.method_not_allowed()
            body = await self._body(request)
            if rt.resource == "tokenreviews":
                out = reviews.token_review(self._reg, self.tokens, self.sa_tokens, body, opts)
            else:
                out = reviews.subject_access_review(self._reg, self.authorizer, body, opts)
            return _json_response(out, 201, opts.warnings)
        if info.subresource and method not in ("GET", "HEAD", "PUT", "PATCH"):
            raise E.method_not_allowed()
        if method in ("GET", "HEAD"):
            if info.verb == "watch":
                return await self._watch(request, rt, ns, path_name)
            if path_name:
                rv = q.get("resourceVersion", "")
                if rv and rv != "0":  # NotOlderThan: wait (up to 3 s) until the store has seen it
                    await self._reg.wait_for_rv(parse_rv(rv))
                return _json_response(self._reg.get(rt, ns, path_name))
            return _json_response(await self._reg.list(rt, ns, dict(q)))
        if method == "POST":
            if path_name:
                raise E.method_not_allowed()
            if rt.namespaced and not info.namespace:
                raise E.method_not_allowed()
            body = await self._body(request)
            return _json_response(self._reg.create(rt, ns, body, opts), 201, opts.warnings)
        if method == "PUT":
            if not path_name:
                raise E.method_not_allowed()
            body = await self._body(request)
            obj, created = self._reg.update(rt, ns, path_name, body, info.subresource, opts)
            return _json_response(obj, 201 if created else 200, opts.warnings)
        if method == "PATCH":
            if not path_name:
                raise E.method_not_allowed()
            raw = await request.read()
            obj = self._reg.patch(rt, ns, path_name, raw, request.headers.get("Content-Type", ""),
                                  info.subresource, opts)
            return _json_response(obj, 200, opts.warnings)
        if method == "DELETE":
            options = await self._delete_options(request)
            if not path_name:
                if "deletecollection" not in rt.verbs:
                    raise E.method_not_allowed()
                return _json_response(self._reg.delete_collection(rt, ns, dict(q), options, opts.dry_run))
            result, code = self._reg.delete(rt, ns, path_name, options, dry_run=opts.dry_run)
            return _json_response(result, code)
        raise E.method_not_allowed()

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        ctype = request.headers.get("Content-Type", "application/json").split(";", 1)[0].strip().lower()
        if ctype in ("", "application/json"):
            try:
                return json.loads(raw) if raw else None
            except (ValueError, UnicodeDecodeError) as exc:
                raise E.bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
        if ctype == "application/yaml":
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise E.bad_request(f"error converting YAML to JSON: {exc}") from None
        raise E.unsupported_media_type(BODY_TYPES)

    async def _delete_options(self, request: web.Request) -> Obj:
        raw = await request.read()
        options: Obj = {}
        if raw.strip():
            try:
                options = json.loads(raw)
            except ValueError as exc:
                raise E.bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
            if not isinstance(options, dict):
                raise E.bad_request("the object provided is unrecognized (must be of type DeleteOptions)")
            if options.get("kind") not in (None, "DeleteOptions"):
                raise E.bad_request(f'{options.get("kind")} in version "v1" cannot be handled as a DeleteOptions')
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError:
                raise E.bad_request(f'gracePeriodSeconds: Invalid value: "{q["gracePeriodSeconds"]}"') from None
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            options["orphanDependents"] = q["orphanDependents"] == "true"
        pp = options.get("propagationPolicy")
        if pp is not None and pp not in ("Orphan", "Background", "Foreground"):
            raise E.invalid_error("meta.k8s.io", "DeleteOptions", "", [E.not_supported(
                "propagationPolicy", pp, ("Foreground", "Background", "Orphan", "nil"))])
        return options

    # ---- discovery and health --------------------------------------------------------------

    def _non_resource(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        if request.method.upper() not in ("GET", "HEAD"):
            raise E.method_not_allowed() if info.path in ("/api", "/apis", "/version") else E.path_not_found()
        path = info.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return _json_response(VERSION)
        if path == "/api":
            return _json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self._port}"}]})
        if path == "/apis":
            groups = []
            for g, v in group_versions():
                gv = {"groupVersion": f"{g}/{v}", "version": v}
                groups.append({"name": g, "versions": [gv], "preferredVersion": gv})
            return _json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path == "/api/v1":
            return _json_response(self._resource_list("", "v1"))
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "apis":
            for g, v in group_versions():
                if g == parts[1]:
                    gv = {"groupVersion": f"{g}/{v}", "version": v}
                    return _json_response({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv],
                                           "preferredVersion": gv})
        if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in group_versions():
            return _json_response(self._resource_list(parts[1], parts[2]))
        raise E.path_not_found()

    @staticmethod
    def _resource_list(group: str, version: str) -> Obj:
        resources = []
        sub_verbs = {"status": ["get", "patch", "update"], "token": ["create"], "finalize": ["update"]}
        sub_kinds = {"token": ("authentication.k8s.io", "v1", "TokenRequest")}
        for r in RESOURCES:
            if (r.group, r.version) != (group, version):
                continue
            entry: Obj = {"name": r.resource, "singularName": r.singular, "namespaced": r.namespaced,
                          "kind": r.kind, "verbs": sorted(r.verbs)}
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            resources.append(entry)
            for sub in r.subresources:
                se: Obj = {"name": f"{r.resource}/{sub}", "singularName": "", "namespaced": r.namespaced,
                           "kind": r.kind, "verbs": sub_verbs[sub]}
                if sub in sub_kinds:
                    g, v, k = sub_kinds[sub]
                    se.update({"group": g, "version": v, "kind": k})
                resources.append(se)
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    # ---- watch -----------------------------------------------------------------------------

    async def _watch(self, request: web.Request, rt: ResourceType, namespace: str | None,
                     name: str) -> web.StreamResponse:
        q = request.query
        fs = q.get("fieldSelector", "")
        if name:
            fs = f"metadata.name={name}" + ("," + fs if fs else "")
        sel = selection(rt, namespace, q.get("labelSelector", ""), fs)
        rv_param = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks", "") in ("true", "1")
        send_initial = q.get("sendInitialEvents", "")
        match = q.get("resourceVersionMatch", "")
        errs = []
        if send_initial:
            if match != "NotOlderThan":
                errs.append(E.forbidden_field("resourceVersionMatch", "sendInitialEvents requires setting "
                                              "resourceVersionMatch to NotOlderThan"))
            if not bookmarks:
                errs.append(E.forbidden_field("allowWatchBookmarks", "sendInitialEvents requires setting "
                                              "allowWatchBookmarks to true"))
        elif match:
            errs.append(E.forbidden_field("resourceVersionMatch", "resourceVersionMatch is forbidden for watch "
                                          "unless sendInitialEvents is provided"))
        if errs:
            raise E.invalid_error("meta.k8s.io", "ListOptions", "", errs)
        timeout_s = q.get("timeoutSeconds", "")
        try:
            timeout = float(int(timeout_s)) if timeout_s and int(timeout_s) > 0 else None
        except ValueError:
            raise E.bad_request(f'timeoutSeconds: Invalid value: "{timeout_s}"') from None
        store = self._store_
        initial: list[Obj] = []
        backlog: list[Event] = []
        expired_msg = ""
        want_initial = send_initial in ("true", "1") or (not send_initial and rv_param in ("", "0"))
        if want_initial:
            initial = [o for o in store.items(rt.id, namespace) if sel.matches(rt, o)]
            start_rv = store.rv
            if rv_param not in ("", "0") and send_initial:
                start_rv = max(start_rv, parse_rv(rv_param))
        else:
            start_rv = parse_rv(rv_param) if rv_param else store.rv
            if start_rv < store.compacted:
                expired_msg = f"too old resource version: {start_rv} ({store.compacted})"
            else:
                backlog = store.events_since(rt.id, start_rv)
        watcher = Watcher(rt.id)
        if not expired_msg:
            store.add_watcher(watcher)
        task = asyncio.current_task()
        assert task is not None
        self._watch_tasks.add(task)
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            if expired_msg:
                await self._send(resp, "ERROR", E.expired(expired_msg).status)
                await resp.write_eof()
                return resp
            sent_rv = start_rv
            for obj in initial:
                await self._send(resp, "ADDED", obj)
            if send_initial in ("true", "1"):
                bm = self._bookmark(rt, store.rv if not backlog else start_rv)
                bm["metadata"]["annotations"] = {"k8s.io/initial-events-end": "true"}
                await self._send(resp, "BOOKMARK", bm)
            for ev in backlog:
                out = self._convert(rt, sel, ev)
                if out:
                    await self._send(resp, *out)
                sent_rv = ev.rv
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout is not None else None
            next_bookmark = loop.time() + self.bookmark_interval
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    break
                wait = None
                if deadline is not None:
                    wait = deadline - now
                if bookmarks:
                    wait = min(wait, max(0.0, next_bookmark - now)) if wait is not None else \
                        max(0.0, next_bookmark - now)
                try:
                    ev = await asyncio.wait_for(watcher.queue.get(), wait) if wait is not None else \
                        await watcher.queue.get()
                except asyncio.TimeoutError:
                    if bookmarks and loop.time() >= next_bookmark:
                        if watcher.queue.empty():
                            sent_rv = max(sent_rv, store.rv)
                        await self._send(resp, "BOOKMARK", self._bookmark(rt, sent_rv))
                        next_bookmark = loop.time() + self.bookmark_interval
                    continue
                if ev is None:
                    if watcher.expired:
                        await self._send(resp, "ERROR", E.expired(
                            "The resourceVersion for the provided watch is too old.").status)
                    break
                if ev.rv <= sent_rv:
                    continue
                out = self._convert(rt, sel, ev)
                if out:
                    await self._send(resp, *out)
                sent_rv = ev.rv
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            store.remove_watcher(watcher)
            self._watch_tasks.discard(task)
        return resp

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int) -> Obj:
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(rv)}}

    @staticmethod
    def _convert(rt: ResourceType, sel: Selection, ev: Event) -> tuple[str, Obj] | None:
        """The watch cache's filtering: selector transitions become ADDED / DELETED."""
        cur = ev.type != "DELETED" and sel.matches(rt, ev.obj)
        old = ev.prev is not None and sel.matches(rt, ev.prev)
        if cur and not old:
            return "ADDED", ev.obj
        if cur and old:
            return "MODIFIED", ev.obj
        if old:
            last = copy.deepcopy(ev.prev)
            last["metadata"]["resourceVersion"] = str(ev.rv)
            return "DELETED", last
        return None

    @staticmethod
    async def _send(resp: web.StreamResponse, etype: str, obj: Obj) -> None:
        await resp.write(json.dumps({"type": etype, "object": obj}, separators=(",", ":")).encode() + b"\n")
