"""plan_bundles: the bundles a run scores, in order: the challenger (when there is one), then the champion
(when there is one). Each is described by its values only, never by its role, so the scoring steps
see the same inputs for a bundle whichever role it has, and KFP's step cache scores it once."""

from components import Step, cpu_step

STEP = Step(title="Plan the bundles to score", version="2.1.0", cacheable=True)


@cpu_step
def plan_bundles_op(
    challenger_model_source: str,
    challenger_model_pin: str,
    challenger_prompt: str,
    challenger_training_prompt: str,
    challenger_fine_tune_steps: int,
    champion_model_source: str,
    champion_model_pin: str,
    champion_prompt: str,
    dataset_digest: str,
    evaluator_config: str,
    judge_pin: str,
    shards: int,
    n_eval: int,
    gate_config: str,
    look: int,
) -> list:
    """plan_bundles v2.1.0: the list the scoring loop runs over, one entry per (bundle, shard), challenger first, shard order; each entry also carries the run's dataset digest, evaluator config and judge pin, and how many of the set's first examples it covers (rows; 0 = all: a sequential policy scores the challenger on its look's examples when there is a champion to pair with)."""
    from champion.step_process import begin_step

    begin_step()
    from champion.shards import check_shards
    from evaluators.policy import load_policy
    from evaluators.sequential import look_counts

    # Looks pair the challenger's first examples with the champion's: without a champion (the floors-only
    # rule) the challenger is scored on the whole set.
    challenger_rows = look_counts(load_policy(gate_config), n_eval, look)[look - 1] if champion_model_source else n_eval
    check_shards(shards, challenger_rows)
    # What every bundle shares rides in each entry: kfp.local (2.17) resolves a parameter produced outside
    # a ParallelFor to the loop item when a step inside the loop reads it, so the loop reads only its item.
    shared = {"dataset_digest": dataset_digest, "evaluator_config": evaluator_config, "judge_pin": judge_pin}
    bundles = []
    if challenger_model_source:
        bundles.append(
            {
                "model_source": challenger_model_source,
                "model_pin": challenger_model_pin,
                "prompt": challenger_prompt,
                "training_prompt": challenger_training_prompt,
                "fine_tune_steps": challenger_fine_tune_steps,
                "rows": 0 if challenger_rows == n_eval else challenger_rows,
                **shared,
            }
        )
    if champion_model_source:  # the champion's weights are fixed: never fine-tuned again
        bundles.append(
            {
                "model_source": champion_model_source,
                "model_pin": champion_model_pin,
                "prompt": champion_prompt,
                "training_prompt": "",
                "fine_tune_steps": 0,
                "rows": 0,  # always the whole set: one scoring serves every look and every later run
                **shared,
            }
        )
    return [bundle | {"shard": shard, "shards": shards} for bundle in bundles for shard in range(shards)]
