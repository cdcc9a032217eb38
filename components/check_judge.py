"""check_judge: may the configured judge vote? The bias battery family by family and agreement with people
(evaluators/reliability.py), once per judge (a pure function of the evaluator config and the judge's pin,
which covers the probe and labelled sets)."""

from typing import NamedTuple

from kfp.dsl import Markdown, Metrics, Output

from components import Step, cpu_step

STEP = Step(title="Check the judge", version="2.0.0", cacheable=True)


@cpu_step
def check_judge_op(
    evaluator_config: str,
    judge_pin: str,
    weights_cache: str,
    cache_root: str,
    report: Output[Markdown],
    metrics: Output[Metrics],
) -> NamedTuple("JudgeOutputs", [("judge_reliability", str)]):
    """check_judge v2.0.0: the judge's bias battery (calibration, position, verbosity, tone, self-preference, reference-free) and Cohen's kappa against people, each held to the config's threshold; the gate counts its grades only if all pass."""
    from champion.step_process import begin_step

    begin_step()
    import json
    from collections import namedtuple

    from champion.artifacts import persist_metadata
    from champion.cache import ExampleCache
    from champion.pinning import check_pin
    from evaluators.config import load_evaluator_config
    from evaluators.evaluate import judge_markdown, judge_reliability
    from evaluators.run_inputs import pin_judge

    config = load_evaluator_config(evaluator_config)
    check_pin(judge_pin, pin_judge(config), "the judge model")
    cache = ExampleCache(cache_root)
    reliability = judge_reliability(config, weights_cache=weights_cache, cache=cache)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(judge_markdown(reliability))
    for name, value in reliability["metrics"].items():
        if value == value:  # KFP Metrics cannot hold NaN (a family that was not measured)
            metrics.log_metric(name, value)
    metrics.metadata["cache"] = cache.totals()
    persist_metadata(metrics)
    return namedtuple("JudgeOutputs", ["judge_reliability"])(json.dumps(reliability, sort_keys=True))
