"""no_champion: the scheduled evaluation found no champion to evaluate; fail the run and say so."""

from components import Step, cpu_step

STEP = Step(title="No champion to evaluate", version="2.0.0", cacheable=False)


@cpu_step
def no_champion_op(registered_model_name: str, mlflow_tracking_uri: str):
    """no_champion v2.0.0: fail the scheduled evaluation: nothing has been promoted, so there is nothing to evaluate."""
    from champion.step_process import begin_step

    begin_step()
    from registry.registry import CHAMPION_ALIAS, NoChampion

    raise NoChampion(
        f"{registered_model_name} has no '{CHAMPION_ALIAS}' alias in {mlflow_tracking_uri}: nothing is live, so there is nothing to evaluate.",
        "promote a bundle first (champion run, or the promotion pipeline), then schedule its evaluation.",
    )
