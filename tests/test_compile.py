"""Compiling for a cluster: determinism, loading back, and the GPU settings in the IR."""

import subprocess
import sys

import pytest
import yaml

from components import registry
from pipelines.compile import PIPELINES, CompileError, compile_all
from tests.conftest import REPO


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    first, second = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    return compile_all(first), compile_all(second)


def test_every_pipeline_and_component_compiles_byte_identically(compiled):
    first, second = compiled
    assert {p.stem for p in first if p.parent.name == "pipelines"} == set(PIPELINES)
    assert {p.stem for p in first if p.parent.name == "components"} == set(registry())
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name


def promotion_docs(compiled):
    path = next(p for p in compiled[0] if p.name == "promotion.yaml")
    return list(yaml.safe_load_all(path.read_text()))


def test_both_gpu_steps_carry_accelerator_node_selector_and_tolerations(compiled):
    spec, platform = promotion_docs(compiled)
    for executor in ("exec-batch-generate-op",):  # one step for both bundles, in the scoring loop
        resources = spec["deploymentSpec"]["executors"][executor]["container"]["resources"]["accelerator"]
        assert "accelerator_count" in resources["resourceCount"] and "accelerator_type" in resources["resourceType"]
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][executor]
        assert "nodeSelector" in k8s and "tolerations" in k8s
        assert k8s["podMetadata"]["labels"]["champion.io/component-version"]


def test_fine_tune_runs_on_a_gpu_node_with_the_token_secret_and_its_own_gpu_count(compiled):
    spec, platform = promotion_docs(compiled)
    resources = spec["deploymentSpec"]["executors"]["exec-fine-tune-op"]["container"]["resources"]["accelerator"]
    assert "fine_tune_gpu_count" in resources["resourceCount"] and "accelerator_type" in resources["resourceType"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-fine-tune-op"]
    assert "nodeSelector" in k8s and "tolerations" in k8s
    secret = k8s["secretAsEnv"][0]
    assert secret["keyToEnv"] == [{"secretKey": "token", "envVar": "HF_TOKEN"}] and secret["optional"] is True
    loop = next(c for name, c in spec["components"].items() if name.startswith("comp-for-loop"))
    assert (
        loop["dag"]["tasks"]["batch-generate-op"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"]
        == "fine-tune-op"
    )
    assert spec["root"]["inputDefinitions"]["parameters"]["fine_tune_steps"]["defaultValue"] == 0.0


def test_a_weights_pvc_and_a_kueue_queue_given_at_compile_time_reach_the_ir(tmp_path):
    import os

    compile_all(
        tmp_path,
        cpu_image="registry.example.com/champion@sha256:" + "a" * 64,
        gpu_image="registry.example.com/champion-gpu@sha256:" + "b" * 64,
        weights_pvc="champion-weights",
        kueue_queue="team-a-gpus",
        otlp_endpoint="http://otel-collector.observability:4318",
    )
    spec, platform = list(yaml.safe_load_all((tmp_path / "pipelines" / "promotion.yaml").read_text()))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # Kueue: every GPU pod carries its queue's label, no CPU pod does.
    for executor in ("exec-fine-tune-op", "exec-batch-generate-op"):
        assert executors[executor]["podMetadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpus", executor
    for executor in ("exec-fetch-weights-op", "exec-evaluate-op", "exec-gate-op"):
        labels = (executors.get(executor) or {}).get("podMetadata", {}).get("labels", {})
        assert "kueue.x-k8s.io/queue-name" not in labels, executor
    for executor in ("exec-fetch-weights-op", "exec-fine-tune-op", "exec-batch-generate-op", "exec-evaluate-op"):
        assert executors[executor]["pvcMount"][0]["mountPath"] == "/mnt/champion-weights", executor
    assert spec["root"]["inputDefinitions"]["parameters"]["weights_cache"]["defaultValue"] == "/mnt/champion-weights"
    assert spec["deploymentSpec"]["executors"]["exec-batch-generate-op"]["container"]["image"].endswith(
        "@sha256:" + "b" * 64
    )
    assert spec["deploymentSpec"]["executors"]["exec-gate-op"]["container"]["image"].endswith("@sha256:" + "a" * 64)
    # Tracing: every step reads its run's id from its pod's KFP label and sends its span to the collector.
    for name, executor in spec["deploymentSpec"]["executors"].items():
        env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318", name
        assert {"name": "CHAMPION_RUN_ID", "fieldPath": "metadata.labels['pipeline/runid']"} in executors[name][
            "fieldPathAsEnv"
        ], name
    assert "CHAMPION_WEIGHTS_PVC" not in os.environ
    with pytest.raises(CompileError, match="not an http"):
        compile_all(tmp_path / "again", otlp_endpoint="otel-collector:4317")


def test_the_scoring_loop_declares_the_accelerator_parameters(compiled):
    """KFP does not thread resource parameters into a loop's sub-DAG on its own (see batch_generate, fine_tune)."""
    spec, _ = promotion_docs(compiled)
    nested = next(c for c in spec["components"].values() if "batch-generate-op" in c.get("dag", {}).get("tasks", {}))
    declared = nested["inputDefinitions"]["parameters"]
    assert {
        "pipelinechannel--accelerator_type",
        "pipelinechannel--accelerator_count",
        "pipelinechannel--fine_tune_gpu_count",
    } <= set(declared)


def test_challenger_and_champion_are_scored_by_one_loop_that_never_sees_a_role(compiled):
    """The loop's steps take a bundle's values only: the same step (and, locally, the same cache entry)
    scores a bundle whether it is this run's challenger or a later run's champion."""
    spec, _ = promotion_docs(compiled)
    loop = next(c for name, c in spec["components"].items() if name.startswith("comp-for-loop"))
    assert set(loop["dag"]["tasks"]) == {"fetch-weights-op", "fine-tune-op", "batch-generate-op", "evaluate-op"}
    executors = spec["deploymentSpec"]["executors"]
    assert not [name for name in executors if name.endswith("-2") and "gate" not in name]


def test_pure_steps_are_cached_and_side_effects_never(compiled):
    """KFP's step cache on exactly the steps that are pure functions of their (pinned) inputs."""
    from components import by_task_name

    spec, _ = promotion_docs(compiled)
    tasks = {
        name: task
        for component in [spec["root"], *spec["components"].values()]
        for name, task in component.get("dag", {}).get("tasks", {}).items()
    }
    steps = {name: task for name, task in tasks.items() if not name.startswith(("for-loop", "condition"))}
    for name, task in steps.items():
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        assert cached == by_task_name()[name].step.cacheable, name
    for never in ("pin-inputs-op", "resolve-champion-op", "register-op", "deploy-op", "skip-deploy-op"):
        assert steps[never].get("cachingOptions", {}) == {}, never


def _branch_condition(spec, task_name):
    for component in spec["components"].values():
        for task in component.get("dag", {}).get("tasks", {}).values():
            inner = spec["components"].get(task.get("componentRef", {}).get("name", ""), {})
            if task_name in inner.get("dag", {}).get("tasks", {}):
                return task.get("triggerPolicy", {}).get("condition", "")
    return ""


def test_the_champion_is_scored_only_when_listed_and_deploy_only_when_approved(compiled):
    spec, _ = promotion_docs(compiled)
    loop = next(task for task in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in task)
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith(
        "plan-bundles-op-Output"
    )  # challenger, then the champion if any
    assert "register-op-release" in _branch_condition(spec, "deploy-op")
    # A sequential look that did not decide ends in look_again, only when nothing was released; the rest skip.
    released = "(inputs.parameter_values['pipelinechannel--register-op-release'] == true)"
    undecided = "inputs.parameter_values['pipelinechannel--gate-op-gate'] == 'continue'"
    assert _branch_condition(spec, "look-again-op") == f"!{released} && {undecided}"
    assert _branch_condition(spec, "skip-deploy-op") == f"!{released} && !({undecided})"


def test_no_runtime_pip_install_and_images_come_from_the_environment(tmp_path):
    code = "from pipelines.compile import compile_all; import sys; compile_all(sys.argv[1], cpu_image='registry.example/champion@sha256:' + 'a' * 64)"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=REPO)
    text = (tmp_path / "pipelines" / "promotion.yaml").read_text()
    assert "registry.example/champion@sha256:" in text
    assert "pip install" not in text


def test_compile_sh_writes_dist(tmp_path):
    result = subprocess.run(
        ["bash", str(REPO / "compile.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"CHAMPION": str(REPO / ".venv" / "bin" / "champion"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pipelines" / "promotion.yaml").is_file() and (tmp_path / "components" / "gate.yaml").is_file()


def test_each_component_description_states_its_module_version():
    for name, registered in registry().items():
        description = registered.op.component_spec.description
        assert description.startswith(f"{name} v{registered.step.version}:"), (
            f"{name}: docstring says {description!r}, its STEP says version {registered.step.version}"
        )


def test_every_step_records_the_commit_it_was_compiled_from(compiled):
    """A cluster run's MLflow tags and audit entries name the source commit (not "unknown"): it is baked
    into every step's environment at compile time."""
    from champion.provenance import git_commit

    commit = git_commit()
    assert commit != "unknown"
    for document in (promotion_docs(compiled)[0],):
        for name, executor in document["deploymentSpec"]["executors"].items():
            env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
            assert env.get("CHAMPION_GIT_COMMIT") == commit, name


def test_the_fine_tune_step_takes_its_trainer_and_trainjob_settings_from_the_run(compiled):
    spec, _ = promotion_docs(compiled)
    loop = next(c for name, c in spec["components"].items() if name.startswith("comp-for-loop"))
    inputs = loop["dag"]["tasks"]["fine-tune-op"]["inputs"]["parameters"]
    for name in ("trainer", "trainjob_nodes", "trainjob_gpus_per_node", "trainjob_runtime", "trainjob_timeout_s"):
        assert inputs[name]["componentInputParameter"].endswith(name), name  # the run's parameter, not a constant
    from components import GPU_IMAGE

    assert inputs["trainjob_image"]["runtimeValue"]["constant"] == GPU_IMAGE  # the job's nodes run the step's image
    assert spec["root"]["inputDefinitions"]["parameters"]["trainer"]["defaultValue"] == "local"
    generate = loop["dag"]["tasks"]["batch-generate-op"]["inputs"]["parameters"]
    for name in ("tensor_parallel_size", "max_num_seqs", "gpu_memory_utilization"):
        assert generate[name]["componentInputParameter"].endswith(name), name


def test_the_scoring_loop_runs_per_bundle_and_shard(compiled):
    spec, _ = promotion_docs(compiled)
    plan = spec["root"]["dag"]["tasks"]["plan-bundles-op"]["inputs"]["parameters"]
    assert plan["shards"]["componentInputParameter"] == "shards"
    assert plan["n_eval"]["taskOutputParameter"]["producerTask"] == "preprocess-data-op"
    loop = next(c for name, c in spec["components"].items() if name.startswith("comp-for-loop"))
    generate = loop["dag"]["tasks"]["batch-generate-op"]["inputs"]["parameters"]
    for name in ("shard", "shards"):  # each iteration generates its own part of the evaluation set
        assert generate[name]["componentInputParameter"].startswith("pipelinechannel--plan-bundles-op-Output-loop-item")
        assert generate[name]["parameterExpressionSelector"] == f'parseJson(string_value)["{name}"]'
    gate = spec["root"]["dag"]["tasks"]["gate-op"]["inputs"]
    assert "scores" in gate["artifacts"]  # all parts, merged by the gate (champion.shards)
