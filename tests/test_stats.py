"""Known answers for every interval the gate uses, and the behaviour a statistician would check."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from evaluators.stats import (
    PairedCounts,
    holm_levels,
    mcnemar_exact,
    paired_bootstrap,
    settling_size,
    tango_paired,
    two_sample_bootstrap,
)


def test_tango_matches_the_published_cavo_example():
    # Fagerland, Lydersen & Laake (2017), ch. 8: Cavo et al. 2012, n12=6, n21=16, N=161:
    # Tango asymptotic score CI: estimate = -0.0621 (95% CI -0.1240 to -0.0054).
    effect = tango_paired(PairedCounts(gained=6, lost=16, n=161), confidence=0.95)
    assert effect.estimate == pytest.approx(-0.0621, abs=5e-5)
    assert (effect.low, effect.high) == (pytest.approx(-0.1240, abs=5e-5), pytest.approx(-0.0054, abs=5e-5))


def test_tango_is_the_root_of_its_score_statistic_and_p_value_is_consistent():
    counts = PairedCounts(gained=2, lost=9, n=80)
    effect = tango_paired(counts, confidence=0.90, bound=-0.05)
    # At the lower limit the one-sided p of "difference <= low" equals the tail (0.05): the bound and the test agree.
    at_low = tango_paired(counts, confidence=0.90, bound=effect.low)
    assert at_low.p_value == pytest.approx(0.05, abs=1e-6)
    assert (effect.p_value < 0.05) == (effect.low > -0.05)


def test_the_held_out_binary_case_cannot_show_non_inferiority():
    # n=40, the champion passes 30, the challenger loses 3 of them and gains none: -7.5 points.
    effect = tango_paired(PairedCounts(gained=0, lost=3, n=40), confidence=0.90, bound=-0.05)
    assert effect.estimate == pytest.approx(-0.075)
    assert effect.low < -0.05  # the bound does not clear the margin: not shown non-inferior
    assert effect.p_value > 0.05


def test_tango_coverage_is_near_nominal_by_simulation():
    rng = np.random.default_rng(7)
    n, p12, p21, true = 60, 0.10, 0.15, -0.05
    covered = 0
    trials = 400
    for _ in range(trials):
        cells = rng.multinomial(n, [p12, p21, 1 - p12 - p21])
        effect = tango_paired(PairedCounts(int(cells[0]), int(cells[1]), n), confidence=0.90)
        covered += effect.low <= true <= effect.high
    assert 0.85 <= covered / trials <= 0.95


def test_paired_bootstrap_agrees_with_scipy_bootstrap_percentile():
    rng = np.random.default_rng(11)
    champion = rng.uniform(0.2, 0.8, 120)
    challenger = champion + rng.normal(-0.01, 0.05, 120)
    ours = paired_bootstrap(challenger, champion, confidence=0.95, resamples=20_000, seed=3)
    theirs = scipy_stats.bootstrap(
        (challenger - champion,),
        np.mean,
        confidence_level=0.95,
        method="percentile",
        n_resamples=20_000,
        random_state=np.random.default_rng(5),
    )
    assert ours.low == pytest.approx(theirs.confidence_interval.low, abs=0.002)
    assert ours.high == pytest.approx(theirs.confidence_interval.high, abs=0.002)
    assert ours.estimate == pytest.approx(float(np.mean(challenger - champion)))


def test_paired_bootstrap_approaches_the_normal_interval_at_large_n():
    rng = np.random.default_rng(2)
    diff = rng.normal(0.02, 0.1, 2000)
    effect = paired_bootstrap(diff, np.zeros_like(diff), confidence=0.95, resamples=10_000)
    half = 1.96 * diff.std(ddof=1) / math.sqrt(diff.size)
    assert effect.low == pytest.approx(diff.mean() - half, abs=0.0015)
    assert effect.high == pytest.approx(diff.mean() + half, abs=0.0015)


def test_identical_samples_give_a_zero_width_interval_and_seeding_is_deterministic():
    assert paired_bootstrap([0.5, 0.7, 0.2], [0.5, 0.7, 0.2], confidence=0.9).low == 0.0
    a = paired_bootstrap([0.1, 0.4, 0.9, 0.3], [0.2, 0.3, 0.8, 0.5], confidence=0.9, seed=4)
    assert a == paired_bootstrap([0.1, 0.4, 0.9, 0.3], [0.2, 0.3, 0.8, 0.5], confidence=0.9, seed=4)


def test_pairing_matters_noise_shared_by_both_sides_cancels():
    rng = np.random.default_rng(2)
    difficulty = rng.uniform(0, 1, 50)
    paired = paired_bootstrap(difficulty + 0.02, difficulty, confidence=0.95)
    unpaired = two_sample_bootstrap(difficulty + 0.02, difficulty, confidence=0.95)
    assert paired.low > 0.0 > unpaired.low  # an unpaired comparison cannot see a 0.02 shift here
    assert "unpaired" in unpaired.method


def test_relative_effect_of_a_30_percent_slower_challenger():
    rng = np.random.default_rng(3)
    champion = rng.uniform(0.8, 1.2, 60)
    challenger = champion * 1.30
    effect = paired_bootstrap(challenger, champion, sign=-1.0, confidence=0.9, relative=True, bound=-0.10)
    assert effect.estimate == pytest.approx(-0.30)  # lower is better: 30% slower is an effect of -30%
    assert effect.high < -0.10 and effect.p_value == 1.0


def test_non_finite_scores_never_reach_a_test():
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([0.5, math.nan], [0.5, 0.5], confidence=0.95)
    with pytest.raises(ValueError, match="same non-zero length"):
        paired_bootstrap([0.1], [0.1, 0.2], confidence=0.95)
    with pytest.raises(ValueError, match="exactly 0 or 1"):
        PairedCounts.of([0.5, 1.0], [1.0, 1.0])


def test_mcnemar_counts_discordant_pairs_and_tests_superiority_exactly():
    counts = PairedCounts.of([1] * 8 + [0] * 12, [0] * 8 + [0] * 12)
    result = mcnemar_exact(counts)
    assert (result.challenger_only, result.champion_only) == (8, 0)
    assert result.one_sided_p_better == pytest.approx(0.5**8)
    assert mcnemar_exact(PairedCounts.of([1, 0], [1, 0])).p_value == 1.0


def test_lower_is_better_pass_is_zero_for_pass_fail_counts():
    counts = PairedCounts.of([0, 0, 1], [1, 0, 0], sign=-1.0)
    assert (counts.gained, counts.lost) == (1, 1)


def test_holm_levels_step_down_and_stop_at_the_first_failure():
    levels = holm_levels([0.01, 0.04, 0.03], 0.05)
    assert levels[0] == (pytest.approx(0.05 / 3), True)
    assert levels[2] == (pytest.approx(0.05 / 2), True)  # 0.03 > 0.025: fails, the step-down stops here
    assert levels[1] == (pytest.approx(0.05), False)
    assert all(reached for _, reached in holm_levels([0.001, 0.002], 0.05))


def test_settling_size_grows_as_the_room_shrinks():
    effect = paired_bootstrap(np.full(40, 0.0) + np.linspace(-0.2, 0.14, 40), np.zeros(40), confidence=0.9)
    assert effect.estimate == pytest.approx(-0.03)
    assert settling_size(effect, 0.05, 40) > settling_size(effect, 0.10, 40) > 40
    assert settling_size(effect, 0.02, 40) is None  # the estimate is past the margin


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 40), st.sampled_from([0.8, 0.9, 0.95]))
def test_tango_interval_contains_the_estimate_and_stays_in_range(gained, lost, concordant, confidence):
    n = gained + lost + concordant
    if n == 0:
        return
    effect = tango_paired(PairedCounts(gained, lost, n), confidence=confidence)
    assert -1.0 <= effect.low <= effect.estimate + 1e-9 <= effect.high + 2e-9 <= 1.0 + 2e-9
    wider = tango_paired(PairedCounts(gained, lost, n), confidence=0.99)
    assert wider.low <= effect.low + 1e-9 and wider.high >= effect.high - 1e-9
