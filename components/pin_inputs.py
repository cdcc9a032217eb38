"""pin_inputs: fix what every mutable input holds at the start of the run, so later steps take pins and
content, never a path that could change under them, and KFP's step cache is correct by construction."""

from typing import NamedTuple

from components import Step, cpu_step

STEP = Step(title="Pin the inputs", version="1.0.0", cacheable=False)


@cpu_step
def pin_inputs_op(
    data_source: str,
    model_source: str,
    prompt: str,
    evaluator_config: str,
    gate_config: str,
    drift_reference: str,
    fine_tune_steps: int,
) -> NamedTuple(
    "Pins",
    [
        ("data_pin", str),
        ("model_pin", str),
        ("prompt", str),
        ("training_prompt", str),
        ("evaluator_config", str),
        ("judge_pin", str),
        ("gate_config", str),
        ("drift_pin", str),
    ],
):
    """pin_inputs v1.0.0: pin the data, model, judge and drift reference; load the prompt, evaluator config and gate policy once and check them against each other."""
    from champion.step_process import begin_step

    begin_step()
    from collections import namedtuple

    from evaluators.run_inputs import pin_run_inputs

    pins = pin_run_inputs(
        data_source=data_source,
        model_source=model_source,
        prompt=prompt,
        evaluator_config=evaluator_config,
        gate_config=gate_config,
        drift_reference=drift_reference,
    )
    # The prompt fine-tuning formats its examples with: none when nothing is trained, so a prompt-only
    # change does not invalidate the (pass-through) fine-tune step's cache entry.
    training_prompt = pins.prompt if fine_tune_steps > 0 else ""
    names = [
        "data_pin",
        "model_pin",
        "prompt",
        "training_prompt",
        "evaluator_config",
        "judge_pin",
        "gate_config",
        "drift_pin",
    ]
    return namedtuple("Pins", names)(
        pins.data,
        pins.model,
        pins.prompt,
        training_prompt,
        pins.evaluator_config,
        pins.judge,
        pins.gate_config,
        pins.drift_reference,
    )
