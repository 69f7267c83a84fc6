"""FedAvg over generator AND discriminator, with reply validation and budget exclusion.

Built on Flower's ``FedAvg``: sampling and message construction are Flower's; this class adds
what a DP federation needs: sites that exhausted their privacy budget are excluded from then on,
invalid replies are rejected with a reason, and each round leaves a :class:`RoundReport`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from scipy.stats import trim_mean

from medgan_models.config import AGGREGATIONS
from medgan_models.protocol import ARRAYS, BUDGET_EXHAUSTED, CONFIG, METRICS, TRAINED
from server.reply_validation import ReplyRejected, SiteReply, parse_reply

log = logging.getLogger("medgan.server")


@dataclass
class RoundReport:
    """What happened in one round, site by site."""

    round: int
    replies: list[SiteReply] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    newly_excluded: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    @property
    def trained(self) -> list[SiteReply]:
        """Replies that were aggregated."""
        return [r for r in self.replies if r.status == TRAINED]


class DPGanFedAvg(FedAvg):
    """FedAvg (weighted by examples) over the flat generator + discriminator state.

    ``aggregation`` may instead be a coordinate-wise ``median`` or ``trimmed-mean`` (robust to a
    faulty site), and ``max_update_norm`` > 0 rejects any update farther than that (L2) from
    the global model.
    """

    def __init__(self, min_sites: int = 2, aggregation: str = "fedavg",
                 trim_fraction: float = 0.2, max_update_norm: float = 0.0) -> None:
        super().__init__(min_train_nodes=min_sites, min_available_nodes=min_sites)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got '{aggregation}'")
        self.min_sites = min_sites
        self.aggregation = aggregation
        self.trim_fraction = trim_fraction
        self.max_update_norm = max_update_norm
        self.excluded_nodes: set[int] = set()
        self.excluded_sites: set[str] = set()
        self.node_sites: dict[int, str] = {}
        self.last_report = RoundReport(round=0)

    def eligible_nodes(self, grid: Grid) -> list[int]:
        """Connected nodes that have not been excluded."""
        return sorted(n for n in grid.get_node_ids() if n not in self.excluded_nodes)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """One train message to every eligible node (all sites train in every round)."""
        config = ConfigRecord({**config, "server-round": server_round})
        record = RecordDict({ARRAYS: arrays, CONFIG: config})
        return [Message(record, dst_node_id=node, message_type=MessageType.TRAIN)
                for node in self.eligible_nodes(grid)]

    def aggregate_train(self, server_round: int, replies: Iterable[Message],
                        reference: ArrayRecord | None = None, sent_to: Iterable[int] = ()
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate replies, exclude exhausted sites, aggregate the rest.

        Returns no update (None) when fewer than ``min_sites`` sites trained.
        """
        report = RoundReport(server_round)
        reference_np = {k: v.numpy() for k, v in reference.items()} if reference else {}
        replied: set[int] = set()
        sent = set(sent_to)
        for reply in replies:
            if sent and reply.has_error() and reply.metadata.src_node_id not in sent:
                continue  # Flower's own "node unavailable" reply (from the SuperLink): absent
            replied.add(reply.metadata.src_node_id)
            try:
                parsed = parse_reply(reply, reference_np, self.max_update_norm)
            except ReplyRejected as reason:
                log.warning("round %d: rejected reply: %s", server_round, reason)
                report.rejected.append(str(reason))
                continue
            self.node_sites[parsed.node_id] = parsed.site_id
            report.replies.append(parsed)
            if parsed.status == BUDGET_EXHAUSTED and parsed.node_id not in self.excluded_nodes:
                log.warning("round %d: %s", server_round, parsed.message)
                self.excluded_nodes.add(parsed.node_id)
                self.excluded_sites.add(parsed.site_id)
                report.newly_excluded.append(parsed.site_id)
        report.absent = sorted(self.node_sites.get(n, f"node-{n}") for n in sent - replied)
        for site in report.absent:
            log.warning("round %d: %s did not reply in time (or went offline)", server_round, site)
        self.last_report = report
        if not report.trained or len(report.trained) < self.min_sites:
            return None, None
        return aggregate_sites(report.trained, self.aggregation, self.trim_fraction), None


def aggregate_sites(replies: list[SiteReply], aggregation: str = "fedavg",
                    trim_fraction: float = 0.2) -> ArrayRecord:
    """FedAvg (weighted by examples), or a coordinate-wise median / trimmed mean."""
    if aggregation == "fedavg":
        records = [
            RecordDict({ARRAYS: ArrayRecord({k: Array(v) for k, v in r.weights.items()}),
                        METRICS: MetricRecord({"num-examples": r.num_examples})})
            for r in replies
        ]
        return aggregate_arrayrecords(records, "num-examples")
    combined = {}
    for key in replies[0].weights:
        stacked = np.stack([r.weights[key] for r in replies])
        value = (np.median(stacked, axis=0) if aggregation == "median"
                 else trim_mean(stacked, trim_fraction, axis=0))
        combined[key] = Array(np.asarray(value, dtype=stacked.dtype))
    return ArrayRecord(combined)
