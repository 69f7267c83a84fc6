"""The ClientApp: message in, plain function, message out. Nothing else lives here.

Reply layout (``RecordDict``):
- ``arrays`` (ArrayRecord): generator + discriminator weights; absent when the site did not train;
- ``metrics`` (MetricRecord): ``num-examples``, ``epsilon`` (cumulative), ``delta``, losses and
  the round's DP-SGD parameters;
- ``site`` (ConfigRecord): ``site-id``, ``status`` (trained | budget-exhausted | error), ``message``.
Only weights and numbers leave the site: no image, no header value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.privacy_ledger import PrivacyLedger
from client.site import load_data, site_config
from client.holdout import cached_split
from client.site_evaluation import evaluate_generator, real_statistics
from client.training_round import round_seed, train_round
from medgan_models.config import ConfigError
from medgan_models.protocol import (
    ARRAYS,
    CONFIG,
    ERROR,
    METRICS,
    REAL_STATS,
    SITE,
    stats_to_arrays,
)

LEDGER_STATE_KEY = "privacy-ledger"
log = logging.getLogger("medgan.client")


def error_summary(site_id: str, error: Exception) -> str:
    """What the server may learn of a site's failure: config errors in full, others by type only
    (a data error can name a file, and file names can carry patient identity)."""
    if isinstance(error, ConfigError):
        return f"{site_id}: {error}"
    return f"{site_id}: {type(error).__name__} (details are in the site's own log)"


def build_client_app(overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """A ClientApp whose run config is ``context.run_config`` updated with ``overrides``."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        site_id = f"site-{context.node_config.get('partition-id', context.node_id)}"
        try:
            config, site = site_config(context.run_config, context.node_config, overrides)
            site_id = site.site_id
            state_ledger = None
            if LEDGER_STATE_KEY in context.state:
                state_ledger = PrivacyLedger.from_config_record(context.state[LEDGER_STATE_KEY])
            server_round = int(msg.content[CONFIG]["server-round"])
            weights = msg.content[ARRAYS].to_torch_state_dict()
            train_data, _ = cached_split(load_data(config, site), config.holdout_fraction,
                                         config.seed)
            outcome = train_round(weights, server_round, config, site, train_data, state_ledger)
        except Exception as error:  # reported to the server, which names the site
            log.exception("%s failed", site_id)
            info = ConfigRecord({"site-id": site_id, "status": ERROR,
                                 "message": error_summary(site_id, error)})
            return Message(RecordDict({SITE: info}), reply_to=msg)
        context.state[LEDGER_STATE_KEY] = outcome.ledger.to_config_record()
        content = RecordDict({
            METRICS: MetricRecord(outcome.metrics),
            SITE: ConfigRecord({"site-id": site.site_id, "status": outcome.status,
                                  "message": outcome.message}),
        })
        if outcome.weights is not None:
            content[ARRAYS] = ArrayRecord(outcome.weights)
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        site_id = f"site-{context.node_config.get('partition-id', context.node_id)}"
        try:
            config, site = site_config(context.run_config, context.node_config, overrides)
            site_id = site.site_id
            train_data, holdout = cached_split(load_data(config, site), config.holdout_fraction,
                                               config.seed)
            task = str(msg.content[CONFIG]["task"])
            seed = round_seed(config.seed, int(msg.content[CONFIG]["server-round"]), site_id)
            content = RecordDict()
            if task == REAL_STATS:
                stats, noise = real_statistics(train_data, config, seed)
                encoded = stats_to_arrays(stats)
                content[ARRAYS] = ArrayRecord({k: Array(v) for k, v in encoded["arrays"].items()})
                counts = np.bincount(train_data.labels, minlength=max(config.num_classes, 1))
                content[METRICS] = MetricRecord({**encoded["counts"], **noise,
                                                 "class-counts": [int(c) for c in counts]})
            else:
                weights = msg.content[ARRAYS].to_torch_state_dict()
                content[METRICS] = MetricRecord(
                    evaluate_generator(weights, config, train_data, holdout, seed))
        except Exception as error:
            log.exception("%s failed to evaluate", site_id)
            return Message(RecordDict({SITE: ConfigRecord(
                {"site-id": site_id, "status": ERROR, "message": error_summary(site_id, error)})}),
                reply_to=msg)
        content[SITE] = ConfigRecord({"site-id": site_id, "status": "evaluated", "message": ""})
        return Message(content, reply_to=msg)

    return app


app = build_client_app()
