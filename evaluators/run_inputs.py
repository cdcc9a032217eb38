"""What a run evaluates with, fixed at its start: the prompt, evaluator config and gate policy loaded and
checked together, and every mutable input pinned (``champion.pinning`` says what a pin is).

The ``pin_inputs`` step and the local runner's preflight both start here.
"""

from __future__ import annotations

from dataclasses import dataclass

from champion.data import pin_data
from champion.digests import sha256_json
from champion.pinning import pin_source
from champion.weights import pin_model
from evaluators.config import load_evaluator_config
from evaluators.drift import DEMO_REFERENCE
from evaluators.policy import check_against, load_policy
from evaluators.reliability import data_digest
from prompts import load_prompt


def pin_reference(source: str) -> str:
    return pin_source(source, DEMO_REFERENCE if source == "demo" else None)


def pin_judge(config) -> str:
    """What the judge is: its weights' pin, or (a hosted model, which can change behind its name) its
    endpoint and name, as the per-example verdict cache keys it; and the data its reliability is checked on."""
    if config.judge is None:
        return ""
    if config.judge.backend == "openai":
        model = "endpoint:" + sha256_json({"endpoint": config.judge.base_url, "model": config.judge.model})
    else:
        model = pin_model(config.judge.model)
    # The bias battery and the labelled set it is checked against: an edit re-runs the judge check.
    return f"{model} judge-data:{data_digest(config.judge.reliability)}"


def load_run_configs(prompt: str, evaluator_config: str, gate_config: str):
    """(prompt template or None, evaluator config, gate policy), checked: the prompt reads no answer key and
    impersonates no published version, the policy fits the evaluator config. The local runner's preflight
    and the pipeline's first step both call this."""
    template = load_prompt(prompt) if prompt else None
    config = load_evaluator_config(evaluator_config)
    policy = load_policy(gate_config)
    check_against(policy, config.metric_catalog(), gate_config)
    return template, config, policy


@dataclass(frozen=True)
class RunPins:
    """What a run's inputs hold, fixed at its start. Small configs travel as their content (JSON)."""

    data: str
    model: str
    prompt: str  # the prompt template as JSON ("" when the champion's prompt comes from the registry)
    evaluator_config: str  # the evaluator config as JSON
    judge: str
    gate_config: str  # the gate policy as JSON
    drift_reference: str


def pin_run_inputs(
    *, data_source: str, model_source: str, prompt: str, evaluator_config: str, gate_config: str, drift_reference: str
) -> RunPins:
    """Pin every mutable input of a run and check the ones that would otherwise fail minutes later: the
    prompt (no answer-key variables, no impostor of a published version) and the policy against the
    evaluator config. ``model_source``/``prompt`` may be empty (the scheduled evaluation takes both
    from the registry)."""
    template, config, policy = load_run_configs(prompt, evaluator_config, gate_config)
    return RunPins(
        data=pin_data(data_source),
        model=pin_model(model_source) if model_source else "",
        prompt=template.model_dump_json() if template else "",
        evaluator_config=config.model_dump_json(),
        judge=pin_judge(config),
        gate_config=policy.model_dump_json(),
        drift_reference=pin_reference(drift_reference),
    )
