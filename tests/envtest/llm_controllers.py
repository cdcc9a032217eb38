"""Stand-ins for the controllers behind KServe's LLM API, for tests against the real API server.

There is no KServe controller, no kube-controller-manager and no Gateway API implementation here, so nothing
would ever report on an LLMInferenceService, a Deployment or an HTTPRoute. This thread writes what each of
them reports, through the real status subresources (the server validates every write against the CRD or the
built-in schema):

- KServe's LLMInferenceService controller: a Ready condition for each new generation (``observedGeneration``);
- the Deployment controller: ``availableReplicas`` = ``spec.replicas`` for each new generation;
- the gateway (``gateway`` names it): for each new HTTPRoute generation, ``Accepted`` and ``ResolvedRefs``
  conditions on that parent; ResolvedRefs is False, as a real gateway says, when a backendRef or the mirror's
  Service does not exist.

Rules a test sets: ``never_ready_if(obj)`` (an LLMInferenceService whose pods would crash-loop stays not
Ready). ``routes`` records every route generation reconciled, in order (what reached the server).
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Callable

from serving.kube import DEPLOYMENT, HTTP_ROUTE, LLM_INFERENCE_SERVICE, SERVICE


class LLMStackStandIn:
    def __init__(self, admin_client, namespace: str, *, gateway: str, controller: str = "example.com/gateway") -> None:
        self.client = admin_client
        self.namespace = namespace
        self.gateway = gateway
        self.controller = controller
        self.never_ready_if: Callable[[dict], bool] = lambda obj: False
        self.routes: list[dict] = []
        self.errors: list[str] = []
        self._reconciled: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"llm-standin-{namespace}", daemon=True)

    def __enter__(self) -> LLMStackStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _call(self, method: str, path: str, body=None, patch: bool = False):
        return self.client.call_api(
            path,
            method,
            header_params={
                "Accept": "application/json",
                "Content-Type": "application/merge-patch+json" if patch else "application/json",
            },
            body=body,
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )

    def _list(self, kind) -> list[dict]:
        return self._call("GET", kind.path(self.namespace))["items"]

    def _loop(self) -> None:
        from kubernetes.client.exceptions import ApiException

        while not self._stop.is_set():
            try:
                for kind, status in (
                    (LLM_INFERENCE_SERVICE, self._llm_status),
                    (DEPLOYMENT, self._deployment_status),
                    (HTTP_ROUTE, self._route_status),
                ):
                    for obj in self._list(kind):
                        key = (obj["metadata"]["uid"], int(obj["metadata"]["generation"]))
                        if key in self._reconciled:
                            continue
                        self._reconciled.add(key)
                        if kind is HTTP_ROUTE:
                            self.routes.append(
                                {
                                    "generation": key[1],
                                    "spec": copy.deepcopy(obj["spec"]),
                                    "labels": obj["metadata"].get("labels"),
                                }
                            )
                        self._call(
                            "PATCH",
                            kind.path(self.namespace, obj["metadata"]["name"]) + "/status",
                            {"status": status(obj)},
                            patch=True,
                        )
            except ApiException as exc:
                if exc.status != 404:  # an object deleted between list and status write is fine
                    self.errors.append(f"{exc.status}: {exc.body}")
            time.sleep(0.01)

    def _llm_status(self, obj: dict) -> dict:
        generation = int(obj["metadata"]["generation"])
        if self.never_ready_if(obj):
            return {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "MainWorkloadNotReady",
                        "message": "0/1 pods of the main workload are ready: CrashLoopBackOff",
                        "lastTransitionTime": _now(),
                    }
                ]
            }
        return {
            "observedGeneration": generation,
            "url": f"http://gateway/{self.namespace}/{obj['metadata']['name']}",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}],
        }

    def _deployment_status(self, obj: dict) -> dict:
        replicas = int(obj["spec"].get("replicas", 1))
        return {
            "observedGeneration": int(obj["metadata"]["generation"]),
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "updatedReplicas": replicas,
        }

    def _route_status(self, obj: dict) -> dict:
        generation = int(obj["metadata"]["generation"])
        services = {s["metadata"]["name"] for s in self._list(SERVICE)}
        rule = obj["spec"]["rules"][0]
        wanted = [ref["name"] for ref in rule.get("backendRefs") or []] + [
            f["requestMirror"]["backendRef"]["name"] for f in rule.get("filters") or [] if f["type"] == "RequestMirror"
        ]
        missing = [name for name in wanted if name not in services]
        resolved = (
            {"status": "True", "reason": "ResolvedRefs", "message": "all references resolved"}
            if not missing
            else {
                "status": "False",
                "reason": "BackendNotFound",
                "message": f"services not found: {', '.join(missing)}",
            }
        )
        parents = []
        for ref in obj["spec"]["parentRefs"]:
            if ref["name"] != self.gateway:
                continue
            parents.append(
                {
                    "parentRef": dict(ref),
                    "controllerName": self.controller,
                    "conditions": [
                        {
                            "type": "Accepted",
                            "status": "True",
                            "reason": "Accepted",
                            "message": "route accepted",
                            "observedGeneration": generation,
                            "lastTransitionTime": _now(),
                        },
                        {
                            "type": "ResolvedRefs",
                            "observedGeneration": generation,
                            "lastTransitionTime": _now(),
                            **resolved,
                        },
                    ],
                }
            )
        return {"parents": parents}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
