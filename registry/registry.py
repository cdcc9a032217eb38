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
from champion.interrupt import refuse_if_cancelled

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
        raise RegistryError(
            "no MLflow tracking URI was given, so nothing can be registered or promoted.",
            "set mlflow_tracking_uri (a server URL, or sqlite:///path/mlflow.db).",
        )
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
        experiment_id = (
            found.experiment_id if found else mlflow.create_experiment(experiment, artifact_location=artifact_location)
        )
    except Exception as exc:
        raise RegistryError(
            f"MLflow at {tracking_uri} is unreachable or refused the request: {exc}",
            "check the tracking URI and that the server is up; nothing was promoted.",
        ) from exc
    return mlflow, MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri), experiment_id


def sqlite_path(tracking_uri: str) -> Path | None:
    return Path(tracking_uri.removeprefix("sqlite:///")) if urlparse(tracking_uri).scheme == "sqlite" else None


def default_audit_log(tracking_uri: str) -> str:
    db_path = sqlite_path(tracking_uri)
    return str(db_path.parent / "audit.jsonl") if db_path else ""


def _alias_missing(exc: Exception) -> bool:
    """Only these mean "no champion": the registered model does not exist yet, or it has no such alias."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    message = str(exc.message if hasattr(exc, "message") else exc)
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST" and "registered model" in message.lower():
        return True
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in message.lower() and "not found" in message.lower()


def current_champion(client, name: str) -> str | None:
    """The champion version, or None when the alias (or the registered model) does not exist.

    Any other failure (server down, 5xx, permission denied) is a RegistryError: treating it as "no
    champion" would silently switch the gate to the floors-only bootstrap rule."""
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except Exception as exc:
        if _alias_missing(exc):
            return None
        code = getattr(exc, "error_code", type(exc).__name__)
        raise RegistryError(
            f"MLflow could not say which version of {name} carries the {CHAMPION_ALIAS!r} alias ({code}): {str(exc)[:300]}",
            "check that the tracking server is up and that this identity may read the model registry; nothing was compared or promoted.",
        ) from exc


def earlier_promotions(client, name: str, audit_log: str = "") -> list[str]:
    """Evidence that a champion existed before: versions tagged promoted, and alias moves in the audit log."""
    evidence = []
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception as exc:
        if not _alias_missing(exc):
            raise RegistryError(
                f"MLflow could not list the versions of {name}: {str(exc)[:300]}",
                "check the tracking server and the identity's permissions.",
            ) from exc
        versions = []
    evidence += [
        f"version {v.version} is tagged promoted"
        for v in versions
        if (v.tags or {}).get("champion.decision") == "promoted"
    ]
    if audit_log and "://" not in audit_log.removeprefix("file://"):
        for event in audit_events(Path(audit_log.removeprefix("file://"))):
            if event.get("event") == "alias_moved" and event.get("model") == name:
                evidence.append(
                    f"the audit log records an alias move to version {event.get('to_version')} at {event.get('time')}"
                )
    return evidence


def audit_events(path: Path, since: int = 0) -> list[dict]:
    """The events of a local audit log (from byte offset ``since``: what was appended after it); a line that is not
    JSON (a torn write) is skipped, a missing log has none."""
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(since)
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


@dataclass
class ChampionRef:
    version: str
    bundle: dict
    model_source: str
    prompt: str  # name@version


def resolve_champion(
    tracking_uri: str, name: str, *, allow_bootstrap: bool = False, audit_log: str = ""
) -> ChampionRef | None:
    """The live bundle, or None when nothing has ever been promoted.

    When the alias is missing but the registry or the audit log shows an earlier promotion, the alias
    was removed or lost: promoting on floors alone then needs ``allow_bootstrap``."""
    _, client, _ = connect(tracking_uri)
    version = current_champion(client, name)
    if version is None:
        evidence = earlier_promotions(client, name, audit_log or default_audit_log(tracking_uri))
        if evidence and not allow_bootstrap:
            raise NoChampion(
                f"{name} has no {CHAMPION_ALIAS!r} alias, yet a champion existed before ({'; '.join(evidence[:3])}). Promoting on floors alone would skip the comparison with what was live.",
                f"restore the alias (MlflowClient().set_registered_model_alias({name!r}, {CHAMPION_ALIAS!r}, VERSION)), or opt in to the floors-only rule: `champion run --bootstrap` / pipeline parameter allow_bootstrap=true.",
            )
        return None
    tags = client.get_model_version(name, version).tags
    try:
        return ChampionRef(
            version=version,
            bundle=json.loads(tags["champion.bundle"]),
            model_source=tags["champion.weights_source"],
            prompt=tags["champion.prompt"],
        )
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
                    raise RegistryError(
                        f"another promotion has held {lock_path} for over {timeout_s:.0f} s.",
                        "wait for it to finish, or remove a stale lock file.",
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def move_alias(tracking_uri: str, client, name: str, version: str, *, expected: str | None) -> None:
    """Point the champion alias at ``version`` if it still points at ``expected`` (None: no champion)."""
    with _alias_lock(tracking_uri):
        refuse_if_cancelled(
            f"moving the {CHAMPION_ALIAS!r} alias to version {version}"
        )  # the last check before the one irreversible act
        current = current_champion(client, name)
        if current != expected:
            raise ChampionMoved(
                f"the champion changed while this run was evaluating (it compared against {expected or 'no champion'}, the alias now points at version {current}); promotion refused.",
                "re-run the pipeline so the challenger is compared with the current champion.",
            )
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    if current_champion(client, name) != version:  # a tracking server has no lock: verify nobody overwrote us
        raise ChampionMoved(
            f"another promotion moved the alias at the same moment; version {version} is not the champion.",
            "re-run the pipeline.",
        )


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
        append_audit(
            audit_log, {"event": "alias_refused", **audit, "model": name, "version": version, "reason": exc.problem}
        )
        raise
    client.set_model_version_tag(name, version, "champion.decision", "promoted")
    client.set_prompt_alias(prompt_name, CHAMPION_ALIAS, prompt_version)
    _release_previous_prompt_alias(client, name, previous, prompt_name)
    append_audit(
        audit_log,
        {
            "event": "alias_moved",
            **audit,
            "model": name,
            "alias": CHAMPION_ALIAS,
            "from_version": previous,
            "to_version": version,
        },
    )
    return previous


def ensure_prompt_version(client, prompt) -> int:
    """The MLflow prompt version holding exactly this template (found by digest, else created)."""
    from mlflow.exceptions import MlflowException

    try:
        existing = list(client.search_prompt_versions(prompt.name))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(
                f"MLflow could not list the versions of prompt {prompt.name}: {str(exc)[:300]}",
                "check the tracking server and the identity's permissions.",
            ) from exc
        existing = []
    for version in existing:
        if version.tags.get("champion.digest") == prompt.digest:
            return int(version.version)
    for version in existing:  # one label, one content: never register a second text as the same name@version
        if version.tags.get("champion.version") == str(prompt.version):
            raise RegistryError(
                f"MLflow's prompt registry already holds {prompt.name}@{prompt.version} with other content (digest {version.tags.get('champion.digest', '?')[:12]}, this prompt {prompt.digest[:12]}).",
                f"give the changed prompt a new version (version: {prompt.version + 1}) or a new name.",
            )
    registered = client.register_prompt(
        name=prompt.name,
        template=[m.model_dump() for m in prompt.messages],
        commit_message=f"champion prompt {prompt.name} v{prompt.version}",
        tags={"champion.version": str(prompt.version), "champion.digest": prompt.digest},
        model_config=prompt.decoding.model_dump(mode="json"),
    )
    return int(registered.version)


def _release_previous_prompt_alias(client, name: str, previous: str | None, prompt_name: str) -> None:
    """The ``champion`` alias of a prompt follows the live bundle: when the new champion uses another prompt,
    the previous champion's prompt loses the alias (it is no longer live)."""
    from mlflow.exceptions import MlflowException

    if previous is None:
        return
    previous_prompt = client.get_model_version(name, previous).tags.get("champion.prompt", "").split("@")[0]
    if previous_prompt and previous_prompt != prompt_name:
        try:
            client.delete_prompt_alias(previous_prompt, CHAMPION_ALIAS)
        except MlflowException:  # already gone (deleted by hand): nothing to release
            pass


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
            raise RegistryError(
                f"{name} has no version with alias {alias!r} in {tracking_uri}.",
                "run `champion run` until a bundle is promoted, or pass --bundle ID.",
            ) from exc
    matches = [
        v
        for v in client.search_model_versions(f"name='{name}'")
        if bundle_id and v.tags.get("champion.bundle_id", "").startswith(bundle_id)
    ]
    if len(matches) != 1:
        raise RegistryError(
            f"{len(matches)} versions of {name} match bundle id {bundle_id!r}.",
            "pass more characters of the bundle id (see `champion run --json`), or --alias champion.",
        )
    return matches[0]


def append_audit(audit_log: str, record: dict) -> None:
    """Append one JSON line. Local files are locked and fsynced; fsspec URLs get one object per record."""
    if not audit_log:
        return
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": os.environ.get("CHAMPION_GIT_COMMIT", "unknown"),
        **record,
    }
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
