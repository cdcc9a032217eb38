"""look_again: a sequential gate's look did not decide; end the run and say which look comes next."""

from typing import NamedTuple

from kfp.dsl import Markdown, Output

from components import Step, cpu_step

STEP = Step(title="Look again", version="1.0.1", cacheable=False)


@cpu_step
def look_again_op(decision: str, report: Output[Markdown]) -> NamedTuple(
    "DeployOutputs", [("deployment", str), ("promoted", bool)]
):
    """look_again v1.0.1: the sequential gate's look did not decide (gate "continue"): nothing is registered, deployed or moved, and the next look is a run with look set to this look + 1. Its task in a run is what a watcher (champion trigger, the Kubeflow UI) reads as "look again"."""
    from champion.step_process import begin_step

    begin_step()
    import json
    from collections import namedtuple

    from champion.artifacts import nothing_deployed

    verdict = json.loads(decision)
    look = verdict.get("look") or {}
    deployment = nothing_deployed(
        report,
        "look_again",
        "not yet",
        f"the gate looks again: undecided at {verdict.get('decided_at')}",
        f" Run look {int(look.get('index', 0)) + 1} of {look.get('of')} (the pipeline parameter `look`); "
        "`champion run` and `champion trigger` do so themselves.",
    )
    return namedtuple("DeployOutputs", ["deployment", "promoted"])(deployment, False)
