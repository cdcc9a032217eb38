"""Prompts as versioned artifacts: the lock file, lint, inline prompts, and the MLflow prompt registry."""

import json
import shutil

import pytest
import yaml

from champion.errors import PromptError
from prompts import load_prompt
from prompts.loader import PROMPTS_DIR
from prompts.lock import LOCK_NAME, lint, read_lock, write_lock


@pytest.fixture
def prompts(tmp_path):
    root = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return root


def test_the_shipped_prompts_match_their_lock_file():
    assert lint() == []
    assert set(read_lock()) >= {"qa-concise@1", "qa-oneline@1", "judges/correctness@1"}


def test_editing_a_published_version_fails_lint_with_the_fix(prompts):
    path = prompts / "qa-oneline" / "v1.yaml"
    path.write_text(path.read_text().replace("max_tokens: 40", "max_tokens: 48"))
    problems = lint(prompts)
    assert len(problems) == 1 and "qa-oneline@1 changed after it was published" in problems[0].problem
    assert "qa-oneline/v2.yaml" in problems[0].fix
    with pytest.raises(PromptError, match="changed since it was locked"):
        write_lock(prompts)  # re-locking would hide the edit


def test_a_description_edit_is_not_a_change(prompts):
    path = prompts / "qa-concise" / "v1.yaml"
    path.write_text(path.read_text().replace("description: Answer", "description: Answers"))
    assert lint(prompts) == []


def test_a_new_version_must_be_locked(prompts):
    data = yaml.safe_load((prompts / "qa-concise" / "v1.yaml").read_text()) | {"version": 2}
    (prompts / "qa-concise" / "v2.yaml").write_text(yaml.safe_dump(data))
    assert "not in prompts.lock" in lint(prompts)[0].problem
    write_lock(prompts)
    assert lint(prompts) == [] and "qa-concise@2" in read_lock(prompts)


def test_broken_templates_and_vanished_versions_are_reported(prompts):
    (prompts / "qa-evasive" / "v1.yaml").write_text(
        "name: qa-evasive\nversion: 1\nvariables: [question]\nmessages:\n  - role: user\n    content: '{{ question.__class__ }'\n"
    )
    shutil.rmtree(prompts / "qa-oneline")
    problems = {p.problem for p in lint(prompts)}
    assert any("Jinja2 syntax error" in p for p in problems)
    assert any("qa-oneline@1 is locked but its file is gone" in p for p in problems)


def test_lint_and_lock_commands(prompts):
    import subprocess
    import sys

    data = yaml.safe_load((prompts / "qa-concise" / "v1.yaml").read_text()) | {"version": 2}
    (prompts / "qa-concise" / "v2.yaml").write_text(yaml.safe_dump(data))
    failing = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "lint", "--prompts-dir", str(prompts)], capture_output=True, text=True
    )
    assert failing.returncode == 1 and "champion lock" in failing.stderr
    locked = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "lock", "--prompts-dir", str(prompts)], capture_output=True, text=True
    )
    assert locked.returncode == 0 and (prompts / LOCK_NAME).read_text().startswith("# Written by `champion lock`")
    assert (
        subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "lint", "--prompts-dir", str(prompts)], capture_output=True
        ).returncode
        == 0
    )


def test_inline_prompts_load_like_files():
    prompt = load_prompt("qa-oneline")
    assert load_prompt(prompt.model_dump_json()) == prompt
    with pytest.raises(PromptError, match="inline prompt is not a valid prompt template"):
        load_prompt(json.dumps({"name": "x", "version": 1}))


def test_sync_prompts_registers_every_version_once_and_aligns_the_champion_alias(tmp_path):
    import mlflow

    from champion.bundle import Bundle
    from registry.register import register_bundle
    from registry.registry import CHAMPION_ALIAS, promote_version, sync_prompts

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prompts = [load_prompt(name) for name in ("qa-concise", "qa-oneline", "qa-evasive")]
    first = sync_prompts(uri, "qa", prompts)
    assert sync_prompts(uri, "qa", prompts) == first  # idempotent: found by digest
    oneline = prompts[1]
    bundle = Bundle(
        model_digest="m" * 64,
        prompt=oneline.ref,
        decoding=oneline.decoding.model_dump(mode="json"),
        dataset_digest="d" * 64,
    )
    registration = register_bundle(
        tracking_uri=uri,
        registered_model_name="qa",
        bundle=bundle,
        prompt=oneline,
        decision={"passed": True},
        files={},
        weights_source="smollm2",
    )
    promote_version(
        uri,
        "qa",
        registration.model_version,
        expected=None,
        prompt_name=oneline.name,
        prompt_version=registration.prompt_version,
    )
    sync_prompts(uri, "qa", prompts)
    mlflow.set_registry_uri(uri)
    loaded = mlflow.genai.load_prompt(f"prompts:/qa-oneline@{CHAMPION_ALIAS}")
    assert loaded.tags["champion.digest"] == oneline.digest and int(loaded.version) == first["qa-oneline@1"]
