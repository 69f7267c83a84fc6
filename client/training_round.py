"""One federated round at a site, as a plain function (no Flower types in or out).

Order matters for honesty: the ledger is read (from ``context.state`` or disk, whichever has
recorded more), the budget is checked BEFORE any step, and the new entry is written to disk
before the weights leave the site.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from client.data import SiteData
from client.dp_training import resolve_device, train_locally
from client.embedding_release import needs_release, release_entry, site_embedding
from client.local_discriminator import (keep_discriminator, local_discriminator_path,
                                        restore_discriminator)
from client.noise_schedule import derive_noise_multiplier, sample_rate_for
from client.privacy_ledger import LEDGER_FILE, LedgerEntry, PrivacyLedger, most_complete
from client.site import SiteSettings
from medgan_models.config import RunConfig
from medgan_models.networks import build_models
from medgan_models.protocol import BUDGET_EXHAUSTED, SITE_CODE, TRAINED, class_examples_metrics
from medgan_models.weights import load_pair_state, pair_state


@dataclass
class RoundOutcome:
    """What a site reports after a round; ``weights`` is None when it did not train."""

    status: str
    message: str
    metrics: dict[str, float]
    ledger: PrivacyLedger
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)


def ledger_path(site: SiteSettings) -> Path:
    """Where this site's privacy ledger lives on its own disk."""
    return site.ledger_dir / LEDGER_FILE


def round_seed(seed: int, server_round: int, site_id: str) -> int:
    """A seed that differs per run seed, round and site (deployed sites share partition ids)."""
    return (seed * 1_000_003 + server_round * 10_007 + zlib.crc32(site_id.encode())) % 2**31


def train_round(global_weights: dict[str, np.ndarray | torch.Tensor], server_round: int,
                config: RunConfig, site: SiteSettings, data: SiteData,
                state_ledger: PrivacyLedger | None = None) -> RoundOutcome:
    """Train one round locally under DP, unless that would pass the site's ``max-epsilon``."""
    ledger = most_complete(state_ledger or PrivacyLedger(), PrivacyLedger.load(ledger_path(site)))
    noise_multiplier = derive_noise_multiplier(config, len(data), server_round)
    planned = LedgerEntry(server_round, noise_multiplier,
                          sample_rate_for(len(data), config.batch_size), config.local_steps)
    # the mean embedding's release, if on, comes with the site's first round
    release = [release_entry(config, server_round)] if needs_release(config,
                                                                      site.ledger_dir) else []
    planned_history = [*ledger.entries, *release, planned]
    next_epsilon = PrivacyLedger(planned_history).epsilon(config.delta, config.accountant)
    base = {
        "num-examples": len(data),
        "delta": config.delta,
        "max-grad-norm": config.max_grad_norm,
        "noise-multiplier": noise_multiplier,
        "sample-rate": planned.sample_rate,
        **({SITE_CODE: site.site_code(config)} if config.site_conditional else {}),
    }
    if next_epsilon > config.max_epsilon * (1 + 1e-9):
        spent = ledger.epsilon(config.delta, config.accountant)  # only needed to report
        message = (f"{site.site_id}: another round would spend epsilon {next_epsilon:.3f} > "
                   f"max-epsilon {config.max_epsilon:g} (spent so far {spent:.3f}); not training")
        return RoundOutcome(BUDGET_EXHAUSTED, message,
                            {**base, "epsilon": spent, "steps": 0}, ledger)

    generator, discriminator = build_models(config)
    load_pair_state(generator, discriminator, global_weights)
    kept_discriminator = local_discriminator_path(site.ledger_dir)
    if config.local_discriminator:
        restore_discriminator(discriminator, kept_discriminator, server_round)
    train_start = time.time()
    embedding = site_embedding(config, data, ledger, ledger_path(site), server_round)
    result = train_locally(generator, discriminator, data, config, noise_multiplier,
                           resolve_device(config.device),
                           seed=round_seed(config.seed, server_round, site.site_id),
                           site_code=site.site_code(config), embedding=embedding)
    ledger.add(LedgerEntry(server_round, result.noise_multiplier, result.sample_rate,
                           result.steps))
    ledger.save(ledger_path(site))
    if config.local_discriminator:
        keep_discriminator(discriminator, kept_discriminator, server_round)
    # The round as planned: the budget check already composed this very history (a PRV
    # composition takes ~0.5 s, a sizeable share of a small site's round).
    epsilon = (next_epsilon if ledger.entries == planned_history
               else ledger.epsilon(config.delta, config.accountant))
    metrics = {
        **base,
        "epsilon": epsilon,
        "steps": result.steps,
        "d-loss": result.d_loss,
        "g-loss": result.g_loss,
        "train-seconds": result.seconds,
        "train-start": train_start,  # wall clock, for the server's timing breakdown
        "train-end": time.time(),
        # for the generator's per-class draw of sites: the release's noisy class counts (DP
        # post-processing, no new privacy cost)
        **(class_examples_metrics(embedding.counts.numpy())
           if config.site_conditional and embedding is not None
           and embedding.counts is not None else {}),
    }
    message = f"{site.site_id}: trained {result.steps} DP steps, epsilon {epsilon:.3f}"
    return RoundOutcome(TRAINED, message, metrics, ledger, pair_state(generator, discriminator))
