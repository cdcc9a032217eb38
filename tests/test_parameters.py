"""One typed parameter set per pipeline: the compiled pipelines, the CLI, the local runner, the deploy
step's settings and the docs' tables all come from champion/parameters.py, and unknown names are errors."""

import json
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from champion import parameters as P
from champion.errors import ConfigError
from champion.parameters import PromotionParameters, ScheduledEvalParameters, parse
from tests.conftest import REPO

KFP_TYPES = {
    str: "STRING",
    int: "NUMBER_INTEGER",
    float: "NUMBER_DOUBLE",
    bool: "BOOLEAN",
    dict: "STRUCT",
    list: "LIST",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from kfp import compiler

    from pipelines.promotion import promotion_pipeline
    from pipelines.scheduled_eval import scheduled_eval_pipeline

    folder = tmp_path_factory.mktemp("compiled")
    specs = {}
    for model, pipeline in (
        (PromotionParameters, promotion_pipeline),
        (ScheduledEvalParameters, scheduled_eval_pipeline),
    ):
        path = folder / f"{model.__name__}.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        specs[model] = next(yaml.safe_load_all(path.read_text()))
    return specs


@pytest.mark.parametrize("model", [PromotionParameters, ScheduledEvalParameters])
def test_the_compiled_pipeline_inputs_are_the_models_fields(compiled, model):
    inputs = compiled[model]["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == set(model.model_fields)
    for name, field in model.model_fields.items():
        declared = inputs[name]
        assert declared["parameterType"] == KFP_TYPES[P.kfp_type(field.annotation)], name
        assert declared.get("defaultValue") == P.default(model, name), name  # KFP keeps integers as 0.0, which equals 0
        assert declared.get("description") == P.help_text(model, name), name  # the help text reaches the Kubeflow UI


def test_unknown_names_are_errors_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown parameter 'fine_tune_stepz'\. Did you mean 'fine_tune_steps'\?"):
        parse(PromotionParameters, {"fine_tune_stepz": 3})
    with pytest.raises(ConfigError, match="webhook_ulr.*webhook_url"):
        parse(ScheduledEvalParameters, {"webhook_ulr": "http://x"})
    with pytest.raises(ConfigError, match="promote"):  # the promotion's parameters are not the scheduled evaluation's
        parse(ScheduledEvalParameters, {"promote": True})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"canary_traffic_percent": 150}, "canary_traffic_percent"),
        ({"eval_fraction": 0.0}, "eval_fraction"),
        ({"context_overflow": "ignore"}, "context_overflow"),
        ({"deploy_target": "kubernetes"}, "deploy_target"),
        ({"registered_model_name": "my model"}, "registered_model_name"),
        ({"batch_size": -1}, "batch_size"),
        ({"serving_api": "llminferenceservice", "shadow_requests": 5}, "under the shadow gate's minimum of 20"),
        ({"serving_api": "llminferenceservice", "shadow_requests": 50}, "request_log_url to the log sink"),
        (
            {"serving_api": "llminferenceservice", "shadow_requests": 50, "request_log_url": "http://sink"},
            "log_content=true",
        ),
    ],
)
def test_bad_values_name_the_parameter(values, message):
    with pytest.raises(ConfigError, match=message):
        parse(PromotionParameters, values)


@settings(max_examples=50, deadline=None)
@given(
    limit=st.integers(0, 10_000),
    batch_size=st.integers(1, 4096),
    fraction=st.floats(0.001, 1.0),
    percent=st.integers(0, 100),
    overflow=st.sampled_from(["fail", "skip"]),
)
def test_valid_values_round_trip_through_the_model(limit, batch_size, fraction, percent, overflow):
    params = parse(
        PromotionParameters,
        {
            "limit": limit,
            "batch_size": batch_size,
            "eval_fraction": fraction,
            "canary_traffic_percent": percent,
            "context_overflow": overflow,
        },
    )
    assert parse(PromotionParameters, params.model_dump()) == params
    assert params.model_fields_set == {
        "limit",
        "batch_size",
        "eval_fraction",
        "canary_traffic_percent",
        "context_overflow",
    }


def test_a_shadow_stage_with_its_records_is_accepted():
    values = {"serving_api": "llminferenceservice", "shadow_requests": 20, "request_log_url": "http://sink"}
    params = parse(PromotionParameters, values | {"log_content": True})
    assert params.shadow_requests == 20 and params.shadow_margin == 0.1


@pytest.mark.parametrize("model, command", [(PromotionParameters, "run"), (ScheduledEvalParameters, "monitor")])
def test_cli_options_take_their_names_defaults_and_help_from_the_model(model, command):
    import typer.main

    from pipelines.cli import app

    options = {opt: param for param in typer.main.get_command(app).commands[command].params for opt in param.opts}
    with_options = [name for name in model.model_fields if P.cli_flag(model, name, command)]
    assert with_options, command
    for name in with_options:
        option = options[P.cli_flag(model, name, command)]
        assert option.default == P.default(model, name) and option.help == P.help_text(model, name), name


def test_the_cli_refuses_an_unknown_parameter_before_anything_runs(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--param",
            "fine_tune_stepz=3",
            "--workspace",
            str(tmp_path / "ws"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 2 and "Did you mean 'fine_tune_steps'?" in run.stderr
    assert not (tmp_path / "ws").exists()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--param",
            "gpu_tolerations=not-json",
            "--workspace",
            str(tmp_path / "ws"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 2 and "gpu_tolerations must be JSON" in run.stderr


def test_local_runs_override_only_what_the_user_did_not_set(tmp_path):
    from pipelines.local import LocalSettings, Workspace, pipeline_arguments

    workspace = Workspace(tmp_path)
    defaults = pipeline_arguments(PromotionParameters(), LocalSettings(workspace=tmp_path), workspace)
    assert defaults["mlflow_tracking_uri"] == workspace.mlflow_uri and defaults["deploy_target"] == "none"
    assert set(defaults) == set(PromotionParameters.model_fields)
    chosen = pipeline_arguments(
        parse(PromotionParameters, {"mlflow_tracking_uri": "http://127.0.0.1:5000"}),
        LocalSettings(workspace=tmp_path),
        workspace,
    )
    assert chosen["mlflow_tracking_uri"] == "http://127.0.0.1:5000"
    assert (
        pipeline_arguments(PromotionParameters(), LocalSettings(workspace=tmp_path, use_cache=False), workspace)[
            "cache_root"
        ]
        == ""
    )


def test_the_deploy_step_takes_the_deploy_model_by_its_own_names():
    """deploy_op's parameters are DeploySettings' fields (same names, same KFP types) plus the run's context;
    the promotion pipeline passes them on by name (pipelines.wiring.fields_of), so nothing renames them."""
    from components.deploy import deploy_op
    from pipelines.promotion import promotion_pipeline

    inputs = deploy_op.component_spec.inputs
    settings = {name for name in inputs if name in P.DeploySettings.model_fields}
    assert settings == set(P.DeploySettings.model_fields)
    kfp_names = {str: "String", int: "Integer", float: "Float", bool: "Boolean"}
    for name in settings:
        assert inputs[name].type == kfp_names[P.kfp_type(P.DeploySettings.model_fields[name].annotation)], name
    context = set(inputs) - settings
    assert context == {
        "bundle", "prompt", "eval_set", "model_version", "prompt_version", "registered_model_name",
        "mlflow_tracking_uri", "expected_champion", "audit_log", "pipeline_run", "accelerator_count",
        "evaluator_config", "judge_reliability", "weights_cache", "cache_root",
    }  # fmt: skip
    assert set(P.DeploySettings.model_fields) <= set(promotion_pipeline.component_spec.inputs)
    assert set(P.DeploySettings.model_fields) <= set(P.PromotionParameters.model_fields)


def test_kubeflow_params_are_checked_against_the_model():
    from pipelines.cli.options import typed_params as _typed_params

    assert _typed_params(ScheduledEvalParameters, ["limit=5", 'gpu_node_selector={"pool": "a100"}']) == {
        "limit": 5,
        "gpu_node_selector": {"pool": "a100"},
    }
    assert json.loads(json.dumps(_typed_params(PromotionParameters, ["promote=false"]))) == {"promote": False}
