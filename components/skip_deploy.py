"""skip_deploy: say why nothing was deployed; fail the run on a rejection when asked (a CI check)."""

from typing import NamedTuple

from kfp.dsl import Markdown, Output

from components import Step, cpu_step

STEP = Step(title="Skip deployment", version="3.2.1", cacheable=False)


@cpu_step
def skip_deploy_op(gate_passed: bool, fail_on_reject: bool, decision: str, report: Output[Markdown]) -> NamedTuple(
    "DeployOutputs", [("deployment", str), ("promoted", bool)]
):
    """skip_deploy v3.2.1: say why nothing was deployed (the gate did not pass, or this run only gates; a sequential gate's undecided look ends in look_again); fail the run on a rejection if asked."""
    from champion.step_process import begin_step

    begin_step()
    import json
    from collections import namedtuple

    from champion.artifacts import nothing_deployed
    from champion.errors import GateRejected

    verdict = json.loads(decision)
    if gate_passed:
        reason = "the gate passed; this run only gates (promote=false)"
    else:
        reason = "the gate did not pass"
    deployment = nothing_deployed(report, "skipped", "skipped", reason)
    if fail_on_reject and verdict.get("gate") == "failed":
        reasons = verdict.get("reasons", [])
        raise GateRejected(
            "the gate rejected the bundle: " + "; ".join(reasons),
            "see the gate report; change the prompt or model and push again.",
        )
    return namedtuple("DeployOutputs", ["deployment", "promoted"])(deployment, False)
