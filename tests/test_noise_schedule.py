"""Noise per round: constant by default, or a decaying schedule that still spends exactly the
target epsilon over the planned rounds."""

import pytest

from client.noise_schedule import (NOISE_LEVELS, derive_noise_multiplier, round_weights,
                                   sample_rate_for)
from client.privacy_ledger import LedgerEntry, PrivacyLedger
from medgan_models.config import ConfigError, RunConfig


def test_weights_fall_geometrically_from_the_ratio_to_one():
    weights = round_weights(5, 4.0)
    assert weights[0] == pytest.approx(4.0) and weights[-1] == pytest.approx(1.0)
    assert all(a / b == pytest.approx(4 ** 0.25) for a, b in zip(weights, weights[1:]))
    assert round_weights(3, 1.0) == (1.0, 1.0, 1.0) and round_weights(1, 5.0) == (1.0,)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_a_decaying_schedule_spends_the_target_over_all_rounds(accountant):
    config = RunConfig(target_epsilon=4.0, num_rounds=4, local_steps=10, batch_size=16,
                       noise_schedule_ratio=3.0, accountant=accountant,
                       mean_embedding=0.0)  # DP-SGD alone (the release: test_mean_embedding)
    sigmas = [derive_noise_multiplier(config, 160, t) for t in range(1, 5)]
    assert sigmas[0] / sigmas[-1] == pytest.approx(3.0) and sigmas == sorted(sigmas, reverse=True)
    q = sample_rate_for(160, 16)
    ledger = PrivacyLedger([LedgerEntry(t, s, q, 10) for t, s in enumerate(sigmas, 1)])
    spent = ledger.epsilon(config.delta, accountant)
    assert spent <= 4.0 * (1 + 1e-6) and spent == pytest.approx(4.0, rel=0.01)
    # past the plan (a resumed run asked for more rounds), the last round's noise is kept
    assert derive_noise_multiplier(config, 160, 9) == sigmas[-1]
    constant = derive_noise_multiplier(config.replace(noise_schedule_ratio=1.0), 160, 1)
    assert sigmas[-1] < constant < sigmas[0]


def test_the_ratio_must_be_at_least_one():
    with pytest.raises(ConfigError, match="noise-schedule-ratio"):
        RunConfig.from_mapping({"noise-schedule-ratio": 0.5})


def test_a_long_schedule_steps_down_in_a_few_levels():
    # one noise level per round made the PRV accountant compose 160 mechanisms: minutes per
    # site at start-up and at every round's epsilon; a few levels keep it to seconds
    weights = round_weights(160, 3.0)
    levels = sorted(set(weights), reverse=True)
    assert len(levels) == NOISE_LEVELS and list(weights) == sorted(weights, reverse=True)
    assert levels[0] == pytest.approx(3.0) and levels[-1] == pytest.approx(1.0)
    assert weights.count(levels[0]) == weights.count(levels[-1]) == 160 // NOISE_LEVELS
    config = RunConfig(target_epsilon=10.0, num_rounds=160, local_steps=10, batch_size=64,
                       noise_schedule_ratio=3.0, accountant="rdp", mean_embedding=0.0)
    sigmas = [derive_noise_multiplier(config, 2000, t) for t in range(1, 161)]
    q = sample_rate_for(2000, 64)
    ledger = PrivacyLedger([LedgerEntry(t, s, q, 10) for t, s in enumerate(sigmas, 1)])
    assert len(ledger.accountant_history()) == NOISE_LEVELS  # the rounds of a level merge
    assert ledger.epsilon(config.delta, "rdp") == pytest.approx(10.0, rel=0.01)


def test_a_history_is_composed_once_per_process():
    # the virtual hospitals of one worker process ask for the same epsilon every round (PRV:
    # ~0.5 s a time); merged_history must not take composed_epsilon's cache away
    from client.privacy_ledger import composed_epsilon

    history = ((1.1, 0.03, 10), (0.9, 0.03, 20))
    first = composed_epsilon(history, 1e-5, "rdp")
    hits = composed_epsilon.cache_info().hits
    assert composed_epsilon(history, 1e-5, "rdp") == first
    assert composed_epsilon.cache_info().hits == hits + 1
