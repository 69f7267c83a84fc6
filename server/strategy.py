"""FedAvg over generator AND discriminator, with reply validation and budget exclusion.

Built on Flower's ``FedAvg``: sampling and message construction are Flower's; this class adds
what a DP federation needs: sites that exhausted their privacy budget are excluded from then on,
invalid replies are rejected with a reason, and each round leaves a :class:`RoundReport`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

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

    @property
    def trained(self) -> list[SiteReply]:
        """Replies that were aggregated."""
        return [r for r in self.replies if r.status == TRAINED]


class DPGanFedAvg(FedAvg):
    """FedAvg (weighted by examples) over the flat generator + discriminator state."""

    def __init__(self, min_sites: int = 2) -> None:
        super().__init__(min_train_nodes=min_sites, min_available_nodes=min_sites)
        self.excluded_nodes: set[int] = set()
        self.excluded_sites: set[str] = set()
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
                        reference: ArrayRecord | None = None
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate replies, exclude exhausted sites, FedAvg the rest (None if none trained)."""
        report = RoundReport(server_round)
        reference_np = {k: v.numpy() for k, v in reference.items()} if reference else {}
        for reply in replies:
            try:
                parsed = parse_reply(reply, reference_np)
            except ReplyRejected as reason:
                log.warning("round %d: rejected reply: %s", server_round, reason)
                report.rejected.append(str(reason))
                continue
            report.replies.append(parsed)
            if parsed.status == BUDGET_EXHAUSTED and parsed.node_id not in self.excluded_nodes:
                log.warning("round %d: %s", server_round, parsed.message)
                self.excluded_nodes.add(parsed.node_id)
                self.excluded_sites.add(parsed.site_id)
                report.newly_excluded.append(parsed.site_id)
        self.last_report = report
        if not report.trained:
            return None, None
        return aggregate_sites(report.trained), None


def aggregate_sites(replies: list[SiteReply]) -> ArrayRecord:
    """Weighted average of the sites' weights by their number of examples (FedAvg)."""
    records = [
        RecordDict({ARRAYS: ArrayRecord({k: Array(v) for k, v in r.weights.items()}),
                    METRICS: MetricRecord({"num-examples": r.num_examples})})
        for r in replies
    ]
    return aggregate_arrayrecords(records, "num-examples")
