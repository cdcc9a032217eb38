"""look_again: a sequential gate's look did not decide; end the run and say which look comes next."""

from typing import NamedTuple

from kfp.dsl import Markdown, Output

from components import Step, cpu_step

STEP = Step(title="Look again", version="1.0.0", cacheable=False)


@cpu_step
def look_again_op(decision: str, report: Output[Markdown]) -> NamedTuple(
    "DeployOutputs", [("deployment", str), ("promoted", bool)]
):
    """look_again v1.0.0: the sequential gate's look did not decide (gate "continue"): nothing is registered, deployed or moved, and the next look is a run with look set to this look + 1. Its task in a run is what a watcher (champion trigger, the Kubeflow UI) reads as "look again"."""
    from champion.step_process import begin_step

    begin_step()
    import json
    from collections import namedtuple

    verdict = json.loads(decision)
    look = verdict.get("look") or {}
    reason = f"the gate looks again: undecided at {verdict.get('decided_at')}"
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(
            f"# Deployment: not yet\n\nNothing was registered, rendered or deployed, and the champion alias did not move: "
            f"{reason}. Run look {int(look.get('index', 0)) + 1} of {look.get('of')} (the pipeline parameter `look`); "
            "`champion run` and `champion trigger` do so themselves.\n"
        )
    deployment = {
        "status": "look_again",
        "promoted": False,
        "reason": reason,
        "target": "",
        "manifest": None,
        "report": report.uri,
    }
    return namedtuple("DeployOutputs", ["deployment", "promoted"])(json.dumps(deployment, sort_keys=True), False)
