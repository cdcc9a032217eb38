"""The promotion pipeline: evaluate a challenger bundle against the live champion, in the same run.

    pin_inputs ─► preprocess_data ─┐
    resolve_champion ──────────────┴─► for each bundle (challenger, then champion if any):
                                           fetch_weights ─► fine_tune ─► batch_generate ─► evaluate
    check_judge ──────────────────────────► gate (paired with a champion, floors without) ─► register
    drift (challenger's answers)               ─► If approved and promote: deploy,
                                                   elif a sequential look did not decide: look_again, else skip_deploy

pin_inputs fixes what every mutable input holds (data, weights, prompt, evaluator config, policy, drift
reference) before anything reads it; the steps after it take pins and content, so KFP's step cache
serves any step its module declares cacheable (components.Step) when its inputs did not change. Challenger
and champion are scored by the same loop, so a bundle scored once is never scored again on the same data.
deploy rolls the bundle out (canary → smoke test → promote or roll back) and only then moves the
MLflow champion alias.

It only wires steps; the work is in components/. GPU settings (accelerator, node selector,
tolerations) come from parameters: they are in the compiled IR for a cluster and have no effect
under kfp.local.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Markdown, Metrics

from champion.parameters import DeploySettings, PromotionParameters
from components import deploy, drift, gate, look_again, register, resolve_champion, skip_deploy
from pipelines.wiring import (
    configure,
    fields_of,
    judge_check,
    pin_and_prepare,
    score_bundles,
    typed_pipeline,
    with_weights,
)

PIPELINE_NAME = "champion-promotion"

PromotionOutputs = NamedTuple(
    "PromotionOutputs",
    [
        ("decision", str),
        ("bundle", str),
        ("model_version", str),
        ("scores", Dataset),
        ("eval_metrics", Metrics),
        ("judge_report", Markdown),
        ("drift_report", HTML),
        ("drift_metrics", Metrics),
        ("deployment", str),
        ("promoted", bool),
    ],
)


def deploy_or_skip(p, pins, data_task, champion_task, judge_task, gate_task, register_task, drift_task):
    """Deploy a released bundle (rollout, then the alias); or, where a sequential gate's look did not decide, end
    in look_again (the next look is the next run, and its task is how a watcher of the run knows); or record why
    there is nothing to deploy. All three wait for every other step (drift is the only one not upstream already):
    moving the alias is the run's last act, so a run stopped after it has nothing left to cancel."""
    prompt = pins.outputs["prompt"]
    decision = gate_task.outputs["decision_json"]
    with dsl.If(register_task.outputs["release"] == True):  # noqa: E712
        deploy_task = with_weights(  # the shadow stage's judge may be a local model
            configure(
                deploy.deploy_op(
                    bundle=gate_task.outputs["bundle"],
                    prompt=prompt,
                    eval_set=data_task.outputs["eval_set"],
                    model_version=register_task.outputs["model_version"],
                    prompt_version=register_task.outputs["prompt_version"],
                    registered_model_name=p.registered_model_name,
                    mlflow_tracking_uri=p.mlflow_tracking_uri,
                    expected_champion=champion_task.outputs["champion_version"],
                    audit_log=p.audit_log,
                    pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                    **fields_of(p, DeploySettings),
                    accelerator_count=p.accelerator_count,
                    evaluator_config=pins.outputs["evaluator_config"],
                    judge_reliability=judge_task.outputs["judge_reliability"],
                    weights_cache=p.weights_cache,
                    cache_root=p.cache_root,
                )
            )
        ).after(drift_task)
    with dsl.Elif(gate_task.outputs["gate"] == "continue"):
        look_again_task = configure(look_again.look_again_op(decision=decision)).after(drift_task)
    with dsl.Else():
        skip_task = configure(
            skip_deploy.skip_deploy_op(
                gate_passed=register_task.outputs["approved"], fail_on_reject=p.fail_on_reject, decision=decision
            )
        ).after(drift_task)
    return deploy_task, look_again_task, skip_task


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Evaluation-gated promotion of an LLM model+prompt bundle against the live champion (champion).",
)
@typed_pipeline(PromotionParameters)
def promotion_pipeline(p) -> PromotionOutputs:
    """Evaluate a challenger bundle against the live champion, gate it, register it and (if it passes) deploy it."""
    pins, data_task = pin_and_prepare(
        p, model_source=p.model_source, prompt=p.prompt, eval_fraction=p.eval_fraction, seed=p.seed
    )
    prompt = pins.outputs["prompt"]
    champion_task = configure(
        resolve_champion.resolve_champion_op(
            mlflow_tracking_uri=p.mlflow_tracking_uri,
            registered_model_name=p.registered_model_name,
            allow_bootstrap=p.allow_bootstrap,
            audit_log=p.audit_log,
        )
    )
    challenger = dict(
        model_source=p.model_source,
        model_pin=pins.outputs["model_pin"],
        prompt=prompt,
        training_prompt=pins.outputs["training_prompt"],
        fine_tune_steps=p.fine_tune_steps,
    )
    scored = score_bundles(p, pins, data_task, champion_task, challenger=challenger)
    judge_task = judge_check(p, pins)
    drift_task = configure(
        drift.drift_op(
            generations=scored.generations,
            shards=p.shards,
            drift_reference=p.drift_reference,
            drift_pin=pins.outputs["drift_pin"],
            cache_root=p.cache_root,
        )
    )
    gate_task = configure(
        gate.gate_op(
            scores=scored.scores,
            bundles=scored.bundles,
            weights_sources=scored.weights_sources,
            shards=p.shards,
            eval_set=data_task.outputs["eval_set"],
            look=p.look,
            eval_metrics=scored.metrics,
            gate_config=pins.outputs["gate_config"],
            evaluator_config=pins.outputs["evaluator_config"],
            judge_reliability=judge_task.outputs["judge_reliability"],
            champion_version=champion_task.outputs["champion_version"],
            champion_model_digest=champion_task.outputs["champion_model_digest"],
        )
    )
    decision = gate_task.outputs["decision_json"]

    register_task = configure(
        register.register_op(
            bundle=gate_task.outputs["bundle"],
            prompt=prompt,
            model_source=gate_task.outputs["weights_source"],
            mlflow_tracking_uri=p.mlflow_tracking_uri,
            registered_model_name=p.registered_model_name,
            audit_log=p.audit_log,
            promote=p.promote,
            decision=decision,
            expected_champion=champion_task.outputs["champion_version"],
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            pushgateway_url=p.pushgateway_url,
            scores=gate_task.outputs["challenger_scores"],
            eval_metrics=gate_task.outputs["challenger_metrics"],
        )
    )
    deploy_task, look_again_task, skip_task = deploy_or_skip(
        p, pins, data_task, champion_task, judge_task, gate_task, register_task, drift_task
    )

    return PromotionOutputs(
        decision=decision,
        bundle=gate_task.outputs["bundle"],
        model_version=register_task.outputs["model_version"],
        scores=gate_task.outputs["challenger_scores"],
        eval_metrics=gate_task.outputs["challenger_metrics"],
        judge_report=judge_task.outputs["report"],
        drift_report=drift_task.outputs["report"],
        drift_metrics=drift_task.outputs["metrics"],
        deployment=dsl.OneOf(
            deploy_task.outputs["deployment"], look_again_task.outputs["deployment"], skip_task.outputs["deployment"]
        ),
        promoted=dsl.OneOf(
            deploy_task.outputs["promoted"], look_again_task.outputs["promoted"], skip_task.outputs["promoted"]
        ),
    )
