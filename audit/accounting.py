"""The accounting half of the audit: what each site's DP-SGD history guarantees, recomputed.

Each site's privacy ledger (every round's noise multiplier, sample rate and steps) is composed
again with the accountant used in training (Opacus PRV or RDP) and, independently, with Google's
``dp-accounting`` privacy-loss-distribution (PLD) accountant. PRV and PLD are both numerically
tight and must agree within :data:`TOLERANCE`; RDP is a looser upper bound, so with RDP only a
training epsilon BELOW the cross-check is a disagreement (it would under-report the spend).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant

from client.privacy_ledger import DP_SGD, LEDGER_FILE, PrivacyLedger

TOLERANCE = 0.05  # relative difference allowed between the training accountant and PLD
# Opacus' PRV accountant reports epsilon up to eps_error = 0.01 (it rounds up): at small epsilon
# that offset alone is several percent, so differences within this absolute slack also agree.
ABSOLUTE_SLACK = 0.02


def pld_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    """Epsilon of (noise multiplier, sample rate, steps) runs of Poisson-subsampled Gaussian
    steps at ``delta``, by ``dp-accounting``'s PLD accountant (0 for an empty history)."""
    if not history:
        return 0.0
    if any(sigma <= 0 for sigma, _, _ in history):
        return float("inf")
    event = dp_accounting.ComposedDpEvent([
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
        for sigma, q, steps in history])
    accountant = pld_privacy_accountant.PLDAccountant()
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def agrees(epsilon: float, crosscheck: float, accountant: str,
           tolerance: float = TOLERANCE) -> bool:
    """Whether the training accountant's epsilon is consistent with the PLD cross-check."""
    slack = max(tolerance * crosscheck, ABSOLUTE_SLACK)
    if accountant == "rdp":  # an upper bound: only under-reporting is a disagreement
        return epsilon >= crosscheck - slack
    return abs(epsilon - crosscheck) <= slack


@dataclass
class SiteAccounting:
    """One site's DP-SGD parameters and its epsilon by two independent accountants."""

    site_id: str
    ledger: PrivacyLedger
    epsilon: float
    epsilon_crosscheck: float
    accountant: str
    agrees: bool

    def as_dict(self, max_grad_norm: float) -> dict[str, Any]:
        """JSON-ready: parameters per round, the one-off releases, and both epsilons."""
        training = self.ledger.training_entries
        return {
            "site": self.site_id,
            "rounds_trained": len(training),
            "steps": self.ledger.total_steps,
            "max_grad_norm": max_grad_norm,
            "noise_multipliers": sorted({e.noise_multiplier for e in training}),
            "sample_rates": sorted({e.sample_rate for e in training}),
            "steps_per_round": sorted({e.steps for e in training}),
            "rounds": [e.round for e in training],
            "releases": [{"mechanism": e.mechanism, "round": e.round,
                          "noise_multiplier": e.noise_multiplier}
                         for e in self.ledger.entries if e.mechanism != DP_SGD],
            "epsilon": self.epsilon,
            "epsilon_crosscheck": self.epsilon_crosscheck,
            "accountant": self.accountant,
            "crosscheck_accountant": "pld (dp-accounting)",
            "relative_difference": ((self.epsilon - self.epsilon_crosscheck)
                                    / self.epsilon_crosscheck if self.epsilon_crosscheck else 0.0),
            "agrees": self.agrees,
        }


def site_accounting(site_id: str, ledger: PrivacyLedger, delta: float,
                    accountant: str) -> SiteAccounting:
    """Recompute a site's epsilon from its ledger with the training accountant and with PLD."""
    epsilon = ledger.epsilon(delta, accountant)
    crosscheck = pld_epsilon(ledger.accountant_history(), delta)
    return SiteAccounting(site_id, ledger, epsilon, crosscheck, accountant,
                          agrees(epsilon, crosscheck, accountant))


def read_ledgers(state_dir: Path, site_ids: list[str]) -> dict[str, PrivacyLedger]:
    """Each site's ledger from ``<state_dir>/<site>/privacy_ledger.json``; a missing one is an
    error naming the file (an audit never assumes a site spent nothing)."""
    ledgers = {}
    for site in site_ids:
        path = state_dir / site / LEDGER_FILE
        if not path.exists():
            raise FileNotFoundError(
                f"privacy ledger of {site} not found at {path}; pass --state-dir with the "
                "folder that holds each site's ledger (<state-dir>/<site>/privacy_ledger.json)")
        ledgers[site] = PrivacyLedger.load(path)
    return ledgers
