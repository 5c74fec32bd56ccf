"""Is one model's test accuracy really higher than another's? Intervals and tests, from scipy.

Two sources of noise sit in every CIFAR comparison: the test set is a sample (one accuracy near
90 % on 10,000 images has a binomial standard deviation of ~0.3 points) and training is
random (seeds move airbench94 by ~0.2 points). Two tools answer them:

* :func:`mcnemar` - the exact McNemar test on two models' per-image correctness on the *same*
  test images: only the images one model gets right and the other wrong count, and under the
  null hypothesis each such image favours either model with probability 1/2 (a two-sided
  binomial test, ``scipy.stats.binomtest``). It needs one model per arm and ignores seed noise.
* :func:`welch` - Welch's t-test and the 95 % confidence interval of the difference of mean
  test accuracy across seeds (``scipy.stats.ttest_ind(equal_var=False)``); needs >= 2 seeds in
  each arm, and covers seed noise.

:func:`compare_arms` runs both where they apply and decides whether a challenger beats a
reference at a significance level (:attr:`Comparison.significant`).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two models on the same images.

    Attributes:
        only_a: images model A gets right and model B wrong.
        only_b: images model B gets right and model A wrong.
        p_value: two-sided exact p-value (1.0 when no image is discordant).
    """

    only_a: int
    only_b: int
    p_value: float


@dataclass(frozen=True)
class Welch:
    """Welch's t-test on two arms' per-seed accuracies (fractions).

    Attributes:
        diff: mean(A) - mean(B), in accuracy points (percentage points).
        low, high: the confidence interval of ``diff`` (points).
        p_value: two-sided p-value.
        df: Welch-Satterthwaite degrees of freedom.
        confidence: the interval's level (0.95).
    """

    diff: float
    low: float
    high: float
    p_value: float
    df: float
    confidence: float = 0.95


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact McNemar test of boolean per-image correctness arrays (N,) of two models on the
    same N test images, in the same order.

    Raises:
        ValueError: the arrays differ in shape or are empty.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(
            f"McNemar needs two equally long per-image arrays, got shapes {a.shape} and {b.shape}"
        )
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    p = 1.0 if n == 0 else float(scipy_stats.binomtest(only_a, n, 0.5).pvalue)
    return McNemar(only_a=only_a, only_b=only_b, p_value=p)


def welch(acc_a: Sequence[float], acc_b: Sequence[float], confidence: float = 0.95) -> Welch:
    """Welch's t-test and confidence interval of mean(acc_a) - mean(acc_b) (accuracies as
    fractions, one per seed; the result in points).

    Raises:
        ValueError: an arm has fewer than 2 values.
    """
    if len(acc_a) < 2 or len(acc_b) < 2:
        raise ValueError(f"Welch's t needs >= 2 seeds per arm, got {len(acc_a)} and {len(acc_b)}")
    a, b = 100.0 * np.asarray(acc_a, float), 100.0 * np.asarray(acc_b, float)
    diff = float(a.mean() - b.mean())
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread at all: scipy's t is undefined
        p = 1.0 if diff == 0 else 0.0
        return Welch(diff, diff, diff, p, float(len(a) + len(b) - 2), confidence)
    res = scipy_stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    return Welch(diff, float(ci.low), float(ci.high), float(res.pvalue), float(res.df), confidence)


@dataclass(frozen=True)
class Comparison:
    """A challenger against a reference on the test set.

    Attributes:
        diff: mean test accuracy difference, challenger - reference, in points.
        seeds: (challenger seeds, reference seeds).
        mcnemar: the exact McNemar test of the two arms' first-seed models.
        welch: Welch's interval across seeds (None with fewer than 2 seeds in an arm).
        alpha: the significance level the decision used.
        significant: the challenger is better at ``alpha``: a positive difference and the
            p-value below ``alpha`` (Welch's when it exists, since it covers seed noise,
            else McNemar's).
    """

    diff: float
    seeds: tuple[int, int]
    mcnemar: McNemar | None
    welch: Welch | None
    alpha: float
    significant: bool

    @property
    def p_value(self) -> float | None:
        """The p-value the decision used."""
        if self.welch is not None:
            return self.welch.p_value
        return self.mcnemar.p_value if self.mcnemar is not None else None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["p_value"] = self.p_value
        return out

    def text(self) -> str:
        """``+0.42 points (95 % CI +0.10 to +0.74, Welch p = 0.02, 3 vs 3 seeds); McNemar p =
        0.003``."""
        parts = [f"{self.diff:+.2f} points"]
        if self.welch is not None:
            w = self.welch
            parts.append(
                f"(95 % CI {w.low:+.2f} to {w.high:+.2f}, Welch p = {w.p_value:.2g}, "
                f"{self.seeds[0]} vs {self.seeds[1]} seeds)"
            )
        else:
            parts.append(f"({self.seeds[0]} vs {self.seeds[1]} seeds)")
        text = " ".join(parts)
        if self.mcnemar is not None:
            m = self.mcnemar
            text += f"; McNemar p = {m.p_value:.2g} ({m.only_a} vs {m.only_b} images)"
        return text


def compare_arms(
    challenger: Sequence[float],
    reference: Sequence[float],
    correct_challenger: np.ndarray | None,
    correct_reference: np.ndarray | None,
    alpha: float = 0.05,
) -> Comparison:
    """Compare per-seed test accuracies (fractions) of a challenger and a reference, and the
    per-image correctness (N,) of one model of each (the first seed), at level ``alpha``.

    Raises:
        ValueError: an arm without accuracies, or ``alpha`` outside (0, 1).
    """
    if not challenger or not reference:
        raise ValueError("each arm needs at least one test accuracy")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha {alpha}: expected a level in (0, 1) such as 0.05")
    diff = 100.0 * (float(np.mean(challenger)) - float(np.mean(reference)))
    test = None
    if correct_challenger is not None and correct_reference is not None:
        test = mcnemar(correct_challenger, correct_reference)
    interval = welch(challenger, reference) if min(len(challenger), len(reference)) >= 2 else None
    p = interval.p_value if interval is not None else (test.p_value if test else math.nan)
    significant = diff > 0 and p < alpha
    return Comparison(diff, (len(challenger), len(reference)), test, interval, alpha, significant)


def pack_correct(correct: np.ndarray) -> str:
    """Per-image correctness (N,) bool as compact text (base64 of the packed bits), for a
    JSON study attribute; :func:`unpack_correct` reverses it."""
    bits = np.packbits(np.asarray(correct, dtype=bool))
    return f"{len(correct)}:" + base64.b64encode(bits.tobytes()).decode()


def unpack_correct(text: str) -> np.ndarray:
    """The bool array (N,) :func:`pack_correct` wrote.

    Raises:
        ValueError: not text written by :func:`pack_correct`.
    """
    try:
        n, payload = text.split(":", 1)
        bits = np.frombuffer(base64.b64decode(payload), dtype=np.uint8)
        return np.unpackbits(bits)[: int(n)].astype(bool)
    except (ValueError, TypeError) as err:
        raise ValueError(f"not a packed correctness array: {text[:20]!r}...") from err
