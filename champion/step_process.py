"""What every pipeline step's process does first (each ``*_op`` calls ``begin_step`` on entry).

Under the local runner (which sets ``CHAMPION_STEP_ERRORS``) a step that fails leaves its typed error as a
record the runner reads (``champion.errors.StepError``). With a run id (``CHAMPION_RUN_ID``, set on a
cluster from the run's label) the step records its own span of the run's trace. Called explicitly, never
on import, so importing champion changes nothing in the importing process.
"""

from __future__ import annotations

import os
import sys

from champion.errors import STEP_ERRORS_ENV, record_step_errors
from champion.tracing import RUN_ID_ENV, trace_step_process


def begin_step() -> None:
    folder = os.environ.get(STEP_ERRORS_ENV)
    if folder:
        record_step_errors(folder)
    run_id = os.environ.get(RUN_ID_ENV)
    if run_id and "--function_to_execute" in sys.argv:
        trace_step_process(run_id, sys.argv)
