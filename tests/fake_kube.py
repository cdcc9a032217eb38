"""A fake Kubernetes API server for KServe InferenceServices, on 127.0.0.1, held to the real contract.

What it follows: the REST paths, verbs and content types the ``kubernetes`` client uses for custom
objects; bearer-token auth; ``resourceVersion`` optimistic concurrency (409 on a stale write);
AlreadyExists (409) on a second create; Status objects for errors; RFC 7386 merge patches; and it
validates every object it receives against the KServe InferenceService CRD schema from
the vendored KServe CRD schema in serving/crds/ (strictly: unknown keys are 422, as a typo would otherwise be pruned silently).

What it plays, instead of a controller: after a write, the service becomes Ready after ``ready_after``
polls (never when None), with Knative-style revisions, a ``latest`` tag URL for the newest revision
and ``status.url`` for the stable one. It does not prove what a real KServe controller, Knative or a
webhook would do with the object (traffic splitting, pod scheduling, image pulls, webhook-only rules).
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serving.manifests import SCHEMAS, _close_objects

PATH = re.compile(
    r"^/apis/serving\.kserve\.io/v1beta1/namespaces/(?P<ns>[^/]+)/inferenceservices(?:/(?P<name>[^/?]+))?(?:\?.*)?$"
)


def contract_validator():
    import jsonschema

    path, _, _ = SCHEMAS[
        "InferenceService"
    ]  # the vendored CRD schema (test_manifests checks it against the vendored CRD)
    schema = _close_objects(json.loads(path.read_text()))
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status_body(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeKubeAPI:
    """Scenario knobs: ``ready_after`` (polls until Ready, None = never), ``forbidden_verbs``
    ({"create", "update", ...} answer 403), ``token`` (401 without it), ``conflict_on_next_update``
    (another writer bumps the object between our read and our write), ``server_errors`` (how many
    requests answer 503 first)."""

    def __init__(self, *, token: str = "test-token", stable_url: str = "", latest_url: str = "") -> None:
        self.token = token
        self.stable_url = stable_url
        self.latest_url = latest_url
        self.ready_after: int | None = 1
        self.never_ready_if = lambda obj: False  # e.g. a storageUri whose pods crash-loop
        self.forbidden_verbs: set[str] = set()
        self.conflict_on_next_update = False
        self.after_create = None  # called after a successful create (to play a fault that starts mid-rollout)
        self.server_errors = 0
        self.kserve_installed = True  # False: the InferenceService resource does not exist (404 everywhere)
        self.objects: dict[tuple[str, str], dict] = {}
        self.requests: list[dict] = []
        self.rejected: list[dict] = []
        self._polls: dict[tuple[str, str], int] = {}
        self._validator = contract_validator()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with fake._lock:
                    code, reply = fake.handle(method, self.path, body, dict(self.headers))
                self._reply(code, reply)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_PATCH(self):
                self._handle("PATCH")

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeKubeAPI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path) -> str:
        import yaml

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "deployer", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "deployer", "namespace": "team-a"}}],
        }
        path.write_text(yaml.safe_dump(config))
        return str(path)

    # -- the API -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body, headers: dict) -> tuple[int, dict]:
        headers = {k.lower(): v for k, v in headers.items()}
        self.requests.append(
            {
                "method": method,
                "path": path,
                "body": copy.deepcopy(body),
                "content_type": headers.get("content-type", ""),
            }
        )
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, status_body(401, "Unauthorized", "Unauthorized")
        if self.server_errors > 0:
            self.server_errors -= 1
            return 503, status_body(503, "ServiceUnavailable", "etcd leader changed")
        match = PATH.match(path)
        if not match or not self.kserve_installed:
            return 404, status_body(404, "NotFound", f"the server could not find the requested resource {path}")
        namespace, name = match.group("ns"), match.group("name")
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }[method]
        if verb in self.forbidden_verbs:
            return 403, status_body(
                403,
                "Forbidden",
                f'inferenceservices.serving.kserve.io is forbidden: User "system:serviceaccount:{namespace}:pipeline-runner" cannot {verb} resource "inferenceservices" in API group "serving.kserve.io" in the namespace "{namespace}"',
            )
        key = (namespace, name or (body or {}).get("metadata", {}).get("name", ""))
        if method == "GET":
            if not name:
                return 200, {
                    "apiVersion": "serving.kserve.io/v1beta1",
                    "kind": "InferenceServiceList",
                    "items": [o for (ns, _), o in self.objects.items() if ns == namespace],
                }
            if key not in self.objects:
                return 404, status_body(404, "NotFound", f'inferenceservices.serving.kserve.io "{name}" not found')
            return 200, self._reconcile(key)
        if method == "DELETE":
            if self.objects.pop(key, None) is None:
                return 404, status_body(404, "NotFound", f'inferenceservices.serving.kserve.io "{name}" not found')
            return 200, {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Success",
                "details": {"name": name, "kind": "inferenceservices"},
            }
        if method == "POST":
            if key in self.objects:
                return 409, status_body(
                    409, "AlreadyExists", f'inferenceservices.serving.kserve.io "{key[1]}" already exists'
                )
            stored = self._store(key, body, None)
            if self.after_create is not None:
                self.after_create()
            return stored
        current = self.objects.get(key)
        if current is None:
            return 404, status_body(404, "NotFound", f'inferenceservices.serving.kserve.io "{name}" not found')
        if method == "PATCH":
            if headers.get("content-type") != "application/merge-patch+json":
                return 415, status_body(
                    415, "UnsupportedMediaType", f"this fake only speaks merge-patch, got {headers.get('content-type')}"
                )
            merged = merge_patch({k: v for k, v in current.items() if k != "status"}, body)
            merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self._store(key, merged, current)
        if self.conflict_on_next_update:  # another writer got there between our read and this write
            self.conflict_on_next_update = False
            current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        if (body.get("metadata") or {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return 409, status_body(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on inferenceservices.serving.kserve.io "{name}": the object has been modified; please apply your changes to the latest version and try again',
            )
        return self._store(key, body, current)

    def _store(self, key, body: dict, current: dict | None) -> tuple[int, dict]:
        obj = {k: copy.deepcopy(v) for k, v in body.items() if k != "status"}  # status is a subresource
        errors = sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in self._validator.iter_errors(obj))
        if obj.get("apiVersion") != "serving.kserve.io/v1beta1" or obj.get("kind") != "InferenceService":
            errors.append("apiVersion/kind: must be serving.kserve.io/v1beta1 InferenceService")
        if errors:
            self.rejected.append({"object": obj, "errors": errors})
            return 422, status_body(
                422, "Invalid", f'InferenceService.serving.kserve.io "{key[1]}" is invalid: ' + "; ".join(errors[:5])
            )
        meta = obj["metadata"]
        previous_meta = (current or {}).get("metadata", {})
        spec_changed = current is None or current.get("spec") != obj.get("spec")
        meta["namespace"] = key[0]
        meta["uid"] = previous_meta.get("uid", f"uid-{key[1]}")
        meta["generation"] = previous_meta.get("generation", 0) + (1 if spec_changed else 0)
        meta["resourceVersion"] = str(int(previous_meta.get("resourceVersion", "100")) + 1)
        obj["status"] = copy.deepcopy((current or {}).get("status", {}))
        self.objects[key] = obj
        if spec_changed:
            self._polls[key] = 0
        return (201 if current is None else 200), copy.deepcopy(obj)

    def _reconcile(self, key) -> dict:
        """The controller's part, played by rule: Ready ``ready_after`` polls after each spec change."""
        obj = self.objects[key]
        self._polls[key] = self._polls.get(key, 0) + 1
        generation = obj["metadata"]["generation"]
        revision = f"{key[1]}-{generation:05d}"
        ready = self.ready_after is not None and self._polls[key] >= self.ready_after and not self.never_ready_if(obj)
        status = obj["status"]
        components = {}
        for component in ("predictor", "transformer"):
            if component not in obj["spec"]:
                continue
            previous = status.get("components", {}).get(component, {})
            percent = obj["spec"][component].get("canaryTrafficPercent")
            traffic = [
                {
                    "tag": "latest",
                    "revisionName": revision,
                    "latestRevision": True,
                    "percent": percent if percent is not None else 100,
                    "url": self.latest_url or self.stable_url,
                }
            ]
            if percent is not None and previous.get("latestReadyRevision"):
                traffic.append(
                    {
                        "tag": "prev",
                        "revisionName": previous["latestReadyRevision"],
                        "latestRevision": False,
                        "percent": 100 - percent,
                        "url": self.stable_url,
                    }
                )
            components[component] = {
                "latestCreatedRevision": revision,
                "latestReadyRevision": revision if ready else previous.get("latestReadyRevision"),
                "traffic": traffic,
                "url": self.stable_url,
            }
        status.update(
            {
                "observedGeneration": generation if ready else status.get("observedGeneration", 0),
                "url": self.stable_url,
                "components": components,
                "conditions": [
                    {"type": "Ready", "status": "True"}
                    if ready
                    else {
                        "type": "Ready",
                        "status": "False",
                        "reason": "RevisionMissing",
                        "message": f"Revision {revision} is not ready: 0/1 pods available",
                    }
                ],
            }
        )
        return copy.deepcopy(obj)
