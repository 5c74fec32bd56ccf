"""cifar_hpo.stats against scipy and hand-computed values on hand-built inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cifar_hpo.stats import compare_arms, mcnemar, pack_correct, unpack_correct, welch


def _pair(only_a: int, only_b: int, both: int = 50, neither: int = 10):
    a = np.array([1] * only_a + [0] * only_b + [1] * both + [0] * neither, bool)
    b = np.array([0] * only_a + [1] * only_b + [1] * both + [0] * neither, bool)
    return a, b


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_images():
    a, b = _pair(12, 3)
    result = mcnemar(a, b)
    assert (result.only_a, result.only_b) == (12, 3)
    # two-sided exact: 2 * P(X <= 3), X ~ Binomial(15, 1/2)
    by_hand = 2 * sum(math.comb(15, k) for k in range(4)) / 2**15
    assert result.p_value == pytest.approx(by_hand, rel=1e-12) == pytest.approx(0.03515625)
    assert result.p_value == pytest.approx(scipy_stats.binomtest(12, 15, 0.5).pvalue)
    assert mcnemar(b, a).p_value == pytest.approx(result.p_value)  # symmetric
    assert mcnemar(a, a).p_value == 1.0  # no discordant image


def test_mcnemar_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(2,\)"):
        mcnemar(np.ones(3, bool), np.ones(2, bool))


def test_welch_matches_scipy_and_the_textbook_formula():
    a, b = [0.912, 0.905, 0.909], [0.900, 0.903, 0.896, 0.899]
    result = welch(a, b)
    ref = scipy_stats.ttest_ind(np.array(a) * 100, np.array(b) * 100, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert result.p_value == pytest.approx(ref.pvalue)
    assert (result.low, result.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    # Welch-Satterthwaite by hand
    va, vb = np.var(a, ddof=1) * 1e4 / 3, np.var(b, ddof=1) * 1e4 / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    diff = 100 * (np.mean(a) - np.mean(b))
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert result.df == pytest.approx(df)
    assert result.diff == pytest.approx(diff)
    assert result.low == pytest.approx(diff - half) and result.high == pytest.approx(diff + half)


def test_welch_needs_two_seeds_per_arm():
    with pytest.raises(ValueError, match="needs >= 2 seeds per arm, got 1 and 3"):
        welch([0.9], [0.9, 0.91, 0.92])


def test_compare_arms_uses_welch_with_seeds_and_mcnemar_without():
    a, b = _pair(30, 5, both=800, neither=165)
    one = compare_arms([a.mean()], [b.mean()], a, b, alpha=0.05)
    assert one.welch is None and one.p_value == one.mcnemar.p_value < 0.05
    assert one.significant and one.diff == pytest.approx(100 * (a.mean() - b.mean()))
    seeds = compare_arms([0.85, 0.86, 0.84], [0.85, 0.84, 0.86], a, b, alpha=0.05)
    assert seeds.welch is not None and seeds.p_value == seeds.welch.p_value
    assert not seeds.significant  # McNemar alone would say yes; the seeds say no
    worse = compare_arms([b.mean()], [a.mean()], b, a, alpha=0.05)
    assert not worse.significant  # significantly *worse* is not a promotion
    assert "McNemar p = " in one.text() and "95 % CI" in seeds.text()
    with pytest.raises(ValueError, match="alpha 1.5"):
        compare_arms([0.9], [0.8], None, None, alpha=1.5)


def test_correctness_arrays_round_trip_through_text():
    rng = np.random.default_rng(0)
    correct = rng.random(10_000) < 0.9
    text = pack_correct(correct)
    assert len(text) < 1_700 and np.array_equal(unpack_correct(text), correct)
    with pytest.raises(ValueError, match="not a packed correctness array"):
        unpack_correct("garbage")
