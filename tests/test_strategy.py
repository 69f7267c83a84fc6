"""Server side: reply validation, FedAvg weighting, budget exclusion."""

import time

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.app.metadata import Metadata

from flwr.supercore.task_identity import TaskIdentity

from server.reply_validation import ReplyRejected, parse_reply
from server.strategy import DPGanFedAvg, aggregate_sites

REFERENCE = {"generator.w": np.zeros((2, 2), np.float32), "discriminator.b": np.zeros(3, np.float32)}


def reply(node: int, status: str = "trained", weights=None, epsilon: float = 1.0,
          examples: int = 10, error: str | None = None) -> Message:
    """A reply as a site would send it."""
    metadata = Metadata(run_id=1, message_id="", src_node_id=node, dst_node_id=0,
                        reply_to_message_id="m", group_id="1", created_at=time.time(), ttl=60,
                        message_type="train")
    if error:
        return Message(Error(code=1, reason=error), metadata=metadata)
    content = RecordDict({
        "site": ConfigRecord({"site-id": f"site-{node}", "status": status, "message": "msg"}),
        "metrics": MetricRecord({"num-examples": examples, "epsilon": epsilon, "delta": 1e-5}),
    })
    if weights is not None:
        content["arrays"] = ArrayRecord({k: Array(np.asarray(v)) for k, v in weights.items()})
    return Message(content, metadata=metadata)


def weights(value: float) -> dict[str, np.ndarray]:
    return {k: np.full_like(v, value) for k, v in REFERENCE.items()}


def test_fedavg_weighting_matches_a_hand_computation():
    a = parse_reply(reply(1, weights=weights(1.0), examples=10), REFERENCE)
    b = parse_reply(reply(2, weights=weights(4.0), examples=30), REFERENCE)
    c = parse_reply(reply(3, weights={"generator.w": np.array([[0, 8], [8, 0]], np.float32),
                                      "discriminator.b": np.array([1, 2, 3], np.float32)},
                          examples=20), REFERENCE)
    result = {k: v.numpy() for k, v in aggregate_sites([a, b, c]).items()}
    # (10 * 1 + 30 * 4 + 20 * x) / 60
    assert np.allclose(result["generator.w"], [[130 / 60, 290 / 60], [290 / 60, 130 / 60]])
    assert np.allclose(result["discriminator.b"], [(130 + 20) / 60, (130 + 40) / 60,
                                                   (130 + 60) / 60])


@pytest.mark.parametrize("bad,match", [
    (reply(1, weights={**weights(1.0), "generator.w": np.full((2, 2), np.nan, np.float32)}),
     "site-1: 'generator.w' contains NaN"),
    (reply(1, weights={**weights(1.0), "generator.w": np.ones((3, 2), np.float32)}),
     r"'generator.w' has shape \(3, 2\), expected \(2, 2\)"),
    (reply(1, weights={"generator.w": np.ones((2, 2), np.float32)}), "weight keys differ"),
    (reply(1), "trained but sent no weights"),
    (reply(1, status="error"), "msg"),
    (reply(1, weights=weights(1.0), epsilon=float("inf")), "epsilon is missing or not finite"),
    (reply(1, weights=weights(1.0), examples=0), "num-examples must be > 0"),
    (reply(4, error="ClientApp crashed"), "node 4: Flower error: ClientApp crashed"),
])
def test_bad_replies_are_rejected_with_a_reason(bad, match):
    with pytest.raises(ReplyRejected, match=match):
        parse_reply(bad, REFERENCE)


def test_a_long_flower_error_is_cut_saying_by_how_much():
    # Ray's out-of-memory reason runs to ~3,000 characters, repeated for every missed round
    reason = "ray.exceptions.OutOfMemoryError: 1 worker(s) were killed " + "x" * 3000
    with pytest.raises(ReplyRejected) as caught:
        parse_reply(reply(4, error=reason), REFERENCE)
    message = str(caught.value)
    assert message.startswith("node 4: Flower error: ray.exceptions.OutOfMemoryError")
    assert len(message) < 500 and f"({len(reason) - 400} more characters)" in message


class FakeGrid:
    def __init__(self, nodes):
        self.nodes = nodes

    def get_node_ids(self):
        return self.nodes


def test_exhausted_site_is_excluded_and_bad_reply_does_not_poison_the_average(monkeypatch):
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)  # as inside a running ServerApp
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    strategy = DPGanFedAvg(min_sites=1)
    reference = ArrayRecord({k: Array(v) for k, v in REFERENCE.items()})
    replies = [
        reply(1, weights=weights(2.0)),
        reply(2, status="budget-exhausted", epsilon=9.9),
        reply(3, weights={**weights(1.0), "discriminator.b": np.array([np.inf, 0, 0], np.float32)}),
    ]
    arrays, _ = strategy.aggregate_train(1, replies, reference=reference)
    assert np.allclose(arrays["generator.w"].numpy(), 2.0)  # only site-1 was averaged
    report = strategy.last_report
    assert report.newly_excluded == ["site-2"]
    assert len(report.rejected) == 1 and "site-3" in report.rejected[0]
    messages = strategy.configure_train(2, arrays, ConfigRecord(), FakeGrid([1, 2, 3]))
    assert sorted(m.metadata.dst_node_id for m in messages) == [1, 3]
    assert all(m.content["config"]["server-round"] == 2 for m in messages)


def test_no_trained_reply_gives_no_update():
    strategy = DPGanFedAvg(min_sites=1)
    arrays, _ = strategy.aggregate_train(3, [reply(1, status="budget-exhausted")],
                                         reference=ArrayRecord({k: Array(v) for k, v in REFERENCE.items()}))
    assert arrays is None and strategy.excluded_sites == {"site-1"}


@pytest.mark.parametrize("aggregation,expected", [("median", 2.0), ("trimmed-mean", 7 / 3),
                                                  ("fedavg", (1 + 2 + 3 + 4 + 1000) / 5)])
def test_robust_aggregation_ignores_one_wild_site(aggregation, expected):
    replies = [parse_reply(reply(i, weights=weights(v)), REFERENCE)
               for i, v in enumerate([1.0, 2.0, 3.0, 1000.0, 2.0 if aggregation != "fedavg" else 4.0])]
    result = aggregate_sites(replies, aggregation, trim_fraction=0.2)
    assert np.allclose(result["generator.w"].numpy(), expected)
    assert result["generator.w"].numpy().dtype == np.float32


def test_update_norm_bound_rejects_a_far_update():
    far = reply(1, weights=weights(10.0))
    with pytest.raises(ReplyRejected, match="update norm .* exceeds max-update-norm 5"):
        parse_reply(far, REFERENCE, max_update_norm=5.0)
    assert parse_reply(reply(1, weights=weights(0.1)), REFERENCE, max_update_norm=5.0)


def test_absent_sites_are_named_and_min_sites_is_enforced():
    strategy = DPGanFedAvg(min_sites=2)
    reference = ArrayRecord({k: Array(v) for k, v in REFERENCE.items()})
    strategy.aggregate_train(1, [reply(1, weights=weights(1.0)), reply(2, weights=weights(1.0))],
                             reference=reference, sent_to=[1, 2])
    arrays, _ = strategy.aggregate_train(2, [reply(1, weights=weights(1.0))],
                                         reference=reference, sent_to=[1, 2, 3])
    assert arrays is None  # only one of min-sites 2 trained
    assert strategy.last_report.absent == ["node-3", "site-2"]


def test_flower_node_unavailable_reply_counts_as_absent_not_as_a_site():
    strategy = DPGanFedAvg(min_sites=1)
    reference = ArrayRecord({k: Array(v) for k, v in REFERENCE.items()})
    strategy.aggregate_train(1, [reply(2, weights=weights(1.0)), reply(3, weights=weights(1.0))],
                             reference=reference, sent_to=[2, 3])
    unavailable = reply(1, error="Node Unavailable")  # sent by the SuperLink (node id 1)
    arrays, _ = strategy.aggregate_train(2, [reply(2, weights=weights(1.0)), unavailable],
                                         reference=reference, sent_to=[2, 3])
    assert arrays is not None
    assert strategy.last_report.absent == ["site-3"] and strategy.last_report.rejected == []
