"""Rolling a bundle out to KServe through the Kubernetes API: canary, readiness, smoke test, then
promote to 100% or roll back to the previous spec.

The calls are the ``kubernetes`` client's CustomObjectsApi on ``serving.kserve.io/v1beta1``
inferenceservices, with plain camelCase dicts (KServe's own SDK objects serialise wrongly with some
client versions). Updates are replaces carrying the observed ``resourceVersion``, so a concurrent
writer produces a 409 instead of being overwritten silently.

Canary (``Serverless`` mode, KServe's default): the new spec goes in with ``canaryTrafficPercent`` on
the predictor and the transformer, tag routing on, and the smoke test goes to the ``latest`` tag URL;
promotion removes the percentages (a merge patch with nulls). ``Standard`` mode has no traffic split
for a transformer, so there the update is a rolling one and the smoke test hits the service URL.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from champion.errors import DeployError
from serving.kube import VIRTUAL_SERVICE, ConflictError, KubeObjects, api_client, call, condition, desired_state
from serving.llm_service import render_istio_mirror
from serving.manifests import DEPLOYER_VERBS, validate_strict
from serving.smoke import SmokeResult

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
RBAC_HINT = (
    "apply the Role and RoleBinding from `champion manifests` to the namespace (the pipeline's service account "
    f"needs {', '.join(DEPLOYER_VERBS)} on inferenceservices; a shadow stage also on virtualservices: "
    "`champion manifests --shadow`)."
)


def kube_api(kubeconfig: str = ""):
    """CustomObjectsApi authenticated as ``serving.kube.api_client`` documents."""
    from kubernetes import client

    return client.CustomObjectsApi(api_client(kubeconfig))


def is_ready(isvc: dict, generation: int) -> bool:
    status = isvc.get("status") or {}
    if int(status.get("observedGeneration") or 0) < generation or condition(isvc, "Ready").get("status") != "True":
        return False
    # Knative: the newest revision of every component must be the ready one.
    return all(
        c.get("latestCreatedRevision") == c.get("latestReadyRevision")
        for c in (status.get("components") or {}).values()
        if c.get("latestCreatedRevision")
    )


BUNDLE_ANNOTATION = "champion.io/bundle-id"


def service_host(isvc: dict) -> str:
    """The InferenceService's cluster-local host (what in-mesh clients call), from its status."""
    from urllib.parse import urlsplit

    status = isvc.get("status") or {}
    url = (status.get("address") or {}).get("url") or status.get("url") or ""
    host = urlsplit(url).hostname or ""
    if not host:
        raise DeployError(
            f"inferenceservice {isvc['metadata']['name']} reports no address to mirror.",
            "wait until KServe has reconciled it (status.address.url), then re-run.",
        )
    return host


def candidate_url(isvc: dict) -> str:
    """Where the newest revision answers: the ``latest`` tag of the entry component, else the service URL."""
    status = isvc.get("status") or {}
    components = status.get("components") or {}
    entry = components.get("transformer") or components.get("predictor") or {}
    for target in entry.get("traffic") or []:
        if target.get("tag") == "latest" and target.get("url"):
            return target["url"]
    return status.get("url") or (status.get("address") or {}).get("url") or ""


@dataclass
class RolloutOutcome:
    status: str  # rolled_out | rolled_back
    reason: str
    name: str
    namespace: str
    mode: str
    canary_traffic_percent: int
    url: str = ""
    smoke: dict | None = None
    previous_spec: dict | None = None
    events: list[dict] = field(default_factory=list)
    shadow: dict | None = None  # the shadow gate's decision, when there was a shadow stage

    @property
    def rolled_out(self) -> bool:
        return self.status == "rolled_out"

    def as_dict(self) -> dict:
        return asdict(self)


class _NotReady(Exception):
    pass


class KServeRollout:
    """One rollout of one InferenceService. ``smoke(url) -> SmokeResult`` decides promote vs rollback."""

    def __init__(
        self,
        api,
        namespace: str,
        *,
        ready_timeout_s: float = 900.0,
        poll_s: float = 5.0,
        request_timeout_s: float = 30.0,
        retries: int = 2,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s
        self.request_timeout_s = request_timeout_s
        self.retries = retries
        self.events: list[dict] = []

    # -- the Kubernetes calls, each mapped to an error a user can act on --------------------------

    def _call(self, verb: str, name: str, function: Callable, *args, missing_ok: bool = False):
        return call(
            f"{verb} inferenceservice {self.namespace}/{name}",
            lambda: function(GROUP, VERSION, self.namespace, PLURAL, *args, _request_timeout=self.request_timeout_s),
            retries=self.retries,
            rbac_hint=RBAC_HINT,
            missing_ok=missing_ok,
        )

    def get(self, name: str) -> dict | None:
        return self._call("get", name, self.api.get_namespaced_custom_object, name, missing_ok=True)

    def _create(self, body: dict) -> dict:
        return self._call("create", body["metadata"]["name"], self.api.create_namespaced_custom_object, body)

    def _replace(self, body: dict, based_on: dict) -> dict:
        """Replace with ``based_on``'s resourceVersion. A 409 caused only by a status write (KServe's
        controller reports on the object while it rolls out) is retried on the fresh version; a change to
        the spec, labels or annotations by anyone else stays a conflict: we never overwrite it."""
        name = body["metadata"]["name"]
        for attempt in range(self.retries + 1):
            body["metadata"]["resourceVersion"] = based_on["metadata"]["resourceVersion"]
            try:
                return self._call("update", name, self.api.replace_namespaced_custom_object, name, body)
            except ConflictError:
                current = self.get(name)
                if current is None or attempt == self.retries or desired_state(current) != desired_state(based_on):
                    raise
                based_on = current
        raise AssertionError("unreachable")

    def _patch(self, name: str, patch: dict) -> dict:
        return self._call("patch", name, self.api.patch_namespaced_custom_object, name, patch)

    def _delete(self, name: str) -> None:
        self._call("delete", name, self.api.delete_namespaced_custom_object, name)

    # -- the rollout ----------------------------------------------------------------------------

    def _event(self, step: str, **details) -> None:
        self.events.append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "step": step, **details})

    def wait_ready(self, name: str, generation: int) -> dict:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            isvc = self.get(name)
            if isvc is not None and is_ready(isvc, generation):
                return isvc
            if time.monotonic() >= deadline:
                ready = condition(isvc or {}, "Ready")
                why = f"{ready.get('reason', 'no Ready condition')}: {ready.get('message', '')}".strip(": ")
                raise _NotReady(f"not Ready after {self.ready_timeout_s:.0f} s (generation {generation}; {why})")
            time.sleep(self.poll_s)

    def run(
        self,
        manifest: dict,
        *,
        canary_traffic_percent: int,
        smoke: Callable[[str], SmokeResult],
        shadow: Callable[[str, str, str], dict] | None = None,
    ) -> RolloutOutcome:
        """``shadow(live_bundle_id, candidate_bundle_id, since)``, when given, runs before the canary while an Istio
        VirtualService mirrors the live service's traffic to a shadow copy of the candidate, and returns the
        shadow gate's decision (with ``passed``)."""
        name = manifest["metadata"]["name"]
        mode = manifest["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode", "Serverless")
        # The API server prunes unknown fields silently (a misspelt storageUri would serve the wrong
        # thing), so the manifest is held to the CRD strictly before anything is written.
        validate_strict(manifest)
        if not 0 <= canary_traffic_percent <= 100:
            raise DeployError(
                f"canary traffic percent must be 0..100, got {canary_traffic_percent}.",
                "pass e.g. 10 for a 10% canary, or 100 to switch at once.",
            )
        outcome = RolloutOutcome(
            "rolled_back", "", name, self.namespace, mode, canary_traffic_percent, events=self.events
        )
        existing = self.get(name)
        if existing is None:
            return self._first_deploy(manifest, outcome, smoke)
        previous = {
            "labels": existing["metadata"].get("labels") or {},
            "annotations": existing["metadata"].get("annotations") or {},
            "spec": existing["spec"],
        }
        outcome.previous_spec = copy.deepcopy(previous)
        try:
            if shadow is not None:
                refused = self._shadow_stage(manifest, existing, outcome, smoke, shadow)
                if refused is not None:
                    return refused
            return self._update(manifest, existing, previous, outcome, smoke)
        except DeployError as exc:
            # A Kubernetes error mid-canary (polling, patching, a vanished object) must not leave the
            # candidate serving: restore the previous spec first, then report both.
            if not any(e["step"] == "updated" for e in self.events):
                raise  # nothing was changed yet
            try:
                self.rollback(name, previous)
            except DeployError as rollback_exc:
                raise DeployError(
                    f"{exc.problem} The rollback to the previous spec failed too: {rollback_exc.problem}",
                    rollback_exc.fix,
                ) from exc
            raise DeployError(
                f"{exc.problem} The InferenceService was rolled back to the previous spec before this error was reported.",
                exc.fix,
            ) from exc

    def _shadow_stage(
        self, manifest: dict, existing: dict, outcome: RolloutOutcome, smoke, shadow
    ) -> RolloutOutcome | None:
        """The candidate as ``<name>-shadow`` beside the live service, Ready and smoke-tested, then mirrored to
        (Istio VirtualService on the live service's host) while ``shadow`` gates. Both objects are deleted
        afterwards, whatever happened. The outcome when the candidate goes no further; None to go on to the
        canary."""

        name = f"{outcome.name}-shadow"
        body = copy.deepcopy(manifest)
        body["metadata"] = {k: v for k, v in body["metadata"].items() if k != "resourceVersion"} | {"name": name}
        kube = KubeObjects(
            self.api.api_client,
            self.namespace,
            rbac_hint=RBAC_HINT,
            request_timeout_s=self.request_timeout_s,
            retries=self.retries,
        )
        created = self._create(body)
        self._event("shadow_created", name=name, generation=created["metadata"].get("generation", 1))
        try:
            try:
                isvc = self.wait_ready(name, int(created["metadata"].get("generation", 1)))
            except _NotReady as exc:
                outcome.reason = f"the shadow InferenceService was {exc}; it was deleted (users never reached it)."
                return outcome
            url = candidate_url(isvc)
            result = smoke(url)
            outcome.smoke = result.as_dict()
            self._event("smoke_test", passed=result.passed, reason=result.reason, url=url)
            if not result.passed:
                outcome.reason = (
                    f"smoke test failed ({result.reason}); the shadow was deleted (users never reached it)."
                )
                return outcome
            live_host = service_host(existing)
            mirror = render_istio_mirror(
                name=name,
                namespace=self.namespace,
                hosts=[live_host],
                live_host=live_host,
                shadow_host=service_host(isvc),
            )
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            kube.create(mirror)
            self._event("shadow_started", live=live_host, mirrored_to=service_host(isvc))
            live_bundle = (existing["metadata"].get("annotations") or {}).get(BUNDLE_ANNOTATION, "")
            decision = shadow(live_bundle, manifest["metadata"]["annotations"][BUNDLE_ANNOTATION], since)
            outcome.shadow = decision
            self._event(
                "shadow_gate", passed=decision["passed"], n=decision["n"], reason="; ".join(decision["reasons"])
            )
            if not decision["passed"]:
                outcome.reason = (
                    f"the shadow gate did not pass on {decision['n']} mirrored requests ("
                    + "; ".join(decision["reasons"])
                    + "); the shadow was deleted (users never reached it)."
                )
                return outcome
            return None
        finally:
            kube.delete(VIRTUAL_SERVICE, name)
            self._call("delete", name, self.api.delete_namespaced_custom_object, name, missing_ok=True)
            self._event("shadow_removed", name=name)

    def _first_deploy(self, manifest: dict, outcome: RolloutOutcome, smoke) -> RolloutOutcome:
        name = outcome.name
        created = self._create(manifest)
        self._event("created", generation=created["metadata"].get("generation", 1))
        try:
            return self._first_deploy_checks(manifest, created, outcome, smoke)
        except DeployError as exc:
            try:
                self._delete(name)
                self._event("deleted", reason=exc.problem)
            except DeployError as delete_exc:
                raise DeployError(
                    f"{exc.problem} Deleting the new InferenceService failed too: {delete_exc.problem}", delete_exc.fix
                ) from exc
            raise DeployError(
                f"{exc.problem} The new InferenceService was deleted before this error was reported (nothing served before).",
                exc.fix,
            ) from exc

    def _first_deploy_checks(self, manifest: dict, created: dict, outcome: RolloutOutcome, smoke) -> RolloutOutcome:
        name = outcome.name
        try:
            isvc = self.wait_ready(name, int(created["metadata"].get("generation", 1)))
        except _NotReady as exc:
            self._delete(name)
            self._event("deleted", reason=str(exc))
            outcome.reason = f"the new InferenceService was {exc}; it was deleted (nothing served before)."
            return outcome
        outcome.url = candidate_url(isvc)
        result = smoke(outcome.url)
        outcome.smoke = result.as_dict()
        self._event("smoke_test", passed=result.passed, reason=result.reason)
        if not result.passed:
            self._delete(name)
            self._event("deleted", reason=result.reason)
            outcome.reason = (
                f"smoke test failed ({result.reason}); the new InferenceService was deleted (nothing served before)."
            )
            return outcome
        outcome.status, outcome.reason = (
            "rolled_out",
            f"first deployment is Ready and passed its smoke test; it serves 100% of traffic at {outcome.url}.",
        )
        return outcome

    def _ready_or_rolled_back(
        self, name: str, generation: int, previous: dict, outcome: RolloutOutcome, what: str
    ) -> dict | None:
        """The service once Ready at ``generation``; on a timeout, roll back and say why in ``outcome``."""
        try:
            return self.wait_ready(name, generation)
        except _NotReady as exc:
            self.rollback(name, previous)
            outcome.reason = f"{what} was {exc}; rolled back to the previous spec."
            return None

    def _update(self, manifest: dict, existing: dict, previous: dict, outcome: RolloutOutcome, smoke) -> RolloutOutcome:
        name, mode, percent = outcome.name, outcome.mode, outcome.canary_traffic_percent
        canary = mode == "Serverless" and 0 < percent < 100
        candidate = copy.deepcopy(manifest)
        if canary:
            candidate["metadata"].setdefault("annotations", {})["serving.kserve.io/enable-tag-routing"] = "true"
            for component in ("predictor", "transformer"):
                if component in candidate["spec"]:
                    candidate["spec"][component]["canaryTrafficPercent"] = percent
        replaced = self._replace(candidate, existing)
        self._event(
            "updated",
            canary_traffic_percent=percent if canary else 100,
            generation=replaced["metadata"].get("generation"),
            note=""
            if canary
            else f"{mode} mode: KServe has no traffic split for a transformer here; a rolling update replaces the pods",
        )
        isvc = self._ready_or_rolled_back(
            name, int(replaced["metadata"]["generation"]), previous, outcome, "the updated InferenceService"
        )
        if isvc is None:
            return outcome
        outcome.url = candidate_url(isvc)
        result = smoke(outcome.url)
        outcome.smoke = result.as_dict()
        self._event("smoke_test", passed=result.passed, reason=result.reason, url=outcome.url)
        if not result.passed:
            self.rollback(name, previous)
            outcome.reason = f"smoke test failed ({result.reason}); rolled back to the previous spec."
            return outcome
        if canary:
            patched = self._patch(
                name,
                {
                    "spec": {
                        component: {"canaryTrafficPercent": None}
                        for component in ("predictor", "transformer")
                        if component in manifest["spec"]
                    }
                },
            )
            self._event("traffic_100", traffic_percent=100, generation=patched["metadata"].get("generation"))
            isvc = self._ready_or_rolled_back(
                name, int(patched["metadata"]["generation"]), previous, outcome, "promotion to 100%"
            )
            if isvc is None:
                return outcome
        outcome.url = (isvc.get("status") or {}).get("url") or outcome.url
        outcome.status = "rolled_out"
        outcome.reason = (
            f"canary at {percent}% was Ready and passed its smoke test; promoted to 100%."
            if canary
            else "rolling update is Ready and passed its smoke test."
        )
        return outcome

    def undo(self, outcome: RolloutOutcome) -> None:
        """The cluster back to what served before ``outcome``: the previous spec, or no service at all after a
        first deployment."""
        if outcome.previous_spec is not None:
            self.rollback(outcome.name, outcome.previous_spec)
        else:
            self._delete(outcome.name)
            self._event("deleted", reason="undone")

    def finish(self) -> None:
        """Nothing to retire: the update replaced the previous spec in place."""

    def rollback(self, name: str, previous: dict) -> None:
        current = self.get(name)
        if current is None:
            raise DeployError(
                f"inferenceservice {self.namespace}/{name} disappeared during the rollout; nothing to roll back to.",
                "recreate it from the previous champion (`champion manifests`), then re-run.",
            )
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": previous["labels"],
                "annotations": previous["annotations"],
            },
            "spec": previous["spec"],
        }
        restored = self._replace(body, current)
        self._event("rolled_back", generation=restored["metadata"].get("generation"))
        try:
            self.wait_ready(name, int(restored["metadata"]["generation"]))
        except _NotReady as exc:
            raise DeployError(
                f"the rollback of {self.namespace}/{name} to the previous spec is {exc}.",
                "inspect it with `kubectl describe isvc`; the previous spec is in this step's report.",
            ) from exc
        self._event("previous_spec_ready")
