"""A fake Kubeflow Pipelines API server on 127.0.0.1, held to tests/contracts/kfp_api_single_file.swagger.json
(vendored from the project's KFP API contract, see tests/contracts/README.md; tests never read outside the project).

Every request is checked against the API description: the path and verb must be an operation it
declares, query parameters must be ones that operation declares (required ones present), a JSON body
must match the operation's body schema, and an upload must carry the ``uploadfile`` form field.
Every response is validated against the operation's 200 schema before it is sent. Unknown fields
are errors on both sides (the description's objects are closed here, so a misspelt field is caught).
A request that breaks the contract gets a 400 and is recorded in ``violations``.

What it plays instead of Kubeflow: pipelines, versions, experiments, runs and recurring runs kept in
memory; a run is RUNNING for ``run_polls`` reads, then ends as ``run_outcome(run)`` says. It does not
compile-check or execute the uploaded IR, nor does it model Kubeflow's multi-user authorisation
beyond the bearer token and the namespace field.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from serving.manifests import _close_objects as _closed  # the same closing of objects as for the CRDs
from tests.conftest import REPO

SWAGGER = REPO / "tests" / "contracts" / "kfp_api_single_file.swagger.json"


def _int64_as_number_too(schema):
    """protobuf's JSON parser takes 64-bit integers as strings or numbers (it writes them as strings)."""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and schema.get("format") in ("int64", "uint64"):
            schema["type"] = ["string", "integer"]
        for value in schema.values():
            _int64_as_number_too(value)
    elif isinstance(schema, list):
        for item in schema:
            _int64_as_number_too(item)
    return schema


class Contract:
    def __init__(self) -> None:
        import jsonschema

        self.spec = json.loads(SWAGGER.read_text())
        self.definitions = _closed(copy.deepcopy(self.spec["definitions"]))  # what the server writes
        self.request_definitions = _int64_as_number_too(copy.deepcopy(self.definitions))  # what it accepts
        self._jsonschema = jsonschema
        self.routes = []
        for template, operations in self.spec["paths"].items():
            pattern = re.sub(r"\{([\w.]+)\}", lambda m: f"(?P<{m.group(1).replace('.', '__')}>[^/:]+)", template)
            self.routes.append((re.compile(f"^{pattern}$"), template, operations))

    def operation(self, method: str, path: str):
        for regex, template, operations in self.routes:
            match = regex.match(path)
            if match and method.lower() in operations:
                return (
                    template,
                    operations[method.lower()],
                    {k.replace("__", "."): v for k, v in match.groupdict().items()},
                )
        return None, None, {}

    def errors(self, instance, schema, *, request: bool = False) -> list[str]:
        wrapped = {**schema, "definitions": self.request_definitions if request else self.definitions}
        validator = self._jsonschema.Draft4Validator(wrapped)
        return [
            f"{'.'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}" for e in validator.iter_errors(instance)
        ]

    def check_request(self, operation: dict, query: dict, body, form: dict) -> list[str]:
        declared = {p["name"]: p for p in operation.get("parameters", [])}
        problems = [
            f"query parameter {name!r} is not in the API description"
            for name in query
            if name not in declared or declared[name]["in"] != "query"
        ]
        for name, parameter in declared.items():
            if parameter.get("required") and parameter["in"] == "query" and name not in query:
                problems.append(f"required query parameter {name!r} missing")
            if parameter["in"] == "body":
                if body is None:
                    problems.append(f"body {name!r} missing") if parameter.get("required") else None
                else:
                    problems += self.errors(body, parameter["schema"], request=True)
            if parameter["in"] == "formData" and parameter.get("required") and name not in form:
                problems.append(f"form field {name!r} missing")
        return problems

    def check_response(self, operation: dict, body) -> list[str]:
        schema = operation["responses"]["200"].get("schema")
        return self.errors(body, schema) if schema else []


_CLOCK = iter(range(10**9))


def _now() -> str:
    """A strictly increasing timestamp, so "newest first" has one answer."""
    seconds = next(_CLOCK)
    return f"2026-11-22T{12 + seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"


def _page(items: list[dict], query: dict) -> list[dict]:
    if query.get("sort_by"):
        field, _, order = query["sort_by"].partition(" ")
        items = sorted(items, key=lambda item: item.get(field, ""), reverse=order == "desc")
    size = int(query.get("page_size") or 0)
    return items[:size] if size > 0 else items


class FakeKFP:
    def __init__(self, *, token: str = "kfp-token", multi_user: bool = False) -> None:
        self.token = token
        self.multi_user = multi_user
        self.contract = Contract()
        self.requests: list[dict] = []
        self.violations: list[dict] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.uploads: dict[str, bytes] = {}
        self.run_polls = 1
        self.fail_with: dict[tuple[str, str], int] = {}  # (method, path) -> an HTTP error status to answer once
        self.run_outcome = lambda run: ("SUCCEEDED", "")
        self.run_tasks = lambda run: []  # the finished run's run_details.task_details
        self._polls: dict[str, int] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with fake._lock:
                    code, reply = fake.handle(method, self.path, dict(self.headers), raw)
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

            def do_PATCH(self):
                self._handle("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeKFP":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- dispatch -------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict, raw: bytes) -> tuple[int, dict]:
        headers = {k.lower(): v for k, v in headers.items()}
        url = urlparse(raw_path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        form, body = {}, None
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
            form = {
                part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                for part in message.iter_parts()
            }
        elif raw:
            body = json.loads(raw)
        self.requests.append(
            {
                "method": method,
                "path": url.path,
                "query": query,
                "body": body,
                "form": sorted(form),
                "authorization": headers.get("authorization", ""),
            }
        )
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"code": 16, "message": "Unauthenticated: missing or invalid bearer token"}
        if (method, url.path) in self.fail_with:
            code = self.fail_with.pop((method, url.path))
            return code, {"code": {403: 7, 404: 5, 409: 6}.get(code, 14), "message": f"injected HTTP {code}"}
        template, operation, params = self.contract.operation(method, url.path)
        if operation is None:
            return self._violation(method, url.path, [f"{method} {url.path} is not an operation of the KFP API"], 404)
        problems = self.contract.check_request(operation, query, body, form)
        if problems:
            return self._violation(method, url.path, problems)
        code, reply = getattr(self, "_" + re.sub(r"\W+", "_", f"{method} {template}").strip("_").lower())(
            params, query, body, form
        )
        if code == 200:
            problems = self.contract.check_response(operation, reply)
            if problems:  # a bug in this fake: it must never answer outside the contract
                return self._violation(method, url.path, [f"response: {p}" for p in problems], 500)
        return code, reply

    def _violation(self, method, path, problems, code=400):
        self.violations.append({"method": method, "path": path, "problems": problems})
        return code, {"code": 3, "message": "; ".join(problems)}

    @staticmethod
    def _display_name_filter(query) -> str | None:
        if "filter" not in query:
            return None
        for predicate in json.loads(query["filter"]).get("predicates", []):
            if predicate.get("key") in ("display_name", "name"):
                return predicate.get("string_value") or predicate.get("stringValue")
        return None

    # -- operations (named after the swagger path) ------------------------------------------------

    def _get_apis_v2beta1_healthz(self, params, query, body, form):
        return 200, {"multi_user": self.multi_user}

    def _new_pipeline(self, name, description, namespace) -> dict:
        pipeline = {
            "pipeline_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "description": description,
            "created_at": _now(),
        }
        if namespace:
            pipeline["namespace"] = namespace
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        return pipeline

    def _new_version(self, pipeline_id, name, description, package: bytes) -> dict:
        import yaml

        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "name": name,
            "description": description,
            "created_at": _now(),
            "pipeline_spec": next(yaml.safe_load_all(package)),
        }
        self.versions[version["pipeline_version_id"]] = version
        self.uploads[version["pipeline_version_id"]] = package
        return version

    def _post_apis_v2beta1_pipelines_upload(self, params, query, body, form):
        name = query.get("name") or query.get("display_name")
        if any(
            p["display_name"] == name and p.get("namespace", "") == query.get("namespace", "")
            for p in self.pipelines.values()
        ):
            return 409, {"code": 6, "message": f"pipeline {name!r} already exists"}
        pipeline = self._new_pipeline(name, query.get("description", ""), query.get("namespace", ""))
        self._new_version(pipeline["pipeline_id"], name, query.get("description", ""), form["uploadfile"])
        return 200, pipeline

    def _post_apis_v2beta1_pipelines_upload_version(self, params, query, body, form):
        pipeline_id = query.get("pipelineid", "")
        if pipeline_id not in self.pipelines:
            return 404, {"code": 5, "message": f"pipeline {pipeline_id!r} not found"}
        name = query.get("name") or query.get("display_name")
        if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name for v in self.versions.values()):
            return 409, {"code": 6, "message": f"pipeline version {name!r} already exists"}
        return 200, self._new_version(pipeline_id, name, query.get("description", ""), form["uploadfile"])

    def _get_apis_v2beta1_pipelines(self, params, query, body, form):
        wanted = self._display_name_filter(query)
        found = [p for p in self.pipelines.values() if wanted is None or p["display_name"] == wanted]
        return 200, {"pipelines": found, "total_size": len(found)}

    def _get_apis_v2beta1_pipelines_pipeline_id_versions(self, params, query, body, form):
        wanted = self._display_name_filter(query)
        found = [
            {k: v for k, v in version.items() if k != "pipeline_spec"}
            for version in self.versions.values()
            if version["pipeline_id"] == params["pipeline_id"] and wanted in (None, version["display_name"])
        ]
        return 200, {"pipeline_versions": _page(found, query), "total_size": len(found)}

    def _get_apis_v2beta1_experiments(self, params, query, body, form):
        wanted = self._display_name_filter(query)
        found = [e for e in self.experiments.values() if wanted is None or e["display_name"] == wanted]
        return 200, {"experiments": found, "total_size": len(found)}

    def _post_apis_v2beta1_experiments(self, params, query, body, form):
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": body["display_name"],
            "description": body.get("description", ""),
            "created_at": _now(),
            "storage_state": "AVAILABLE",
        }
        if body.get("namespace"):
            experiment["namespace"] = body["namespace"]
        self.experiments[experiment["experiment_id"]] = experiment
        return 200, experiment

    def _get_apis_v2beta1_experiments_experiment_id(self, params, query, body, form):
        experiment = self.experiments.get(params["experiment_id"])
        return (200, experiment) if experiment else (404, {"code": 5, "message": "experiment not found"})

    def _post_apis_v2beta1_runs(self, params, query, body, form):
        run = {
            **body,
            "run_id": str(uuid.uuid4()),
            "created_at": _now(),
            "state": "PENDING",
            "storage_state": "AVAILABLE",
        }
        self.runs[run["run_id"]] = run
        self._polls[run["run_id"]] = 0
        return 200, run

    def _get_apis_v2beta1_runs_run_id(self, params, query, body, form):
        run = self.runs.get(params["run_id"])
        if run is None:
            return 404, {"code": 5, "message": "run not found"}
        self._polls[run["run_id"]] += 1
        if run["state"] in ("PENDING", "RUNNING"):
            if self._polls[run["run_id"]] > self.run_polls:
                state, message = self.run_outcome(run)
                run.update(
                    {"state": state, "finished_at": _now(), "run_details": {"task_details": self.run_tasks(run)}}
                )
                if message:
                    run["error"] = {"code": 2, "message": message}
            else:
                run["state"] = "RUNNING"
        return 200, run

    def _post_apis_v2beta1_recurringruns(self, params, query, body, form):
        recurring = {
            **body,
            "max_concurrency": str(body.get("max_concurrency", 1)),
            "recurring_run_id": str(uuid.uuid4()),
            "created_at": _now(),
            "updated_at": _now(),
            "status": "ENABLED" if body.get("mode") != "DISABLE" else "DISABLED",
        }
        self.recurring_runs[recurring["recurring_run_id"]] = recurring
        return 200, recurring

    def _get_apis_v2beta1_recurringruns(self, params, query, body, form):
        wanted = self._display_name_filter(query)
        found = [
            r
            for r in self.recurring_runs.values()
            if (wanted is None or r["display_name"] == wanted)
            and (not query.get("experiment_id") or r.get("experiment_id") == query["experiment_id"])
        ]
        return 200, {"recurringRuns": found, "total_size": len(found)}

    def _delete_apis_v2beta1_recurringruns_recurring_run_id(self, params, query, body, form):
        if self.recurring_runs.pop(params["recurring_run_id"], None) is None:
            return 404, {"code": 5, "message": "recurring run not found"}
        return 200, {}
