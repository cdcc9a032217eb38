"""A stand-in for KServe's InferenceService controller, for tests against the real API server.

There is no KServe controller (nor Knative) here, so nothing would ever write an InferenceService's
status. This thread does what the controller's status update does, through the real status subresource
(so the server validates it against the CRD, like any controller's write): for every new
``metadata.generation`` it sees, it writes a Knative-style status with one revision per generation,
``latestCreatedRevision``/``latestReadyRevision``, a ``latest`` tag URL for the newest revision and the
previous ready revision's share when ``canaryTrafficPercent`` is set, and a Ready condition.

Rules a test sets: ``never_ready_if(obj)`` (a revision whose pods would crash-loop stays not Ready),
``on_created(obj)`` (runs once per new object, to start a fault mid-rollout), and the URLs the
answer servers listen on. ``seen`` records every generation reconciled, in order: what reached the server.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Callable

from serving.rollout import GROUP, PLURAL, VERSION  # the resource the rollout writes


class KServeControllerStandIn:
    def __init__(self, admin_client, namespace: str, *, stable_url: str = "", latest_url: str = "") -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(admin_client)
        self.namespace = namespace
        self.stable_url = stable_url
        self.latest_url = latest_url
        self.urls: dict[str, str] = {}  # an InferenceService name -> where it answers (else stable/latest)
        self.never_ready_if: Callable[[dict], bool] = lambda obj: False
        self.on_created: Callable[[dict], None] | None = None
        self.seen: list[dict] = []
        self.errors: list[str] = []
        self._reconciled: set[tuple[str, int]] = set()
        self._created: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"kserve-standin-{namespace}", daemon=True)

    def __enter__(self) -> KServeControllerStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        from kubernetes.client.exceptions import ApiException

        while not self._stop.is_set():
            try:
                items = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]
                for obj in items:
                    self._reconcile(obj)
            except ApiException as exc:
                if exc.status != 404:  # an object deleted between list and status write is fine
                    self.errors.append(f"{exc.status}: {exc.body}")
            time.sleep(0.01)

    def _reconcile(self, obj: dict) -> None:
        meta = obj["metadata"]
        key = (meta["uid"], int(meta["generation"]))
        if key in self._reconciled:
            return
        self._reconciled.add(key)
        self.seen.append(
            {
                "name": meta["name"],
                "generation": key[1],
                "labels": copy.deepcopy(meta.get("labels") or {}),
                "annotations": copy.deepcopy(meta.get("annotations") or {}),
                "spec": copy.deepcopy(obj["spec"]),
            }
        )
        if meta["uid"] not in self._created:
            self._created.add(meta["uid"])
            if self.on_created is not None:
                self.on_created(obj)
        self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, meta["name"], {"status": self.status_for(obj)}
        )

    def status_for(self, obj: dict) -> dict:
        name, generation = obj["metadata"]["name"], int(obj["metadata"]["generation"])
        revision = f"{name}-predictor-{generation:05d}"
        ready = not self.never_ready_if(obj)
        status = obj.get("status") or {}
        stable_url = self.urls.get(name, self.stable_url)
        latest_url = self.urls.get(name, self.latest_url or self.stable_url)
        components = {}
        for component in ("predictor", "transformer"):
            if component not in obj["spec"]:
                continue
            previous = (status.get("components") or {}).get(component, {})
            percent = obj["spec"][component].get("canaryTrafficPercent")
            traffic = [
                {
                    "tag": "latest",
                    "revisionName": revision,
                    "latestRevision": True,
                    "percent": percent if percent is not None else 100,
                    "url": latest_url,
                }
            ]
            if percent is not None and previous.get("latestReadyRevision"):
                traffic.append(
                    {
                        "tag": "prev",
                        "revisionName": previous["latestReadyRevision"],
                        "latestRevision": False,
                        "percent": 100 - percent,
                        "url": stable_url,
                    }
                )
            entry = {"latestCreatedRevision": revision, "traffic": traffic, "url": stable_url}
            ready_revision = revision if ready else previous.get("latestReadyRevision")
            if ready_revision:
                entry["latestReadyRevision"] = ready_revision
            components[component] = entry
        condition = (
            {"type": "Ready", "status": "True"}
            if ready
            else {
                "type": "Ready",
                "status": "False",
                "reason": "RevisionMissing",
                "message": f"Revision {revision} is not ready: 0/1 pods available",
            }
        )
        return {
            "observedGeneration": generation if ready else int(status.get("observedGeneration") or 0),
            "url": stable_url,
            # The cluster-local address in-mesh clients (and an Istio mirror) use.
            "address": {"url": f"http://{name}.{self.namespace}.svc.cluster.local"},
            "components": components,
            "conditions": [condition],
        }
