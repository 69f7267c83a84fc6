"""Check each site's reply before it can touch the global model.

A reply is rejected, with a reason that names the site, when Flower reports an error, when
the site reports an error, or when its weights have wrong keys, wrong shapes or NaN/Inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Message

from medgan_models.protocol import ARRAYS, BUDGET_EXHAUSTED, METRICS, SITE, TRAINED


class ReplyRejected(ValueError):
    """A reply that must not be aggregated; the message says whose and why."""


MAX_ERROR_CHARS = 400  # of a Flower error's reason (Ray's out-of-memory one runs to 3,000)


def short_reason(reason: str) -> str:
    """``reason`` up to :data:`MAX_ERROR_CHARS`, saying how much was cut: a run's log and
    summary repeat it once per round that the site misses."""
    if len(reason) <= MAX_ERROR_CHARS:
        return reason
    return f"{reason[:MAX_ERROR_CHARS]}... ({len(reason) - MAX_ERROR_CHARS} more characters)"


@dataclass
class SiteReply:
    """A validated reply from one site."""

    node_id: int
    site_id: str
    status: str
    message: str
    metrics: dict[str, float]
    weights: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def num_examples(self) -> int:
        """The site's training-set size (the FedAvg weight)."""
        return int(self.metrics.get("num-examples", 0))


def parse_reply(reply: Message, reference: dict[str, np.ndarray],
                max_update_norm: float = 0.0) -> SiteReply:
    """Validate one reply against the global weights' keys and shapes (and update norm > 0)."""
    node_id = reply.metadata.src_node_id
    if reply.has_error():
        raise ReplyRejected(f"node {node_id}: Flower error: {short_reason(reply.error.reason)}")
    content = reply.content
    if SITE not in content:
        raise ReplyRejected(f"node {node_id}: reply has no 'site' record")
    info = content[SITE]
    site_id, status = str(info.get("site-id", node_id)), str(info.get("status", ""))
    message = str(info.get("message", ""))
    if status not in (TRAINED, BUDGET_EXHAUSTED):
        raise ReplyRejected(message or f"{site_id}: status '{status}'")
    if METRICS not in content:
        raise ReplyRejected(f"{site_id}: reply has no 'metrics' record")
    metrics = {k: float(v) for k, v in content[METRICS].items()}
    if not math.isfinite(metrics.get("epsilon", float("nan"))):
        raise ReplyRejected(f"{site_id}: epsilon is missing or not finite")
    weights = None
    if status == TRAINED:
        if metrics.get("num-examples", 0) <= 0:
            raise ReplyRejected(f"{site_id}: num-examples must be > 0")
        if ARRAYS not in content:
            raise ReplyRejected(f"{site_id}: trained but sent no weights")
        weights = {k: v.numpy() for k, v in content[ARRAYS].items()}
        check_weights(site_id, weights, reference)
        if max_update_norm > 0:
            check_update_norm(site_id, weights, reference, max_update_norm)
    return SiteReply(node_id, site_id, status, message, metrics, weights)


def check_weights(site_id: str, weights: dict[str, np.ndarray],
                  reference: dict[str, np.ndarray]) -> None:
    """Same keys and shapes as ``reference``, every value finite."""
    missing, extra = reference.keys() - weights.keys(), weights.keys() - reference.keys()
    if missing or extra:
        raise ReplyRejected(
            f"{site_id}: weight keys differ (missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(extra)[:3]})")
    for key, value in weights.items():
        if value.shape != reference[key].shape:
            raise ReplyRejected(
                f"{site_id}: '{key}' has shape {value.shape}, expected {reference[key].shape}")
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ReplyRejected(f"{site_id}: '{key}' contains NaN or Inf")


def check_update_norm(site_id: str, weights: dict[str, np.ndarray],
                      reference: dict[str, np.ndarray], bound: float) -> None:
    """Reject an update whose L2 distance from the global model exceeds ``bound``."""
    squared = sum(float(np.sum((weights[k].astype(np.float64) - reference[k]) ** 2))
                  for k in reference if np.issubdtype(reference[k].dtype, np.floating))
    if squared > bound**2:
        raise ReplyRejected(
            f"{site_id}: update norm {squared ** 0.5:.3g} exceeds max-update-norm {bound:g}")
