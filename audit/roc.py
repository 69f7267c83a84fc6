"""How well a membership score separates members from non-members: ROC, AUC, TPR at low FPR.

Convention everywhere in ``audit``: a HIGHER score means "more likely a member".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.bounds import epsilon_lower_bound


def roc_curve(member_scores: np.ndarray, nonmember_scores: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the rule 'score >= t means member' over every threshold t, from (0, 0)
    to (1, 1); ties between a member and a non-member move both rates at once."""
    members, nonmembers = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    if len(members) == 0 or len(nonmembers) == 0:
        raise ValueError("a ROC curve needs at least one member and one non-member score")
    thresholds = np.unique(np.concatenate([members, nonmembers]))[::-1]
    members_sorted, nonmembers_sorted = np.sort(members), np.sort(nonmembers)
    tp = len(members) - np.searchsorted(members_sorted, thresholds, side="left")
    fp = len(nonmembers) - np.searchsorted(nonmembers_sorted, thresholds, side="left")
    tpr = np.concatenate([[0.0], tp / len(members)])
    fpr = np.concatenate([[0.0], fp / len(nonmembers)])
    return fpr, tpr


def roc_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """P(member score > non-member score) + P(tie) / 2 (0.5 = chance, 1 = perfect)."""
    fpr, tpr = roc_curve(member_scores, nonmember_scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """The best TPR among thresholds whose FPR is at most ``max_fpr`` (0 if none)."""
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


@dataclass
class AttackOutcome:
    """One attack's scores on members and non-members, and what they show."""

    name: str
    description: str
    member_scores: np.ndarray
    nonmember_scores: np.ndarray

    def summary(self, delta: float, confidence: float = 0.95) -> dict[str, float | str | int]:
        """AUC, TPR at FPR 1% and 0.1%, and the epsilon lower bound (Clopper-Pearson)."""
        fpr, tpr = roc_curve(self.member_scores, self.nonmember_scores)
        return {
            "name": self.name,
            "description": self.description,
            "members": int(len(self.member_scores)),
            "nonmembers": int(len(self.nonmember_scores)),
            "auc": roc_auc(self.member_scores, self.nonmember_scores),
            "tpr_at_fpr_0.01": tpr_at_fpr(fpr, tpr, 0.01),
            "tpr_at_fpr_0.001": tpr_at_fpr(fpr, tpr, 0.001),
            # below 1 / non-members an FPR cannot be resolved: TPR there means "at FPR 0"
            "fpr_resolution": 1.0 / len(self.nonmember_scores),
            "epsilon_lower_bound": epsilon_lower_bound(self.member_scores,
                                                       self.nonmember_scores, delta, confidence),
        }
