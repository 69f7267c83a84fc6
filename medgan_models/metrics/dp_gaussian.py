"""Calibrating the Gaussian mechanism: noise scale for a given (epsilon, delta) and sensitivity."""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr


def _check(epsilon: float, delta: float, sensitivity: float) -> None:
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be positive and finite, got {epsilon}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    if not (sensitivity > 0 and math.isfinite(sensitivity)):
        raise ValueError(f"sensitivity must be positive and finite, got {sensitivity}")


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float) -> float:
    """The tight delta of N(0, sigma^2) noise at ``epsilon`` (Balle & Wang 2018, Theorem 8)."""
    a = sensitivity / (2.0 * sigma)
    b = epsilon * sigma / sensitivity
    return float(ndtr(a - b) - math.exp(epsilon + log_ndtr(-a - b)))


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """Smallest sigma whose Gaussian mechanism is (epsilon, delta)-DP (analytic Gaussian mechanism).

    Solves ``gaussian_delta(sigma) = delta`` (decreasing in sigma) by bisection on log sigma;
    valid for every epsilon > 0, and never larger than :func:`classic_gaussian_sigma`.
    """
    _check(epsilon, delta, sensitivity)

    def gap(log_sigma: float) -> float:
        return gaussian_delta(math.exp(log_sigma), epsilon, sensitivity) - delta

    lo = hi = math.log(sensitivity)
    while gap(lo) <= 0:
        lo -= 2.0
    while gap(hi) > 0:
        hi += 2.0
    root = brentq(gap, lo, hi, xtol=1e-13, rtol=1e-13, maxiter=500)
    sigma = math.exp(root) * (1 + 1e-9)  # round towards more noise
    return sigma


def classic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """The classic bound sqrt(2 ln(1.25/delta)) * sensitivity / epsilon (Dwork & Roth; eps < 1)."""
    _check(epsilon, delta, sensitivity)
    if epsilon >= 1:
        raise ValueError("the classic Gaussian bound only holds for epsilon < 1")
    return math.sqrt(2.0 * math.log(1.25 / delta)) * sensitivity / epsilon
