"""API-server defaulting for pods that never went through an API server.

Static pods are read straight from files, so nothing has filled in the
defaults the rest of the agent relies on (a pull policy, a restart policy,
probe periods …). `apply_defaults` does what k8s pkg/apis/core/v1/defaults.go
(SetObjectDefaults_Pod) does, so a static pod behaves like the same pod
created through the API. It only fills unset fields; it never overrides.

Defaulted, in the pod:
  * metadata.namespace "default" (the kubelet's file source does this)
  * spec.restartPolicy Always, spec.dnsPolicy ClusterFirst,
    spec.terminationGracePeriodSeconds 30, spec.schedulerName
    "default-scheduler", spec.securityContext {}, spec.enableServiceLinks true
  * with spec.hostNetwork, each port's hostPort = containerPort when unset
In every container and init container:
  * imagePullPolicy: Always if the image's tag is "latest" or it has neither
    tag nor digest, else IfNotPresent; an image that does not parse keeps
    the empty policy and is reported by validation
  * terminationMessagePath "/dev/termination-log", terminationMessagePolicy File
  * ports[].protocol TCP
  * resources.requests[r] = resources.limits[r] for each limit without a request
  * resource quantities finer than a milli-unit are rounded up to milli-units
  * liveness/readiness/startup probes: timeoutSeconds 1, periodSeconds 10,
    successThreshold 1, failureThreshold 3
  * every httpGet (probes and lifecycle hooks): path "/", scheme HTTP
  * env[].valueFrom.fieldRef.apiVersion "v1"
In volumes:
  * a volume with no source becomes emptyDir {}
  * hostPath.type None -> "" (no check)
  * configMap/secret/downwardAPI/projected defaultMode 420 (0644)
  * downwardAPI items' fieldRef.apiVersion "v1" (also inside projections)
  * projected serviceAccountToken.expirationSeconds 3600
(emptyDir.medium already defaults to "" by construction.)
"""

from __future__ import annotations

import math

from nodeagent.api.quantity import Quantity
from nodeagent.api.types import (
    Container,
    DownwardAPIVolumeFile,
    EmptyDirVolumeSource,
    HTTPGetAction,
    Lifecycle,
    Pod,
    PodSecurityContext,
    Probe,
    Volume,
    unsupported_sources,
)
from nodeagent.oci.reference import DEFAULT_TAG, InvalidReferenceError, parse_reference

DEFAULT_NAMESPACE = "default"
DEFAULT_RESTART_POLICY = "Always"
DEFAULT_DNS_POLICY = "ClusterFirst"
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEFAULT_TERMINATION_MESSAGE_POLICY = "File"
DEFAULT_PROTOCOL = "TCP"
DEFAULT_PROBE_TIMEOUT_SECONDS = 1
DEFAULT_PROBE_PERIOD_SECONDS = 10
DEFAULT_PROBE_SUCCESS_THRESHOLD = 1
DEFAULT_PROBE_FAILURE_THRESHOLD = 3
DEFAULT_HTTP_PATH = "/"
DEFAULT_HTTP_SCHEME = "HTTP"
DEFAULT_FIELD_REF_API_VERSION = "v1"
DEFAULT_VOLUME_MODE = 0o644  # 420
DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600  # serviceAccountToken projections
PULL_ALWAYS = "Always"
PULL_IF_NOT_PRESENT = "IfNotPresent"


def apply_defaults(pod: Pod) -> None:
    """Fill unset fields of `pod` in place, like the API server on create."""
    if not pod.metadata.namespace:
        pod.metadata.namespace = DEFAULT_NAMESPACE
    spec = pod.spec
    if not spec.restart_policy:
        spec.restart_policy = DEFAULT_RESTART_POLICY
    if not spec.dns_policy:
        spec.dns_policy = DEFAULT_DNS_POLICY
    if spec.termination_grace_period_seconds is None:
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    if not spec.scheduler_name:
        spec.scheduler_name = DEFAULT_SCHEDULER_NAME
    if spec.security_context is None:
        spec.security_context = PodSecurityContext()
    if spec.enable_service_links is None:
        spec.enable_service_links = True
    for container in [*spec.init_containers, *spec.containers]:
        _default_container(container, host_network=spec.host_network)
    for volume in spec.volumes:
        _default_volume(volume)


def default_pull_policy(image: str) -> str | None:
    """Always for ":latest" or untagged images, else IfNotPresent.

    None when the image is not a valid reference: there is no sensible
    policy to pick, and validation reports the image itself.
    """
    try:
        ref = parse_reference(image)
    except InvalidReferenceError:
        return None
    # parse_reference already turned "no tag, no digest" into ":latest".
    return PULL_ALWAYS if ref.tag == DEFAULT_TAG else PULL_IF_NOT_PRESENT


def _default_container(c: Container, *, host_network: bool) -> None:
    if not c.image_pull_policy:
        c.image_pull_policy = default_pull_policy(c.image) or ""
    if not c.termination_message_path:
        c.termination_message_path = DEFAULT_TERMINATION_MESSAGE_PATH
    if not c.termination_message_policy:
        c.termination_message_policy = DEFAULT_TERMINATION_MESSAGE_POLICY
    for port in c.ports:
        if not port.protocol:
            port.protocol = DEFAULT_PROTOCOL
        if host_network and port.host_port == 0:
            port.host_port = port.container_port
    res = c.resources
    for name, limit in res.limits.items():
        res.requests.setdefault(name, limit)
    for resources in (res.limits, res.requests):
        for name, amount in resources.items():
            resources[name] = _round_up_to_milli(amount)
    for probe in (c.liveness_probe, c.readiness_probe, c.startup_probe):
        if probe is not None:
            _default_probe(probe)
    if c.lifecycle is not None:
        _default_lifecycle(c.lifecycle)
    for env in c.env:
        ref = env.value_from.field_ref if env.value_from else None
        if ref is not None and not ref.api_version:
            ref.api_version = DEFAULT_FIELD_REF_API_VERSION


def _round_up_to_milli(q: Quantity) -> Quantity:
    """SetDefaults_ResourceList: nothing finer than 1m survives (0.0001 -> 1m)."""
    millis = q.amount * 1000
    if millis == millis.to_integral_value():
        return q
    return Quantity(f"{math.ceil(millis)}m")


def _default_probe(p: Probe) -> None:
    if p.timeout_seconds == 0:
        p.timeout_seconds = DEFAULT_PROBE_TIMEOUT_SECONDS
    if p.period_seconds == 0:
        p.period_seconds = DEFAULT_PROBE_PERIOD_SECONDS
    if p.success_threshold == 0:
        p.success_threshold = DEFAULT_PROBE_SUCCESS_THRESHOLD
    if p.failure_threshold == 0:
        p.failure_threshold = DEFAULT_PROBE_FAILURE_THRESHOLD
    if p.http_get is not None:
        _default_http_get(p.http_get)


def _default_lifecycle(lc: Lifecycle) -> None:
    for handler in (lc.post_start, lc.pre_stop):
        if handler is not None and handler.http_get is not None:
            _default_http_get(handler.http_get)


def _default_http_get(action: HTTPGetAction) -> None:
    if not action.path:
        action.path = DEFAULT_HTTP_PATH
    if not action.scheme:
        action.scheme = DEFAULT_HTTP_SCHEME


def _default_volume(v: Volume) -> None:
    if all(src is None for src in (v.empty_dir, v.host_path, v.config_map, v.secret,
                                   v.downward_api, v.projected)) and not unsupported_sources(v):
        v.empty_dir = EmptyDirVolumeSource()
    if v.host_path is not None and v.host_path.type is None:
        v.host_path.type = ""
    if v.config_map is not None and v.config_map.default_mode is None:
        v.config_map.default_mode = DEFAULT_VOLUME_MODE
    if v.secret is not None and v.secret.default_mode is None:
        v.secret.default_mode = DEFAULT_VOLUME_MODE
    if v.downward_api is not None:
        if v.downward_api.default_mode is None:
            v.downward_api.default_mode = DEFAULT_VOLUME_MODE
        _default_field_refs(v.downward_api.items)
    if v.projected is not None:
        if v.projected.default_mode is None:
            v.projected.default_mode = DEFAULT_VOLUME_MODE
        for source in v.projected.sources:
            if source.downward_api is not None:
                _default_field_refs(source.downward_api.items)
            token = source.service_account_token
            if token is not None and token.expiration_seconds is None:
                token.expiration_seconds = DEFAULT_TOKEN_EXPIRATION_SECONDS


def _default_field_refs(items: list[DownwardAPIVolumeFile]) -> None:
    for item in items:
        if item.field_ref is not None and not item.field_ref.api_version:
            item.field_ref.api_version = DEFAULT_FIELD_REF_API_VERSION
