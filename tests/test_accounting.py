"""Cumulative privacy accounting across rounds, its persistence, and budget enforcement."""

import numpy as np
import pytest
import torch
from opacus.accountants import create_accountant

from client.data import SiteData
from client.privacy_ledger import LedgerEntry, PrivacyLedger
from client.site import site_config
from client.training_round import ledger_path, train_round
from medgan_models.networks import build_models
from medgan_models.weights import pair_state


def tiny_site(tmp_path, **overrides):
    run = {"image-size": 16, "base-channels": 8, "latent-dim": 8, "local-steps": 3,
           "batch-size": 8, "num-rounds": 2, "target-epsilon": 8.0, "max-epsilon": 8.0,
           "out-dir": str(tmp_path), **overrides}
    config, site = site_config(run, {"partition-id": 0, "num-partitions": 1})
    rng = np.random.default_rng(0)
    data = SiteData(rng.uniform(-1, 1, (40, 1, 16, 16)).astype(np.float32),
                    rng.integers(0, 2, 40).astype(np.int64), 2, ["a", "b"], "test")
    torch.manual_seed(0)
    generator, discriminator = build_models(config)
    return config, site, data, pair_state(generator, discriminator)


def test_epsilon_accumulates_over_rounds_like_one_accountant(tmp_path):
    config, site, data, weights = tiny_site(tmp_path)
    first = train_round(weights, 1, config, site, data)
    second = train_round(first.weights, 2, config, site, data, first.ledger)
    assert second.metrics["epsilon"] > first.metrics["epsilon"] > 0
    # the reported epsilon (the budget check's composition, reused) is the ledger's own
    assert second.metrics["epsilon"] == second.ledger.epsilon(config.delta)
    single = create_accountant(mechanism="prv")
    for _ in range(2 * config.local_steps):  # the same steps, in one go
        single.step(noise_multiplier=second.metrics["noise-multiplier"],
                    sample_rate=second.metrics["sample-rate"])
    assert second.metrics["epsilon"] == pytest.approx(single.get_epsilon(config.delta), rel=0.01)
    # planned for 2 rounds at target 8: the second round lands at (just under) the target
    assert second.metrics["epsilon"] == pytest.approx(8.0, rel=0.01)
    assert second.metrics["epsilon"] <= 8.0


def test_a_restarted_site_continues_from_its_disk_ledger(tmp_path):
    config, site, data, weights = tiny_site(tmp_path)
    first = train_round(weights, 1, config, site, data)
    assert ledger_path(site).exists()
    # a new process: no context.state, only the file on the site's disk
    second = train_round(first.weights, 2, config, site, data, state_ledger=None)
    assert second.ledger.rounds == [1, 2]
    assert second.metrics["epsilon"] > first.metrics["epsilon"]
    assert PrivacyLedger.load(ledger_path(site)).rounds == [1, 2]


def test_site_past_max_epsilon_does_not_train(tmp_path):
    config, site, data, weights = tiny_site(tmp_path, **{"max-epsilon": 5.0})
    outcome = train_round(weights, 1, config, site, data)
    assert outcome.status == "budget-exhausted"
    assert outcome.weights is None
    assert outcome.metrics["steps"] == 0 and outcome.metrics["epsilon"] == 0.0
    assert "max-epsilon 5" in outcome.message
    assert not ledger_path(site).exists()  # nothing spent, nothing recorded


def test_ledger_history_merges_like_opacus_and_round_trips(tmp_path):
    ledger = PrivacyLedger()
    ledger.add(LedgerEntry(1, 1.0, 0.1, 10))
    ledger.add(LedgerEntry(2, 1.0, 0.1, 10))
    ledger.add(LedgerEntry(3, 2.0, 0.1, 5))
    ledger.add(LedgerEntry(4, 2.0, 0.1, 0))  # a zero-step round records nothing
    assert ledger.accountant_history() == [(1.0, 0.1, 20), (2.0, 0.1, 5)]
    path = tmp_path / "ledger.json"
    ledger.save(path)
    assert PrivacyLedger.load(path) == ledger
    assert PrivacyLedger.from_config_record(ledger.to_config_record()) == ledger
    assert PrivacyLedger().epsilon(1e-5) == 0.0
    rdp, prv = ledger.epsilon(1e-5, "rdp"), ledger.epsilon(1e-5, "prv")
    assert prv < rdp < prv * 1.3  # PRV is the tighter of the two


def test_corrupt_ledger_is_an_error_not_a_reset(tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="refusing to restart the count at 0"):
        PrivacyLedger.load(path)
