"""The ClientApp: message in, plain function, message out. Nothing else lives here.

Reply layout (``RecordDict``):
- ``arrays`` (ArrayRecord): generator + discriminator weights; absent when the site did not train;
- ``metrics`` (MetricRecord): ``num-examples``, ``epsilon`` (cumulative), ``delta``, losses and
  the round's DP-SGD parameters;
- ``site`` (ConfigRecord): ``site-id``, ``status`` (trained | budget-exhausted | error), ``message``.
An evaluate message's ``task`` asks for real-data statistics, metrics of the sent generator, or
(``site-info``, for num-sites "auto", before any data is read) the site's code and partitions.
Only weights and numbers leave the site: no image, no header value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.data import SiteData
from client.privacy_ledger import PrivacyLedger
from client.site import SiteSettings, site_config, site_info, train_and_holdout
from client.site_evaluation import evaluate_generator, real_statistics_record
from client.training_round import round_seed, train_round
from medgan_models.config import ConfigError, RunConfig
from medgan_models.protocol import (ARRAYS, CONFIG, ERROR, METRICS, NUM_SITES, REAL_STATS, SITE,
                                    SITE_INFO)

LEDGER_STATE_KEY = "privacy-ledger"
log = logging.getLogger("medgan.client")


def error_summary(site_id: str, error: Exception) -> str:
    """What the server may learn of a site's failure: config errors in full, others by type only
    (a data error can name a file, and file names can carry patient identity)."""
    if isinstance(error, ConfigError):
        return f"{site_id}: {error}"
    return f"{site_id}: {type(error).__name__} (details are in the site's own log)"


def _error_reply(msg: Message, site_id: str, error: Exception) -> Message:
    log.exception("%s failed", site_id)
    info = ConfigRecord({"site-id": site_id, "status": ERROR,
                         "message": error_summary(site_id, error)})
    return Message(RecordDict({SITE: info}), reply_to=msg)


def _site(msg: Message, context: Context, overrides: Mapping[str, Any] | None
          ) -> tuple[RunConfig, SiteSettings, SiteData, SiteData]:
    """The run config (num-sites as the server resolved it), the site, and its (training,
    held-out) images."""
    resolved = msg.content[CONFIG].get(NUM_SITES)
    config, site = site_config(context.run_config, context.node_config, overrides,
                               int(resolved) if resolved is not None else None)
    return (config, site, *train_and_holdout(config, site))


def build_client_app(overrides: Mapping[str, Any] | None = None) -> ClientApp:
    """A ClientApp whose run config is ``context.run_config`` updated with ``overrides``."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        site_id = f"site-{context.node_config.get('partition-id', context.node_id)}"
        try:
            config, site, train_data, _ = _site(msg, context, overrides)
            site_id = site.site_id
            state_ledger = None
            if LEDGER_STATE_KEY in context.state:
                state_ledger = PrivacyLedger.from_config_record(context.state[LEDGER_STATE_KEY])
            outcome = train_round(msg.content[ARRAYS].to_torch_state_dict(),
                                  int(msg.content[CONFIG]["server-round"]), config, site,
                                  train_data, state_ledger)
        except Exception as error:  # reported to the server, which names the site
            return _error_reply(msg, site_id, error)
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
            task = str(msg.content[CONFIG]["task"])
            if task == SITE_INFO:  # before any data is read: the server is counting sites
                _, site = site_config(context.run_config, context.node_config, overrides)
                return Message(RecordDict({
                    METRICS: MetricRecord(site_info(site)),
                    SITE: ConfigRecord({"site-id": site.site_id, "status": "evaluated",
                                        "message": ""})}), reply_to=msg)
            config, site, train_data, holdout = _site(msg, context, overrides)
            site_id = site.site_id
            seed = round_seed(config.seed, int(msg.content[CONFIG]["server-round"]), site_id)
            content = RecordDict()
            if task == REAL_STATS:
                arrays, numbers = real_statistics_record(train_data, config, seed)
                content[ARRAYS] = ArrayRecord({k: Array(v) for k, v in arrays.items()})
                content[METRICS] = MetricRecord(numbers)
            else:
                content[METRICS] = MetricRecord(evaluate_generator(
                    msg.content[ARRAYS].to_torch_state_dict(), config, train_data, holdout, seed,
                    site.site_code(config)))
        except Exception as error:
            return _error_reply(msg, site_id, error)
        content[SITE] = ConfigRecord({"site-id": site_id, "status": "evaluated", "message": ""})
        return Message(content, reply_to=msg)

    return app


app = build_client_app()
