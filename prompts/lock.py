"""The prompt lock file: every published prompt version's content digest.

A published version is immutable: clients, MLflow and past gate decisions refer to it by
``name@version``. ``prompts/prompts.lock`` records each version's digest, so an edit to a published
file without a new version is caught by ``champion lint`` (and in CI) instead of silently changing
what ``qa-concise@1`` means.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from champion.errors import Problem, PromptError
from champion.inputs import check_folder
from prompts.loader import (
    JUDGES_DIR,
    LOCK_NAME,
    PROMPTS_DIR,
    JudgeRubric,
    PromptTemplate,
    _parse,
    list_prompts,
    published_digests,
)

_HEADER = "# Written by `champion lock`. A published prompt version never changes: edit by adding v<N+1>.yaml.\n"


LintProblem = Problem  # where = the prompt file's path


def prompt_files(root: Path = PROMPTS_DIR) -> dict[str, Path]:
    """``name@version`` (judges as ``judges/name@version``) → file, for every prompt under ``root``."""
    files = {
        f"{name}@{version}": root / name / f"v{version}.yaml"
        for name, versions in list_prompts(root).items()
        for version in versions
    }
    judges = root / JUDGES_DIR.name
    files.update(
        {
            f"judges/{name}@{version}": judges / name / f"v{version}.yaml"
            for name, versions in list_prompts(judges).items()
            for version in versions
        }
    )
    return files


def load_file(ref: str, path: Path, root: Path) -> PromptTemplate:
    if ref.startswith("judges/"):
        return _parse(path, JudgeRubric, root / JUDGES_DIR.name)
    return _parse(path, PromptTemplate, root)


def require_prompts(root: Path) -> None:
    """A check that passes on nothing is no check: the folder must exist and hold prompt versions."""

    check_folder(root, "prompt folder", error=PromptError)
    if not prompt_files(root):
        raise PromptError(
            f"{root} holds no prompt versions (expected <name>/v<N>.yaml files).",
            "point --prompts-dir at the folder with your prompts, e.g. prompts/.",
        )


def current_digests(root: Path = PROMPTS_DIR) -> tuple[dict[str, str], list[LintProblem]]:
    require_prompts(root)
    digests, problems = {}, []
    for ref, path in prompt_files(root).items():
        try:
            digests[ref] = load_file(ref, path, root).digest
        except PromptError as exc:
            problems.append(LintProblem(str(path), exc.problem, exc.fix))
    return digests, problems


def read_lock(root: Path = PROMPTS_DIR) -> dict[str, str]:
    return published_digests(root)


def write_lock(root: Path = PROMPTS_DIR) -> dict[str, str]:
    """Record the current digest of every prompt that parses; refuse to re-lock a changed version."""
    digests, problems = current_digests(root)
    locked = read_lock(root)
    changed = [ref for ref, digest in digests.items() if ref in locked and locked[ref] != digest]
    if problems or changed:
        details = [str(p) for p in problems] + [f"{ref} changed since it was locked" for ref in changed]
        raise PromptError(
            "cannot lock: " + "; ".join(details),
            "fix the files named; a published version that changed needs a new version number instead.",
        )
    (root / LOCK_NAME).write_text(
        _HEADER + yaml.safe_dump(dict(sorted(digests.items())), sort_keys=False), encoding="utf-8"
    )
    return digests


def lint(root: Path = PROMPTS_DIR) -> list[LintProblem]:
    """Every prompt parses and renders in the sandbox, and every published version matches its lock entry."""
    digests, problems = current_digests(root)
    locked = read_lock(root)
    lock_path = str(root / LOCK_NAME)
    for ref, digest in digests.items():
        name, version = ref.rsplit("@", 1)
        if ref not in locked:
            problems.append(
                LintProblem(
                    str(prompt_files(root)[ref]),
                    f"{ref} is not in {LOCK_NAME}.",
                    "run `champion lock` and commit the lock file with the new prompt.",
                )
            )
        elif locked[ref] != digest:
            problems.append(
                LintProblem(
                    str(prompt_files(root)[ref]),
                    f"{ref} changed after it was published (digest {locked[ref][:12]} → {digest[:12]}).",
                    f"restore it and put the change in {name.removeprefix('judges/')}/v{int(version) + 1}.yaml (then `champion lock`).",
                )
            )
    for ref in sorted(set(locked) - set(digests) - {p.where for p in problems}):
        problems.append(
            LintProblem(
                lock_path,
                f"{ref} is locked but its file is gone.",
                "published versions stay: restore the file (or remove the entry if it was never used).",
            )
        )
    return problems
