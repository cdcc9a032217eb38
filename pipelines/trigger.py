"""`champion trigger`: which bundles a change touches, and a promotion run for each.

A bundle changes when a prompt file ``prompts/<name>/v<N>.yaml`` is added or edited, or when
``prompts/models.yaml`` gives a prompt another model. Judge rubrics and the lock file are linted but
start no run of their own.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from champion.errors import ChampionError

MODELS_FILE = "prompts/models.yaml"
_PROMPT_FILE = re.compile(r"^prompts/(?P<name>[a-z0-9][a-z0-9-]*)/v(?P<version>\d+)\.ya?ml$")


class TriggerError(ChampionError):
    """Change detection could not run (not a git repository, unknown ref, bad models file)."""


@dataclass(frozen=True)
class ChangedBundle:
    prompt: str  # name@version
    path: Path
    model: str
    reason: str


def _git(repo: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30).stdout
    except FileNotFoundError as exc:
        raise TriggerError(
            "git is not installed.", "install git; change detection reads the repository history."
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise TriggerError(
            f"git {' '.join(args)} failed in {repo}: {exc.stderr.strip()[:300]}",
            "run inside the repository; in CI check out with full history (actions/checkout fetch-depth: 0).",
        ) from exc


def changed_files(repo: Path, since: str) -> list[str]:
    """Files changed between the merge base of ``since`` and HEAD (what a pull request changes)."""
    try:
        _git(repo, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}")
    except TriggerError as exc:
        raise TriggerError(
            f"git ref {since!r} is not known in {repo}.",
            f"fetch it first (git fetch origin {since.split('/')[-1]}), or pass a commit.",
        ) from exc
    base = _git(repo, "merge-base", since, "HEAD").strip()
    return [line for line in _git(repo, "diff", "--name-only", "--diff-filter=ACMR", base, "HEAD").splitlines() if line]


def read_models(text: str | None, where: str) -> dict:
    if not text:
        return {"default": "smollm2", "prompts": {}}
    data = yaml.safe_load(text) or {}
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("default", ""), str)
        or not isinstance(data.get("prompts", {}), dict)
        or set(data) - {"default", "prompts"}
    ):
        raise TriggerError(
            f"{where} must be a mapping with 'default' (a model source) and 'prompts' (prompt name → model source).",
            "see prompts/models.yaml in the champion repository.",
        )
    return {
        "default": data.get("default", "smollm2"),
        "prompts": {str(k): str(v) for k, v in (data.get("prompts") or {}).items()},
    }


def model_for(name: str, models: dict) -> str:
    return models["prompts"].get(name, models["default"])


def _latest_versions(repo: Path) -> dict[str, int]:
    latest: dict[str, int] = {}
    for path in (repo / "prompts").glob("*/v*.y*ml"):
        match = _PROMPT_FILE.match(path.relative_to(repo).as_posix())
        if match:
            latest[match["name"]] = max(latest.get(match["name"], 0), int(match["version"]))
    return latest


def changed_bundles(repo: Path, since: str) -> list[ChangedBundle]:
    repo = repo.resolve()
    files = changed_files(repo, since)
    models_path = repo / MODELS_FILE
    models = read_models(models_path.read_text() if models_path.is_file() else None, MODELS_FILE)
    bundles: dict[str, ChangedBundle] = {}
    for file in files:
        match = _PROMPT_FILE.match(file)
        if match:
            ref = f"{match['name']}@{match['version']}"
            bundles[ref] = ChangedBundle(ref, repo / file, model_for(match["name"], models), f"{file} changed")
    if MODELS_FILE in files:
        base = _git(repo, "merge-base", since, "HEAD").strip()
        try:
            before_text = _git(repo, "show", f"{base}:{MODELS_FILE}")
        except TriggerError:
            before_text = None  # the file is new
        before = read_models(before_text, f"{MODELS_FILE} at {since}")
        for name, version in sorted(_latest_versions(repo).items()):
            if model_for(name, before) != model_for(name, models):
                ref = f"{name}@{version}"
                bundles.setdefault(
                    ref,
                    ChangedBundle(
                        ref,
                        repo / "prompts" / name / f"v{version}.yaml",
                        model_for(name, models),
                        f"model {model_for(name, before)} → {model_for(name, models)}",
                    ),
                )
    return sorted(bundles.values(), key=lambda b: b.prompt)


def summary_markdown(since: str, rows: list[dict], problems: list[str]) -> str:
    lines = [f"## champion: bundles changed since `{since}`", ""]
    if problems:
        lines += ["**Prompt lint failed:**", ""] + [f"- {p}" for p in problems] + [""]
    if not rows:
        lines.append("No prompt or model changes: nothing to evaluate." if not problems else "No runs were started.")
        return "\n".join(lines) + "\n"
    lines += ["| bundle | model | result | details |", "|---|---|---|---|"]
    for row in rows:
        mark = "✅ passed" if row["passed"] else "❌ " + row["result"]
        details = row["details"].replace("|", "/").replace("\n", " ")[:400]
        link = f" ([run]({row['link']}))" if row.get("link") else ""
        lines.append(f"| `{row['prompt']}` | `{row['model']}` | {mark} | {details}{link} |")
    return "\n".join(lines) + "\n"
