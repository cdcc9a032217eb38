import math

import numpy as np
import pytest

from evaluators.stats import bonferroni_confidence, mcnemar_exact, paired_bootstrap_ci


def test_bootstrap_interval_brackets_a_known_shift_and_is_seeded():
    rng = np.random.default_rng(1)
    champion = rng.uniform(0.3, 0.7, 200)
    challenger = champion + 0.1 + rng.normal(0, 0.02, 200)
    ci = paired_bootstrap_ci(challenger, champion, confidence=0.95, seed=3)
    assert 0.09 < ci.low < ci.estimate < ci.high < 0.11
    assert ci == paired_bootstrap_ci(challenger, champion, confidence=0.95, seed=3)


def test_identical_samples_give_a_zero_width_interval():
    ci = paired_bootstrap_ci([0.5, 0.7, 0.2], [0.5, 0.7, 0.2], confidence=0.9)
    assert ci.low == ci.high == ci.estimate == 0.0


def test_pairing_matters_noise_shared_by_both_sides_cancels():
    rng = np.random.default_rng(2)
    difficulty = rng.uniform(0, 1, 50)
    ci = paired_bootstrap_ci(difficulty + 0.02, difficulty, confidence=0.95)
    assert ci.low > 0.0  # an unpaired comparison of these two means could not see a 0.02 shift


def test_nan_makes_the_interval_undefined():
    ci = paired_bootstrap_ci([0.5, math.nan], [0.5, 0.5], confidence=0.95)
    assert math.isnan(ci.low) and "NaN" in ci.method


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="same non-zero length"):
        paired_bootstrap_ci([0.1], [0.1, 0.2], confidence=0.95)


def test_mcnemar_counts_discordant_pairs_and_tests_exactly():
    champion = [1] * 10 + [0] * 10
    challenger = [0] * 8 + [1] * 2 + [0] * 10  # lost 8, gained 0
    result = mcnemar_exact(challenger, champion)
    assert (result.challenger_only, result.champion_only) == (0, 8)
    assert result.p_value == pytest.approx(2 * 0.5**8)
    assert result.one_sided_p_worse == pytest.approx(0.5**8)
    assert mcnemar_exact([1, 0], [1, 0]).p_value == 1.0


def test_bonferroni_confidence():
    assert bonferroni_confidence(0.05, 1) == pytest.approx(0.90)
    assert bonferroni_confidence(0.05, 5) == pytest.approx(0.98)
