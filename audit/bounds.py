"""Empirical epsilon lower bounds from a membership attack's outcomes.

- :func:`clopper_pearson`: exact binomial confidence interval.
- :func:`epsilon_lower_bound`: from an attack's true/false positives at each threshold, the
  largest epsilon that the (epsilon, delta)-DP hypothesis-testing bound rules out at the given
  confidence: max over thresholds of max{ ln[(TPR_lo - delta) / FPR_hi],
  ln[(1 - FPR_hi - delta) / (1 - TPR_lo)] } (Kairouz et al. 2015; Jagielski et al. 2020).
- :func:`one_run_epsilon_lower_bound`: the one-run audit of Steinke, Nasr & Jagielski
  (NeurIPS 2023), pure-DP form (delta = 0): with ``guesses`` guesses of which canaries were
  included, ``correct`` of them right, epsilon is ruled out when
  P[Binomial(guesses, e^eps / (1 + e^eps)) >= correct] < beta.
An empirical lower bound above the accountant's epsilon means a bug (in the accounting or the
training), never that privacy is "better than guaranteed".
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.stats import beta as beta_dist
from scipy.stats import binom


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95
                    ) -> tuple[float, float]:
    """Two-sided exact interval for a binomial proportion."""
    if not 0 <= successes <= trials or trials <= 0:
        raise ValueError(f"need 0 <= successes <= trials, trials > 0; got {successes}/{trials}")
    alpha = 1.0 - confidence
    low = 0.0 if successes == 0 else float(beta_dist.ppf(alpha / 2, successes,
                                                          trials - successes + 1))
    high = 1.0 if successes == trials else float(beta_dist.ppf(1 - alpha / 2, successes + 1,
                                                                trials - successes))
    return low, high


def _log_ratio(numerator: float, denominator: float) -> float:
    if numerator <= 0:
        return -math.inf
    if denominator <= 0:
        return math.inf
    return math.log(numerator / denominator)


def epsilon_at(true_positives: int, positives: int, false_positives: int, negatives: int,
               delta: float, confidence: float = 0.95) -> float:
    """The epsilon lower bound of one decision threshold (may be -inf: no evidence)."""
    tpr_lo, _ = clopper_pearson(true_positives, positives, confidence)
    _, fpr_hi = clopper_pearson(false_positives, negatives, confidence)
    return max(_log_ratio(tpr_lo - delta, fpr_hi),
               _log_ratio(1 - fpr_hi - delta, 1 - tpr_lo))


def epsilon_lower_bound(member_scores: np.ndarray, nonmember_scores: np.ndarray, delta: float,
                        confidence: float = 0.95) -> float:
    """Best bound over all thresholds of 'score >= t means member' (0 when none is positive).

    Strictly, choosing the best of many thresholds on the same data needs a correction (or a
    held-out split to pick the threshold); this is the common, slightly optimistic practice.
    """
    members, nonmembers = np.asarray(member_scores), np.asarray(nonmember_scores)
    best = 0.0
    for threshold in np.unique(np.concatenate([members, nonmembers])):
        tp, fp = int((members >= threshold).sum()), int((nonmembers >= threshold).sum())
        best = max(best, epsilon_at(tp, len(members), fp, len(nonmembers), delta, confidence))
    return best


def one_run_epsilon_lower_bound(guesses: int, correct: int, beta: float = 0.05) -> float:
    """Steinke et al. (2023), delta = 0: the epsilon below which ``correct`` of ``guesses``
    right guesses would have probability < ``beta``; 0 when the guesses show nothing."""
    if not 0 <= correct <= guesses:
        raise ValueError(f"need 0 <= correct <= guesses, got {correct}/{guesses}")
    if guesses == 0:
        return 0.0

    def tail(epsilon: float) -> float:
        p = 1.0 / (1.0 + math.exp(-epsilon))
        return float(binom.sf(correct - 1, guesses, p)) - beta

    if tail(0.0) >= 0:  # as many correct as coin flips would give: no evidence
        return 0.0
    high = 1.0
    while tail(high) < 0:
        high *= 2
        if high > 1e3:
            return math.inf
    return float(brentq(tail, 0.0, high, xtol=1e-10))
