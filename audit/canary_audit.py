"""The one-run canary audit (Steinke, Nasr & Jagielski, NeurIPS 2023) from canary scores.

The auditor ranks the ``m`` canaries by an attack's score, guesses "included" for the top
``k`` and "excluded" for the bottom ``k`` (abstaining on the rest), and counts correct guesses.
Under (epsilon, 0)-DP each guess is right with probability at most e^eps / (1 + e^eps), so many
right guesses rule out small epsilon (:func:`audit.bounds.one_run_epsilon_lower_bound`).
The delta of an (epsilon, delta) guarantee adds at most about m * delta to the chance of a
right guess; with the small delta used here (1e-5 and below) that is negligible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.bounds import one_run_epsilon_lower_bound

GUESS_FRACTION = 0.5  # share of canaries guessed on (half "in" at the top, half "out" below)


def one_run_audit(scores: np.ndarray, included: np.ndarray, guess_fraction: float = GUESS_FRACTION,
                  beta: float = 0.05) -> dict[str, Any]:
    """Guesses, correct guesses and the epsilon lower bound at confidence 1 - ``beta``."""
    scores, included = np.asarray(scores, float), np.asarray(included, bool)
    if scores.shape != included.shape:
        raise ValueError(f"{len(scores)} canary scores for {len(included)} canaries")
    k = int(len(scores) * guess_fraction / 2)
    order = np.argsort(-scores, kind="stable")
    guessed_in, guessed_out = order[:k], order[len(order) - k:] if k else order[:0]
    correct = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
    return {
        "canaries": int(len(scores)),
        "included": int(included.sum()),
        "guesses": 2 * k,
        "correct": correct,
        "epsilon_lower_bound": one_run_epsilon_lower_bound(2 * k, correct, beta),
        "confidence": 1 - beta,
    }
