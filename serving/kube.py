"""Kubernetes calls for the rollouts: retries, and every refusal turned into an error a user can act on.

``call`` wraps one call of the official ``kubernetes`` client (5xx and transport errors retried, 401/403/
404/409/422 named with the API server's own sentence). ``KubeObjects`` reads and writes any namespaced
kind with plain dicts through the client's ``call_api`` (the same request CustomObjectsApi makes, for core
kinds too), which is what the LLM API rollout needs: LLMInferenceServices, HTTPRoutes, Deployments and
Services in one flow.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from champion.errors import DeployError


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str  # "v1" for the core group, else "group/version"
    plural: str

    def path(self, namespace: str, name: str = "") -> str:
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{root}/namespaces/{namespace}/{self.plural}" + (f"/{name}" if name else "")


INFERENCE_SERVICE = Kind("InferenceService", "serving.kserve.io/v1beta1", "inferenceservices")
LLM_INFERENCE_SERVICE = Kind("LLMInferenceService", "serving.kserve.io/v1alpha2", "llminferenceservices")
HTTP_ROUTE = Kind("HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes")
DEPLOYMENT = Kind("Deployment", "apps/v1", "deployments")
SERVICE = Kind("Service", "v1", "services")
VIRTUAL_SERVICE = Kind("VirtualService", "networking.istio.io/v1beta1", "virtualservices")
TRAIN_JOB = Kind("TrainJob", "trainer.kubeflow.org/v1alpha1", "trainjobs")
KINDS = {
    kind.kind: kind
    for kind in (INFERENCE_SERVICE, LLM_INFERENCE_SERVICE, HTTP_ROUTE, DEPLOYMENT, SERVICE, VIRTUAL_SERVICE, TRAIN_JOB)
}


class ConflictError(DeployError):
    """409: someone else changed or created the object between our read and our write."""


def status_message(exc) -> str:
    """The API server's own sentence from its Status body (it names the user, verb, resource and namespace)."""
    try:
        message = json.loads(exc.body).get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message or exc.body or exc.reason or "")[:1000]


def desired_state(obj: dict) -> tuple:
    """What a writer of the object decides (not the status a controller reports)."""
    meta = obj.get("metadata") or {}
    return obj.get("spec"), meta.get("labels") or {}, meta.get("annotations") or {}


def api_error(target: str, exc, rbac_hint: str) -> DeployError:
    message = status_message(exc)
    if exc.status == 401:
        return DeployError(
            f"the Kubernetes API refused the credentials for {target} (401).",
            "refresh the token in the kubeconfig, or check the pipeline's service account token.",
        )
    if exc.status == 403:
        return DeployError(f"the service account may not {target} (403 forbidden): {message}", rbac_hint)
    if exc.status == 404:
        return DeployError(
            f"{target}: not found (404): {message}",
            "check that KServe is installed (its CRDs exist; Gateway API too for the LLM API) and the namespace is right.",
        )
    if exc.status == 409:
        return ConflictError(
            f"{target}: conflict (409), someone else changed or created it meanwhile: {message}",
            "re-run the pipeline; it will read the current state first.",
        )
    if exc.status == 422:
        return DeployError(
            f"the API server rejected {target} as invalid (422): {message}",
            "check the manifest against the installed KServe version (`champion manifests` renders the same objects).",
        )
    return DeployError(f"{target} failed with HTTP {exc.status}: {message}", "check the API server's health and retry.")


def call(target: str, function: Callable, *, retries: int, rbac_hint: str, missing_ok: bool = False):
    """Run ``function()``: 5xx and transport errors retried ``retries`` times with backoff, a 404 is None with
    ``missing_ok``, anything else an error naming ``target`` (e.g. "update inferenceservice ns/name")."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as TransportError

    for attempt in range(retries + 1):
        try:
            return function()
        except ApiException as exc:
            if exc.status == 404 and missing_ok:
                return None
            if exc.status >= 500 and attempt < retries:
                time.sleep(min(2**attempt, 5))
                continue
            raise api_error(target, exc, rbac_hint) from exc
        except TransportError as exc:
            if attempt < retries:
                time.sleep(min(2**attempt, 5))
                continue
            raise DeployError(
                f"the Kubernetes API did not answer {target}: {type(exc).__name__}: {exc}",
                "check the API server address in the kubeconfig and the network path to it.",
            ) from exc
    raise AssertionError("unreachable")


def api_client(kubeconfig: str = ""):
    """An ApiClient authenticated as documented: the pod's service account inside a cluster, else a
    kubeconfig (``kubeconfig``, $KUBECONFIG, or ~/.kube/config; its token or certificates)."""
    import os

    from kubernetes import client, config

    if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    try:
        return config.new_client_from_config(config_file=kubeconfig or None)
    except config.ConfigException as exc:
        raise DeployError(
            f"no Kubernetes credentials: {exc}",
            "run inside the cluster, or set KUBECONFIG to a kubeconfig for the target cluster.",
        ) from exc


class KubeObjects:
    """Namespaced objects of any kind as plain dicts: get, create, replace (optimistic), merge-patch, delete."""

    def __init__(
        self, client, namespace: str, *, rbac_hint: str, request_timeout_s: float = 30.0, retries: int = 2
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.rbac_hint = rbac_hint
        self.request_timeout_s = request_timeout_s
        self.retries = retries

    def _request(self, verb: str, kind: Kind, name: str, method: str, body=None, *, missing_ok=False, patch=False):
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/merge-patch+json" if patch else "application/json",
        }
        path = kind.path(self.namespace, "" if method == "POST" else name)
        return call(
            f"{verb} {kind.plural} {self.namespace}/{name}",
            lambda: self.client.call_api(
                path,
                method,
                header_params=headers,
                body=body,
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=self.request_timeout_s,
            ),
            retries=self.retries,
            rbac_hint=self.rbac_hint,
            missing_ok=missing_ok,
        )

    def get(self, kind: Kind, name: str) -> dict | None:
        return self._request("get", kind, name, "GET", missing_ok=True)

    def create(self, body: dict) -> dict:
        return self._request("create", KINDS[body["kind"]], body["metadata"]["name"], "POST", body)

    def replace(self, body: dict, based_on: dict) -> dict:
        """Replace with ``based_on``'s resourceVersion. A 409 caused only by a status write (a controller
        reporting on the object) is retried on the fresh version; a change to the spec, labels or annotations by
        anyone else stays a conflict: it is never overwritten."""
        kind, name = KINDS[body["kind"]], body["metadata"]["name"]
        for attempt in range(self.retries + 1):
            body["metadata"]["resourceVersion"] = based_on["metadata"]["resourceVersion"]
            try:
                return self._request("update", kind, name, "PUT", body)
            except ConflictError:
                current = self.get(kind, name)
                if current is None or attempt == self.retries or desired_state(current) != desired_state(based_on):
                    raise
                based_on = current
        raise AssertionError("unreachable")

    def delete(self, kind: Kind, name: str) -> None:
        self._request("delete", kind, name, "DELETE", missing_ok=True)


def condition(obj: dict, kind: str) -> dict:
    """The status condition of ``kind`` (``Ready``, ``Complete``...) of a Kubernetes object, or {}."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})
