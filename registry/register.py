"""register: record the bundle and the gate decision in MLflow.

Every evaluated bundle becomes a registered model version (tagged with its id and decision), so
rejected challengers stay auditable. A passing bundle is tagged ``approved``; the ``champion`` alias
moves later, in the deploy step, and only once the bundle serves (see components/deploy.py). Each
decision is appended to the audit log and logged on both bundles' MLflow runs.
"""

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from champion.bundle import Bundle
from champion.errors import RegistryError
from evaluators.gate import interval_metrics
from prompts import PromptTemplate
from registry.registry import append_audit, connect, ensure_prompt_version


@dataclass
class Registration:
    model_version: str
    approved: bool  # the gate passed; the deploy step makes it the champion once it serves
    run_id: str
    prompt_version: int


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Model+prompt bundles evaluated by champion; alias 'champion' is live."
        )


def _log_files(mlflow, files: dict[str, str], artifact_path: str) -> None:
    with tempfile.TemporaryDirectory() as staging:
        for name, path in files.items():  # KFP names files after the output, without an extension
            named = Path(staging) / name
            shutil.copyfile(path, named)
            mlflow.log_artifact(str(named), artifact_path=artifact_path)


def _version_tags(
    bundle: Bundle,
    prompt: PromptTemplate,
    passed: bool,
    weights_source: str,
    expected_champion: str | None,
    commit: str,
    pipeline_run: str,
) -> dict[str, str]:
    """The tags on the evaluation run and the model version: the bundle, the decision, where it came from."""
    return {
        "champion.bundle_id": bundle.id,
        "champion.bundle": json.dumps(bundle.model_dump(mode="json"), sort_keys=True),
        "champion.gate": "passed" if passed else "failed",
        "champion.decision": "approved" if passed else "rejected",
        "champion.model_digest": bundle.model_digest,
        "champion.prompt": f"{prompt.name}@{prompt.version}",
        "champion.prompt_digest": prompt.digest,
        "champion.dataset_digest": bundle.dataset_digest,
        "champion.weights_source": weights_source,
        "champion.compared_with": expected_champion or "none (bootstrap rule)",
        "champion.git_commit": commit,
        "champion.pipeline_run": pipeline_run or "unknown",
    }


def _log_evaluation(
    mlflow,
    experiment_id: str,
    bundle: Bundle,
    prompt: PromptTemplate,
    decision: dict,
    files: dict[str, str],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> tuple[str, str]:
    """The evaluation as an MLflow run (tags, parameters, finite metrics, intervals, the bundle, its prompt, the
    decision and the evaluation files); returns (run id, the bundle's artifact URI)."""
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{prompt.name}@{prompt.version} {bundle.short_id}"
    ) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                "prompt": f"{prompt.name}@{prompt.version}",
                "decoding": json.dumps(bundle.decoding, sort_keys=True),
                "policy": decision.get("policy", ""),
            }
        )
        mlflow.log_metrics({name: value for name, value in metrics.items() if math.isfinite(value)})
        mlflow.log_metrics(interval_metrics(decision.get("checks", [])))
        mlflow.log_dict(bundle.model_dump(mode="json") | {"id": bundle.id}, "bundle/bundle.json")
        mlflow.log_dict(prompt.model_dump(mode="json"), "bundle/prompt.json")  # what a deployment applies
        mlflow.log_dict(decision, "gate/decision.json")
        _log_files(mlflow, files, "evaluation")
        return run.info.run_id, f"{run.info.artifact_uri}/bundle"


def _register_version(client, name: str, bundle: Bundle, tags: dict[str, str], source: str, run_id: str) -> str:
    """The bundle's model version: found by its bundle id (its decision tags updated), or created."""
    _ensure_registered_model(client, name)
    found = client.search_model_versions(f"name='{name}' and tags.`champion.bundle_id`='{bundle.id}'")
    if found:
        version = str(found[0].version)
        for key in ("champion.gate", "champion.decision"):
            client.set_model_version_tag(name, version, key, tags[key])
        return version
    return str(
        client.create_model_version(
            name, source=source, run_id=run_id, tags=tags, description=f"bundle {bundle.id}"
        ).version
    )


def register_bundle(
    *,
    tracking_uri: str,
    registered_model_name: str,
    bundle: Bundle,
    prompt: PromptTemplate,
    decision: dict,
    files: dict[str, str],
    weights_source: str,
    expected_champion: str | None = None,
    audit_log: str = "",
    metrics: dict[str, float] | None = None,
    pipeline_run: str = "",
) -> Registration:
    """Log the evaluation and register the bundle version, approved if ``decision['gate']`` is "passed".

    ``expected_champion`` is the champion version the decision was made against (None: there was
    none). ``files`` maps artifact names to local paths.
    """
    if bundle.prompt != prompt.ref:
        raise RegistryError(
            "the prompt given does not match the bundle's prompt digest.",
            "register with the prompt the bundle was generated with.",
        )
    mlflow, client, experiment_id = connect(tracking_uri)
    passed = decision.get("gate") == "passed"  # anything but an explicit pass is a rejection
    commit = os.environ.get("CHAMPION_GIT_COMMIT", "unknown")
    tags = _version_tags(bundle, prompt, passed, weights_source, expected_champion, commit, pipeline_run)
    run_id, source = _log_evaluation(mlflow, experiment_id, bundle, prompt, decision, files, metrics or {}, tags)
    version = _register_version(client, registered_model_name, bundle, tags, source, run_id)
    if expected_champion:  # the decision is part of the champion's record too
        champion_run = client.get_model_version(registered_model_name, expected_champion).run_id
        if champion_run:
            client.log_dict(champion_run, decision, f"challenges/{bundle.short_id}/decision.json")
    prompt_version = ensure_prompt_version(client, prompt)
    audit = {
        "bundle_id": bundle.id,
        "model": registered_model_name,
        "version": version,
        "gate": tags["champion.gate"],
        "decision": tags["champion.decision"],
        "compared_with": expected_champion,
        "mlflow_run": run_id,
        "pipeline_run": pipeline_run,
        "git_commit": commit,
    }
    append_audit(audit_log, {"event": "gate_decision", **audit, "reasons": decision.get("reasons", [])})
    return Registration(model_version=version, approved=passed, run_id=run_id, prompt_version=prompt_version)


def record_look(
    *, audit_log: str, registered_model_name: str, bundle: Bundle, decision: dict, pipeline_run: str = ""
) -> None:
    """A sequential look that does not decide yet: nothing is registered (no version, the alias untouched); the
    audit log says where the gate stands, and the next look's run decides."""
    append_audit(
        audit_log,
        {
            "event": "gate_look",
            "bundle_id": bundle.id,
            "model": registered_model_name,
            "gate": decision.get("gate"),
            "at": decision.get("decided_at", ""),
            "compared_with": (decision.get("champion") or {}).get("version"),
            "pipeline_run": pipeline_run,
        },
    )
