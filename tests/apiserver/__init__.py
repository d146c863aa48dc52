"""A strict, in-repo Kubernetes API server double for tests (HTTPS, JSON, watch), test infrastructure only.

    from tests.apiserver import APIServerDouble
    with APIServerDouble(tmp_path) as srv:
        kubeconfig = srv.kubeconfig(tmp_path / "kubeconfig")

Modules: server (HTTP, routing, watch, control plane), registry (request semantics), store (versions,
events), resources (served kinds), strategy (decode/defaults/admission/prepare), validation, patch,
selectors, schema (known fields), auth, reviews (TokenRequest/TokenReview/SubjectAccessReview), certs,
errors (Status bodies). What is and is not checked: docs/decisions.md ("API server double")."""

from .errors import ApiStatusError
from .server import APIServerDouble, RequestRecord

__all__ = ["APIServerDouble", "ApiStatusError", "RequestRecord"]
