"""register: record the bundle in MLflow and move the ``champion`` alias only when the gate passed.

Every evaluated bundle becomes a registered model version (tagged with its id and gate decision),
so rejected challengers stay auditable; the alias, which names what is live, moves only on a pass.
The prompt goes to MLflow's prompt registry under its own name, with the same alias rule.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

from kfp.dsl import Artifact, Dataset, Input, Markdown

from champion.bundle import Bundle
from champion.errors import RegistryError
from components import cpu_step
from prompts import PromptTemplate

VERSION = "1.0.0"
CHAMPION_ALIAS = "champion"
EXPERIMENT = "champion-promotion"


@dataclass
class Registration:
    model_version: str
    alias_moved: bool
    previous_champion: str | None
    run_id: str
    prompt_version: int


def _connect(tracking_uri: str):
    import mlflow
    from mlflow import MlflowClient

    # MLflow's default (7 retries, doubling backoff) takes minutes to report a dead server; a
    # pipeline step should fail in seconds. Users can still raise both through the environment.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    if not tracking_uri:
        raise RegistryError("no MLflow tracking URI was given, so nothing can be registered or promoted.", "set mlflow_tracking_uri (a server URL, or sqlite:///path/mlflow.db).")
    parsed = urlparse(tracking_uri)
    artifact_location = None
    if parsed.scheme == "sqlite":
        db_path = Path(tracking_uri.removeprefix("sqlite:///"))
        db_path.parent.mkdir(parents=True, exist_ok=True)
        # With sqlite, MLflow would put artifacts under ./mlruns of whatever the working directory is.
        artifact_location = (db_path.parent / "mlartifacts").resolve().as_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_location)
    except Exception as exc:
        raise RegistryError(f"MLflow at {tracking_uri} is unreachable or refused the request: {exc}", "check the tracking URI and that the server is up; nothing was promoted.") from exc
    return mlflow, MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri), experiment_id


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Model+prompt bundles evaluated by champion; alias 'champion' is live.")


def _ensure_prompt_version(client, prompt: PromptTemplate) -> int:
    """The MLflow prompt version holding exactly this template (found by digest, else created)."""
    from mlflow.exceptions import MlflowException

    try:
        existing = list(client.search_prompt_versions(prompt.name))
    except MlflowException:
        existing = []
    for version in existing:
        if version.tags.get("champion.digest") == prompt.digest:
            return int(version.version)
    registered = client.register_prompt(
        name=prompt.name,
        template=[m.model_dump() for m in prompt.messages],
        commit_message=f"champion prompt {prompt.name} v{prompt.version}",
        tags={"champion.version": str(prompt.version), "champion.digest": prompt.digest},
        model_config=prompt.decoding.model_dump(mode="json"),
    )
    return int(registered.version)


def current_champion(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def register_bundle(
    *,
    tracking_uri: str,
    registered_model_name: str,
    bundle: Bundle,
    prompt: PromptTemplate,
    decision: dict,
    files: dict[str, str],
    weights_source: str,
) -> Registration:
    """Log the evaluation as an MLflow run, register the bundle version, and promote it if ``decision['passed']``.

    ``files`` maps artifact names (``gate_report.md``) to local paths to attach to the run.
    """
    if bundle.prompt != prompt.ref:
        raise RegistryError("the prompt given does not match the bundle's prompt digest.", "register with the prompt the bundle was generated with.")
    mlflow, client, experiment_id = _connect(tracking_uri)
    passed = decision.get("passed") is True  # anything but an explicit True is a rejection
    tags = {
        "champion.bundle_id": bundle.id,
        "champion.decision": "promoted" if passed else "rejected",
        "champion.model_digest": bundle.model_digest,
        "champion.prompt": f"{prompt.name}@{prompt.version}",
        "champion.prompt_digest": prompt.digest,
        "champion.dataset_digest": bundle.dataset_digest,
        "champion.weights_source": weights_source,
        "champion.git_commit": os.environ.get("CHAMPION_GIT_COMMIT", "unknown"),
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{prompt.name}@{prompt.version} {bundle.short_id}") as run:
        mlflow.set_tags(tags)
        mlflow.log_params({"prompt": f"{prompt.name}@{prompt.version}", "decoding": json.dumps(bundle.decoding, sort_keys=True), "policy": decision.get("policy", "")})
        mlflow.log_metrics({c["metric"]: c["value"] for c in decision.get("checks", []) if c.get("value") is not None})
        mlflow.log_dict(bundle.model_dump(mode="json") | {"id": bundle.id}, "bundle/bundle.json")
        mlflow.log_dict(decision, "gate/decision.json")
        with tempfile.TemporaryDirectory() as staging:
            for name, path in files.items():  # KFP names files after the output, without an extension
                named = Path(staging) / name
                shutil.copyfile(path, named)
                mlflow.log_artifact(str(named), artifact_path="gate" if name.startswith("gate") else "evaluation")
        run_id = run.info.run_id
        source = f"{run.info.artifact_uri}/bundle"
    _ensure_registered_model(client, registered_model_name)
    found = client.search_model_versions(f"name='{registered_model_name}' and tags.`champion.bundle_id`='{bundle.id}'")
    if found:
        version = str(found[0].version)
        for key in ("champion.decision",):
            client.set_model_version_tag(registered_model_name, version, key, tags[key])
    else:
        version = str(client.create_model_version(registered_model_name, source=source, run_id=run_id, tags=tags, description=f"bundle {bundle.id}").version)
    prompt_version = _ensure_prompt_version(client, prompt)
    previous = current_champion(client, registered_model_name)
    if passed:
        client.set_registered_model_alias(registered_model_name, CHAMPION_ALIAS, version)
        client.set_prompt_alias(prompt.name, CHAMPION_ALIAS, prompt_version)
    return Registration(model_version=str(version), alias_moved=passed, previous_champion=previous, run_id=run_id, prompt_version=prompt_version)


@cpu_step
def register_op(
    bundle: str,
    prompt: str,
    model_source: str,
    mlflow_tracking_uri: str,
    registered_model_name: str,
    decision: Input[Artifact],
    report: Input[Markdown],
    scores: Input[Dataset],
) -> NamedTuple("RegisterOutputs", [("model_version", str), ("alias_moved", bool)]):
    """register v1.0.0: record the bundle in MLflow; move the 'champion' alias only if the gate passed."""
    import json
    from collections import namedtuple

    from champion.bundle import Bundle
    from components.register import register_bundle
    from prompts import load_prompt

    with open(decision.path, encoding="utf-8") as handle:
        verdict = json.load(handle)
    result = register_bundle(
        tracking_uri=mlflow_tracking_uri,
        registered_model_name=registered_model_name,
        bundle=Bundle.model_validate_json(bundle),
        prompt=load_prompt(prompt),
        decision=verdict,
        files={"gate_report.md": report.path, "scores.jsonl": scores.path},
        weights_source=model_source,
    )
    print(f"register: {registered_model_name} version {result.model_version}; alias moved: {result.alias_moved} (previous champion: {result.previous_champion})")
    return namedtuple("RegisterOutputs", ["model_version", "alias_moved"])(result.model_version, result.alias_moved)
