"""The create-only APIs: TokenRequest (serviceaccounts/<name>/token), TokenReview and SubjectAccessReview."""

from __future__ import annotations

import datetime
import time
import uuid
from typing import Any

from . import errors as E
from .auth import API_AUDIENCES, ISSUER, Authorizer, ServiceAccountTokens, TokenTable, UserInfo
from .registry import Registry, WriteOptions
from .resources import BY_PATH
from .strategy import fmt_time, now

Obj = dict[str, Any]

TOKEN_REQUEST_RT = BY_PATH[("", "v1", "serviceaccounts")]


def token_request(reg: Registry, tokens: ServiceAccountTokens, namespace: str, name: str, body: Any,
                  opts: WriteOptions) -> Obj:
    """serviceaccounts/<name>/token: a bound, signed token for an existing service account."""
    tr = reg.decode_body(TOKEN_REQUEST_RT, body, opts, kind="TokenRequest")
    sa = reg.store.get(("/serviceaccounts", namespace, name))
    if sa is None:
        raise E.not_found("", "serviceaccounts", name)
    spec = tr.setdefault("spec", {})
    if not spec.get("audiences"):
        spec["audiences"] = list(API_AUDIENCES)
    exp = spec.setdefault("expirationSeconds", 3600)
    errs = []
    if not isinstance(exp, int) or exp < 600:
        errs.append(E.invalid("spec.expirationSeconds", exp, "may not specify a duration less than 10 minutes"))
    elif exp > 1 << 32:
        errs.append(E.invalid("spec.expirationSeconds", exp, "may not specify a duration larger than 2^32 seconds"))
    if errs:
        raise E.invalid_error("authentication.k8s.io", "TokenRequest", name, errs)
    issued = int(time.time())
    claims: Obj = {"aud": spec["audiences"], "exp": issued + exp, "iat": issued, "iss": ISSUER,
                   "jti": str(uuid.uuid4()), "nbf": issued, "sub": f"system:serviceaccount:{namespace}:{name}",
                   "kubernetes.io": {"namespace": namespace,
                                     "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}}}
    ref = spec.get("boundObjectRef")
    if ref:
        kind, api_version = ref.get("kind", ""), ref.get("apiVersion", "v1") or "v1"
        if api_version != "v1" or kind not in ("Pod", "Secret", "Node"):
            group = api_version.split("/")[0] if "/" in api_version else ""
            raise E.bad_request(f'cannot bind token for serviceaccount "{name}" to object of type '
                                f'{group + "/" if group else "/"}{api_version.split("/")[-1]}, Kind={kind}')
        if kind == "Node":
            obj = reg.store.get(("/nodes", "", ref.get("name", "")))
            res = "nodes"
        else:
            res = "pods" if kind == "Pod" else "secrets"
            obj = reg.store.get((f"/{res}", namespace, ref.get("name", "")))
        if obj is None:
            raise E.not_found("", res, ref.get("name", ""))
        if kind == "Pod" and (obj.get("spec") or {}).get("serviceAccountName") != name:
            raise E.bad_request(f'cannot bind token for serviceaccount "{name}" to pod running with different '
                                f'serviceaccount name.')
        uid = obj["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            raise E.conflict("", kind, ref["name"], f"the UID in the bound object reference ({ref['uid']}) does "
                                                    f"not match the UID in record. The object might have been "
                                                    f"deleted and then recreated")
        ref["uid"] = uid
        ref.setdefault("apiVersion", "v1")
        claims["kubernetes.io"][kind.lower()] = {"name": ref["name"], "uid": uid}
        if kind == "Pod" and (obj.get("spec") or {}).get("nodeName"):
            node = reg.store.get(("/nodes", "", obj["spec"]["nodeName"]))
            if node is not None:
                claims["kubernetes.io"]["node"] = {"name": obj["spec"]["nodeName"], "uid": node["metadata"]["uid"]}
    token = tokens.issue(claims)
    tr["metadata"] = {"name": name, "namespace": namespace, "creationTimestamp": fmt_time(now())}
    tr["status"] = {"token": token, "expirationTimestamp": fmt_time(
        datetime.datetime.fromtimestamp(issued + exp, datetime.timezone.utc))}
    return tr


def authenticate_token(reg: Registry, table: TokenTable, sa_tokens: ServiceAccountTokens,
                       token: str) -> tuple[UserInfo | None, list[str], str]:
    """(user, token audiences or [] when audience-agnostic, error text)."""
    user = table.lookup(token)
    if user is not None:
        return user, [], ""
    claims = sa_tokens.verify(token)
    if claims is None:
        return None, [], "invalid bearer token"
    k = claims.get("kubernetes.io") or {}
    ns = k.get("namespace", "")
    sa = (k.get("serviceaccount") or {})
    live = reg.store.get(("/serviceaccounts", ns, sa.get("name", "")))
    if live is None or live["metadata"]["uid"] != sa.get("uid"):
        return None, [], f"service account {ns}/{sa.get('name')} has been deleted"
    extra: dict[str, list[str]] = {"authentication.kubernetes.io/credential-id": [f"JTI={claims.get('jti')}"]}
    pod = k.get("pod")
    if pod:
        live_pod = reg.store.get(("/pods", ns, pod.get("name", "")))
        if live_pod is None or live_pod["metadata"]["uid"] != pod.get("uid"):
            return None, [], f"pod {ns}/{pod.get('name')} has been deleted"
        extra["authentication.kubernetes.io/pod-name"] = [pod["name"]]
        extra["authentication.kubernetes.io/pod-uid"] = [pod["uid"]]
    node = k.get("node")
    if node:
        extra["authentication.kubernetes.io/node-name"] = [node["name"]]
        extra["authentication.kubernetes.io/node-uid"] = [node["uid"]]
    user = UserInfo(f"system:serviceaccount:{ns}:{sa.get('name')}", sa.get("uid", ""),
                    ("system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"), extra)
    return user, list(claims.get("aud") or []), ""


def token_review(reg: Registry, table: TokenTable, sa_tokens: ServiceAccountTokens, body: Any,
                 opts: WriteOptions) -> Obj:
    rt = BY_PATH[("authentication.k8s.io", "v1", "tokenreviews")]
    review = reg.decode_body(rt, body, opts)
    spec = review.setdefault("spec", {})
    if not spec.get("token"):
        raise E.bad_request("token is required for TokenReview in authentication")
    wanted = spec.get("audiences") or list(API_AUDIENCES)
    user, token_aud, err = authenticate_token(reg, table, sa_tokens, spec["token"])
    status: Obj
    if user is not None and token_aud:
        common = [a for a in wanted if a in token_aud]
        if not common:
            user, err = None, f"token audiences {token_aud} is invalid for the target audiences {wanted}"
        else:
            wanted = common
    if user is None:
        status = {"user": {}, "error": "[invalid bearer token, " + err + "]" if err != "invalid bearer token"
                  else "invalid bearer token"}
    else:
        status = {"authenticated": True, "user": user.as_review(), "audiences": wanted}
    review["metadata"] = {"creationTimestamp": None}
    review["status"] = status
    return review


def subject_access_review(reg: Registry, authz: Authorizer, body: Any, opts: WriteOptions) -> Obj:
    rt = BY_PATH[("authorization.k8s.io", "v1", "subjectaccessreviews")]
    sar = reg.decode_body(rt, body, opts)
    spec = sar.get("spec") or {}
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    errs = []
    if ra is not None and nra is not None:
        errs.append(E.invalid("spec.nonResourceAttributes", nra, "cannot be specified in combination with "
                                                                 "resourceAttributes"))
    if ra is None and nra is None:
        errs.append(E.invalid("spec.resourceAttributes", None, "exactly one of nonResourceAttributes or "
                                                               "resourceAttributes must be specified"))
    if not spec.get("user") and not spec.get("groups"):
        errs.append(E.invalid("spec.user", spec.get("user", ""), "at least one of user or group must be specified"))
    if errs:
        raise E.invalid_error("authorization.k8s.io", "SubjectAccessReview", "", errs)
    user = UserInfo(spec.get("user", ""), spec.get("uid", ""), tuple(spec.get("groups") or ()))
    if ra is not None:
        allowed = authz.allowed(user, ra.get("verb", ""), ra.get("resource", ""), ra.get("subresource", ""))
    else:
        allowed = authz.allowed(user, nra.get("verb", ""), nra.get("path", ""), "")
    sar["metadata"] = {"creationTimestamp": None}
    sar["status"] = {"allowed": allowed}
    return sar
