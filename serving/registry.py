"""The MLflow registry as champion uses it: which bundle is live, and moving that, safely.

The alias ``champion`` on the registered model names the live bundle. Moving it is compare-and-set:
a promotion states which version it evaluated against, and is refused if the alias moved since.
Every decision and alias move is appended to an audit log (a JSONL file beside a sqlite store, or
any fsspec URL) and recorded as tags in MLflow.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from champion.errors import RegistryError

CHAMPION_ALIAS = "champion"
EXPERIMENT = "champion-promotion"


class ChampionMoved(RegistryError):
    """The alias moved after this run resolved the champion it was compared against."""


class NoChampion(RegistryError):
    """No version carries the champion alias (nothing has been promoted yet)."""


def connect(tracking_uri: str, experiment: str = EXPERIMENT):
    """(mlflow module, client, experiment id) for a tracking URI; sqlite stores keep artifacts beside the DB."""
    import mlflow
    from mlflow import MlflowClient

    # MLflow's default (7 retries, doubling backoff) takes minutes to report a dead server; a
    # pipeline step should fail in seconds. Users can still raise both through the environment.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    if not tracking_uri:
        raise RegistryError("no MLflow tracking URI was given, so nothing can be registered or promoted.", "set mlflow_tracking_uri (a server URL, or sqlite:///path/mlflow.db).")
    artifact_location = None
    db_path = sqlite_path(tracking_uri)
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        # With sqlite, MLflow would put artifacts under ./mlruns of whatever the working directory is.
        artifact_location = (db_path.parent / "mlartifacts").resolve().as_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        found = mlflow.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment, artifact_location=artifact_location)
    except Exception as exc:
        raise RegistryError(f"MLflow at {tracking_uri} is unreachable or refused the request: {exc}", "check the tracking URI and that the server is up; nothing was promoted.") from exc
    return mlflow, MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri), experiment_id


def sqlite_path(tracking_uri: str) -> Path | None:
    return Path(tracking_uri.removeprefix("sqlite:///")) if urlparse(tracking_uri).scheme == "sqlite" else None


def default_audit_log(tracking_uri: str) -> str:
    db_path = sqlite_path(tracking_uri)
    return str(db_path.parent / "audit.jsonl") if db_path else ""


def current_champion(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


@dataclass
class ChampionRef:
    version: str
    bundle: dict
    model_source: str
    prompt: str  # name@version


def resolve_champion(tracking_uri: str, name: str) -> ChampionRef | None:
    """The live bundle, or None when nothing has been promoted yet."""
    _, client, _ = connect(tracking_uri)
    version = current_champion(client, name)
    if version is None:
        return None
    tags = client.get_model_version(name, version).tags
    try:
        return ChampionRef(version=version, bundle=json.loads(tags["champion.bundle"]), model_source=tags["champion.weights_source"], prompt=tags["champion.prompt"])
    except (KeyError, ValueError) as exc:
        raise RegistryError(
            f"{name} version {version} (alias {CHAMPION_ALIAS}) lacks champion's bundle tags ({exc}); it cannot be re-evaluated.",
            f"promote a bundle through champion, or remove the alias: MlflowClient().delete_registered_model_alias({name!r}, {CHAMPION_ALIAS!r})",
        ) from exc


@contextlib.contextmanager
def _alias_lock(tracking_uri: str, timeout_s: float = 60.0):
    """An exclusive lock around read-compare-set of the alias. With sqlite it is a file lock beside the
    database, so concurrent promotions on one machine serialise. A tracking server offers no atomic
    alias swap; there the check and the set are as close as the API allows (see move_alias)."""
    db_path = sqlite_path(tracking_uri)
    if db_path is None:
        yield
        return
    lock_path = db_path.with_suffix(".alias.lock")
    with open(lock_path, "a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RegistryError(f"another promotion has held {lock_path} for over {timeout_s:.0f} s.", "wait for it to finish, or remove a stale lock file.") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def move_alias(tracking_uri: str, client, name: str, version: str, *, expected: str | None) -> None:
    """Point the champion alias at ``version`` if it still points at ``expected`` (None: no champion)."""
    with _alias_lock(tracking_uri):
        current = current_champion(client, name)
        if current != expected:
            raise ChampionMoved(
                f"the champion changed while this run was evaluating (it compared against {expected or 'no champion'}, the alias now points at version {current}); promotion refused.",
                "re-run the pipeline so the challenger is compared with the current champion.",
            )
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    if current_champion(client, name) != version:  # a tracking server has no lock: verify nobody overwrote us
        raise ChampionMoved(f"another promotion moved the alias at the same moment; version {version} is not the champion.", "re-run the pipeline.")


def promote_version(
    tracking_uri: str,
    name: str,
    version: str,
    *,
    expected: str | None,
    prompt_name: str,
    prompt_version: int,
    audit_log: str = "",
    audit: dict | None = None,
) -> str | None:
    """Make ``version`` the champion (compare-and-set against ``expected``), point the prompt's alias at
    its prompt version, and write the move down. Returns the previous champion version."""
    _, client, _ = connect(tracking_uri)
    audit = audit or {}
    previous = current_champion(client, name)
    try:
        move_alias(tracking_uri, client, name, version, expected=expected)
    except ChampionMoved as exc:
        client.set_model_version_tag(name, version, "champion.alias_refused", "the champion moved during evaluation")
        append_audit(audit_log, {"event": "alias_refused", **audit, "model": name, "version": version, "reason": exc.problem})
        raise
    client.set_model_version_tag(name, version, "champion.decision", "promoted")
    client.set_prompt_alias(prompt_name, CHAMPION_ALIAS, prompt_version)
    append_audit(audit_log, {"event": "alias_moved", **audit, "model": name, "alias": CHAMPION_ALIAS, "from_version": previous, "to_version": version})
    return previous


def ensure_prompt_version(client, prompt) -> int:
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


def sync_prompts(tracking_uri: str, registered_model_name: str, prompts: list) -> dict[str, int]:
    """Register every prompt version in MLflow's prompt registry (found by digest, never duplicated) and
    point each prompt's ``champion`` alias at the version the live bundle uses."""
    _, client, _ = connect(tracking_uri)
    synced = {f"{prompt.name}@{prompt.version}": ensure_prompt_version(client, prompt) for prompt in prompts}
    live = current_champion(client, registered_model_name)
    if live is not None:
        live_prompt = client.get_model_version(registered_model_name, live).tags.get("champion.prompt", "")
        if live_prompt in synced:
            client.set_prompt_alias(live_prompt.split("@")[0], CHAMPION_ALIAS, synced[live_prompt])
    return synced


def find_version(tracking_uri: str, name: str, *, alias: str = "", bundle_id: str = ""):
    """The model version named by an alias or by (a prefix of) a bundle id."""
    from mlflow.exceptions import MlflowException

    _, client, _ = connect(tracking_uri)
    if alias:
        try:
            return client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            raise RegistryError(f"{name} has no version with alias {alias!r} in {tracking_uri}.", "run `champion run` until a bundle is promoted, or pass --bundle ID.") from exc
    matches = [v for v in client.search_model_versions(f"name='{name}'") if bundle_id and v.tags.get("champion.bundle_id", "").startswith(bundle_id)]
    if len(matches) != 1:
        raise RegistryError(f"{len(matches)} versions of {name} match bundle id {bundle_id!r}.", "pass more characters of the bundle id (see `champion run --json`), or --alias champion.")
    return matches[0]


def append_audit(audit_log: str, record: dict) -> None:
    """Append one JSON line. Local files are locked and fsynced; fsspec URLs get one object per record."""
    if not audit_log:
        return
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": os.environ.get("CHAMPION_GIT_COMMIT", "unknown"), **record}
    line = json.dumps(record, sort_keys=True) + "\n"
    if "://" in audit_log and not audit_log.startswith("file://"):
        import fsspec

        # Object stores cannot append: each record is its own object under the audit prefix, never overwritten.
        key = f"{audit_log.rstrip('/')}/{record['time']}-{record.get('bundle_id', 'x')[:12]}-{record['event']}.json"
        with fsspec.open(key, "w") as handle:
            handle.write(line)
        return
    path = Path(audit_log.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
