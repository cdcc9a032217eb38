"""Rolling a bundle out on KServe's LLM API (``LLMInferenceService``, llm-d): shadow, canary, then 100%.

Each bundle has its own objects, side by side while the candidate is tried: an LLMInferenceService (the
model) and its prompt router (Deployment + Service, serving/llm_service.py). Clients call one HTTPRoute, the
service's *front route* (``/<namespace>/<service>/…`` on the gateway), and the rollout moves traffic by
rewriting only that route:

1. the candidate's objects are created and must become Ready (the LLMInferenceService's Ready condition,
   the router Deployment's available replicas); its own router must pass the smoke test before any user
   request reaches it;
2. **shadow** (when asked): the front route keeps serving the live bundle and mirrors every request to the
   candidate's router (``RequestMirror``); once enough mirrored requests have been answered by both, the
   ``shadow`` callback pairs them and gates (serving/shadow.py). Only a passing shadow goes on;
3. **canary**: the front route splits by weight between the live and the candidate's prompt router (a bundle
   is a model *and* a prompt, so the split is in front of the prompts), and the gateway must accept it;
4. **100%**: the route serves the candidate alone. The previous bundle's objects are deleted by ``finish``,
   which the deploy step calls only once the MLflow alias has moved.

Any failure restores the previous route and deletes the candidate's objects (``undo``), so users are always
on what the registry says is live. Every write is an optimistic replace (a concurrent editor gets a 409,
never an overwrite).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from champion.errors import DeployError
from serving.kube import DEPLOYMENT, HTTP_ROUTE, KINDS, LLM_INFERENCE_SERVICE, ConflictError, KubeObjects, condition
from serving.llm_service import route_backends, router_service, validate_llm
from serving.manifests import DEPLOYER_VERBS
from serving.rollout import BUNDLE_ANNOTATION, RolloutOutcome
from serving.smoke import SmokeResult

RBAC_HINT = (
    "apply the Role and RoleBinding from `champion manifests --serving-api llminferenceservice` to the namespace "
    f"(the pipeline's service account needs {', '.join(DEPLOYER_VERBS)} on llminferenceservices, httproutes, "
    "deployments and services)."
)


@dataclass
class BundleObjects:
    """What serves one bundle on the LLM API: its LLMInferenceService and its prompt router."""

    name: str
    llm_service: dict
    router: list[dict]  # Deployment, Service

    @property
    def bundle_id(self) -> str:
        return self.llm_service["metadata"]["annotations"][BUNDLE_ANNOTATION]

    @property
    def objects(self) -> list[dict]:
        return [self.llm_service, *self.router]


class _NotReady(Exception):
    pass


def _why(conditions: list[dict]) -> str:
    return "; ".join(
        f"{c.get('type')}={c.get('status')} {c.get('reason', '')} {c.get('message', '')}".strip() for c in conditions
    )


def llm_service_ready(obj: dict) -> bool:
    status = obj.get("status") or {}
    generation = int(obj["metadata"].get("generation") or 1)
    return int(status.get("observedGeneration") or 0) >= generation and condition(obj, "Ready").get("status") == "True"


def deployment_ready(obj: dict) -> bool:
    status = obj.get("status") or {}
    generation = int(obj["metadata"].get("generation") or 1)
    wanted = int(obj["spec"].get("replicas", 1))
    return (
        int(status.get("observedGeneration") or 0) >= generation and int(status.get("availableReplicas") or 0) >= wanted
    )


def route_accepted(route: dict, gateway: str) -> bool:
    """The gateway named ``gateway`` accepted this generation of the route and resolved its backends."""
    generation = int(route["metadata"].get("generation") or 1)
    for parent in (route.get("status") or {}).get("parents") or []:
        if parent.get("parentRef", {}).get("name") != gateway:
            continue
        conditions = {c["type"]: c for c in parent.get("conditions") or []}
        return all(
            conditions.get(kind, {}).get("status") == "True"
            and int(conditions[kind].get("observedGeneration") or 0) >= generation
            for kind in ("Accepted", "ResolvedRefs")
        )
    return False


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class LLMRollout:
    """One rollout of one bundle behind the front route ``route_name``. ``render_route(backends, mirror)`` renders
    that route (serving.llm_service.render_bundle_route with the gateway filled in); ``router_url(service)`` is
    where a prompt router's Service answers (the cluster DNS name on a cluster)."""

    def __init__(
        self,
        client,
        namespace: str,
        *,
        route_name: str,
        gateway: str,
        render_route: Callable[[list[tuple[str, int]], str], dict],
        router_url: Callable[[str], str],
        ready_timeout_s: float = 900.0,
        poll_s: float = 5.0,
        request_timeout_s: float = 30.0,
        retries: int = 2,
    ) -> None:
        self.kube = KubeObjects(
            client, namespace, rbac_hint=RBAC_HINT, request_timeout_s=request_timeout_s, retries=retries
        )
        self.namespace = namespace
        self.route_name = route_name
        self.gateway = gateway
        self.render_route = render_route
        self.router_url = router_url
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s
        self.events: list[dict] = []
        self._previous_route: dict | None = None
        self._previous_live = ""
        self._candidate: BundleObjects | None = None

    def _event(self, step: str, **details) -> None:
        self.events.append({"time": _now(), "step": step, **details})

    # -- waiting -------------------------------------------------------------------------------------

    def _wait(self, what: str, check: Callable[[], tuple[bool, str]]) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            done, why = check()
            if done:
                return
            if time.monotonic() >= deadline:
                raise _NotReady(f"{what} was not ready after {self.ready_timeout_s:.0f} s ({why or 'no status yet'})")
            time.sleep(self.poll_s)

    def _candidate_ready(self, candidate: BundleObjects) -> tuple[bool, str]:
        llm = self.kube.get(LLM_INFERENCE_SERVICE, candidate.name)
        deployment = self.kube.get(DEPLOYMENT, router_service(candidate.name))
        if llm is None or deployment is None:
            raise DeployError(
                f"the candidate's objects ({candidate.name}) disappeared while the rollout waited for them.",
                "find out who deleted them (`kubectl get events`), then re-run.",
            )
        if not llm_service_ready(llm):
            return False, "LLMInferenceService: " + _why((llm.get("status") or {}).get("conditions") or [])
        if not deployment_ready(deployment):
            available = (deployment.get("status") or {}).get("availableReplicas") or 0
            return False, f"prompt router: {available}/{deployment['spec'].get('replicas', 1)} replicas available"
        return True, ""

    def _route_ready(self) -> tuple[bool, str]:
        route = self.kube.get(HTTP_ROUTE, self.route_name)
        if route is None:
            raise DeployError(
                f"the route {self.namespace}/{self.route_name} disappeared during the rollout.",
                "find out who deleted it, then re-run (the previous bundle's objects are untouched).",
            )
        parents = (route.get("status") or {}).get("parents") or []
        why = "; ".join(_why(p.get("conditions") or []) for p in parents)
        return route_accepted(route, self.gateway), why or f"gateway {self.gateway} has not reported on it"

    # -- writes ----------------------------------------------------------------------------------------

    def _apply(self, obj: dict) -> dict:
        """Create ``obj``; when it exists already for the same bundle (a re-run after an interrupted attempt),
        replace it. An object of that name serving another bundle is a conflict."""
        try:
            return self.kube.create(obj)
        except ConflictError:
            existing = self.kube.get(KINDS[obj["kind"]], obj["metadata"]["name"])
            if existing is None or (existing["metadata"].get("annotations") or {}).get(BUNDLE_ANNOTATION) != (
                obj["metadata"].get("annotations") or {}
            ).get(BUNDLE_ANNOTATION):
                raise
            return self.kube.replace(obj, existing)

    def _set_route(self, backends: list[tuple[str, int]], mirror: str = "") -> dict:
        body = self.render_route(backends, mirror)
        current = self.kube.get(HTTP_ROUTE, self.route_name)
        return self.kube.create(body) if current is None else self.kube.replace(body, current)

    def _delete_bundle(self, name: str) -> None:
        for kind, object_name in (
            (LLM_INFERENCE_SERVICE, name),
            (DEPLOYMENT, router_service(name)),
            (KINDS["Service"], router_service(name)),
        ):
            self.kube.delete(kind, object_name)

    # -- the rollout -----------------------------------------------------------------------------------

    def run(
        self,
        candidate: BundleObjects,
        *,
        canary_traffic_percent: int,
        smoke: Callable[[str], SmokeResult],
        shadow: Callable[[str, str, str], dict] | None = None,
    ) -> RolloutOutcome:
        """``shadow(live_bundle_id, candidate_bundle_id, since)`` runs while the route mirrors to the candidate
        and returns the shadow gate's decision (with ``passed``); None skips the shadow stage."""
        validate_llm(candidate.llm_service)
        if not 0 <= canary_traffic_percent <= 100:
            raise DeployError(
                f"canary traffic percent must be 0..100, got {canary_traffic_percent}.",
                "pass e.g. 10 for a 10% canary, or 100 to switch at once.",
            )
        outcome = RolloutOutcome(
            "rolled_back",
            "",
            candidate.name,
            self.namespace,
            "LLMInferenceService",
            canary_traffic_percent,
            events=self.events,
        )
        route = self.kube.get(HTTP_ROUTE, self.route_name)
        if route is not None:
            backends = route_backends(route)
            self._previous_route = route
            self._previous_live = max(backends, key=lambda name: backends[name])
            outcome.previous_spec = {"route": route["spec"], "live": self._previous_live}
            if set(backends) == {candidate.name}:
                outcome.status, outcome.reason = "rolled_out", f"{candidate.name} already serves all of the route."
                return outcome
        self._candidate = candidate
        for obj in candidate.objects:
            self._apply(obj)
        self._event("created", objects=", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in candidate.objects))
        try:
            return self._try(candidate, outcome, smoke, shadow)
        except DeployError as exc:
            # A Kubernetes error mid-rollout must not leave users on the candidate: undo first, then report both.
            try:
                self.undo()
            except DeployError as undo_exc:
                raise DeployError(
                    f"{exc.problem} Undoing the rollout failed too: {undo_exc.problem}", undo_exc.fix
                ) from exc
            raise DeployError(
                f"{exc.problem} The route was restored and the candidate's objects deleted before this error was reported.",
                exc.fix,
            ) from exc

    def _shadow_stage(self, candidate: BundleObjects, live: str, shadow, outcome: RolloutOutcome) -> str | None:
        """Mirror the live route's traffic to the candidate and let the shadow gate judge the pairs; returns why
        the rollout stops, or None when the gate passed."""
        live_obj = self.kube.get(LLM_INFERENCE_SERVICE, live)
        live_bundle = ((live_obj or {}).get("metadata", {}).get("annotations") or {}).get(BUNDLE_ANNOTATION)
        if not live_bundle:
            raise DeployError(
                f"the live LLMInferenceService {self.namespace}/{live} is missing or carries no {BUNDLE_ANNOTATION}.",
                "the route points at something champion did not deploy; fix the route, then re-run.",
            )
        since = _now()
        self._set_route([(live, 100)], mirror=candidate.name)
        self._event("shadow_started", live=live, mirrored_to=candidate.name)
        try:
            self._wait(f"the mirrored route {self.route_name}", self._route_ready)
        except _NotReady as exc:
            return f"{exc}; the route was restored and the candidate deleted."
        decision = shadow(live_bundle, candidate.bundle_id, since)
        outcome.shadow = decision
        self._event("shadow_gate", passed=decision["passed"], n=decision["n"], reason="; ".join(decision["reasons"]))
        if not decision["passed"]:
            return (
                f"the shadow gate did not pass on {decision['n']} mirrored requests ("
                + "; ".join(decision["reasons"])
                + "); the route was restored and the candidate deleted (users never reached it)."
            )
        return None

    def _candidate_stage(self, candidate: BundleObjects, outcome: RolloutOutcome, smoke) -> str | None:
        """Wait until the candidate is Ready, then smoke-test it through its own router; returns why the rollout
        stops, or None when it passed (users never reach it in this stage)."""
        try:
            self._wait(f"the candidate {candidate.name}", lambda: self._candidate_ready(candidate))
        except _NotReady as exc:
            return f"{exc}; its objects were deleted (users never reached it)."
        self._event("ready", name=candidate.name)
        outcome.url = self.router_url(router_service(candidate.name))
        result = smoke(outcome.url)
        outcome.smoke = result.as_dict()
        self._event("smoke_test", passed=result.passed, reason=result.reason, url=outcome.url)
        if not result.passed:
            return f"smoke test failed ({result.reason}); the candidate was deleted (users never reached it)."
        return None

    def _shift_route(self, backends: list[tuple[str, int]], what: str, step: str, **details) -> str | None:
        """Point the route at ``backends`` (recorded as event ``step``) and wait until it is accepted; returns why
        it was not, or None."""
        self._set_route(backends)
        self._event(step, **details)
        try:
            self._wait(what, self._route_ready)
        except _NotReady as exc:
            return str(exc)
        return None

    def _try(self, candidate: BundleObjects, outcome: RolloutOutcome, smoke, shadow) -> RolloutOutcome:
        """The stages after the candidate's objects exist: Ready and smoke-tested, then (with a live bundle) the
        shadow gate, the canary and all traffic; any refusal undoes the rollout."""

        def give_up(reason: str) -> RolloutOutcome:
            self.undo()
            outcome.reason = reason
            return outcome

        refused = self._candidate_stage(candidate, outcome, smoke)
        if refused:
            return give_up(refused)
        everything = [(candidate.name, 100)]
        route = f"the route {self.route_name}"
        live = self._previous_live
        if not live:
            not_ready = self._shift_route(everything, route, "traffic_100", traffic_percent=100)
            if not_ready:
                return give_up(f"{not_ready}; the route and the candidate were deleted (nothing served before).")
            outcome.status, outcome.reason = (
                "rolled_out",
                f"first deployment is Ready and passed its smoke test; the route {self.route_name} serves it.",
            )
            return outcome
        if shadow is not None:
            refused = self._shadow_stage(candidate, live, shadow, outcome)
            if refused:
                return give_up(refused)
        percent = outcome.canary_traffic_percent
        if 0 < percent < 100:
            canary = [(live, 100 - percent), (candidate.name, percent)]
            not_ready = self._shift_route(
                canary, f"the canary route {self.route_name}", "canary", canary_traffic_percent=percent
            )
            if not_ready:
                return give_up(f"{not_ready}; the route was restored and the candidate deleted.")
        not_ready = self._shift_route(everything, route, "traffic_100", traffic_percent=100)
        if not_ready:
            return give_up(f"{not_ready}; the route was restored and the candidate deleted.")
        outcome.status = "rolled_out"
        passed = ["The candidate passed its smoke test"]
        passed += ["the shadow gate passed"] if shadow is not None else []
        passed += [f"the canary at {percent}% was accepted"] if 0 < percent < 100 else []
        outcome.reason = f"{', '.join(passed)}; the route {self.route_name} serves it at 100%."
        return outcome

    def undo(self, outcome: RolloutOutcome | None = None) -> None:
        """Users back on the previous bundle (its route restored, or the route deleted on a first deploy), then
        the candidate's objects deleted."""
        if self._previous_route is not None:
            previous = self._previous_route
            current = self.kube.get(HTTP_ROUTE, self.route_name)
            body = {
                "apiVersion": previous["apiVersion"],
                "kind": "HTTPRoute",
                "metadata": {
                    "name": self.route_name,
                    "namespace": self.namespace,
                    "labels": previous["metadata"].get("labels") or {},
                    "annotations": previous["metadata"].get("annotations") or {},
                },
                "spec": previous["spec"],
            }
            if current is None:
                self.kube.create(body)
            elif current["spec"] != previous["spec"]:
                self.kube.replace(body, current)
            self._event("route_restored", live=self._previous_live)
        elif self._candidate is not None:
            self.kube.delete(HTTP_ROUTE, self.route_name)
        if self._candidate is not None and self._candidate.name != self._previous_live:
            self._delete_bundle(self._candidate.name)
            self._event("deleted", name=self._candidate.name)

    def finish(self) -> None:
        """After the alias moved: the previous bundle's objects go (their GPUs with them)."""
        if self._previous_live and self._candidate is not None and self._previous_live != self._candidate.name:
            self._delete_bundle(self._previous_live)
            self._event("retired", name=self._previous_live)
