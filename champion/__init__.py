"""champion: evaluation-gated promotion of LLM model+prompt bundles on Kubeflow Pipelines.

This package holds what every layer shares: the version, the typed errors and the bundle record.
The layers themselves live beside it: prompts/, serving/, evaluators/, components/, pipelines/.
"""

__version__ = "0.1.0"


def _record_step_errors() -> None:
    # Every pipeline step imports champion; under the local runner (which sets the variable) a step
    # that fails leaves its typed error as a record the runner reads (champion.errors.StepError).
    import os

    folder = os.environ.get("CHAMPION_STEP_ERRORS")
    if folder:
        from champion.errors import record_step_errors

        record_step_errors(folder)


def _trace_step() -> None:
    # And with an OTLP endpoint configured, each step process records its own span of the run's trace.
    import os
    import sys

    run_id = os.environ.get("CHAMPION_RUN_ID")
    if run_id and "--function_to_execute" in sys.argv:
        from champion.tracing import trace_step_process

        trace_step_process(run_id, sys.argv)


_record_step_errors()
_trace_step()
