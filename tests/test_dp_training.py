"""The local DP-GAN step: both models learn, Poisson edge cases, both losses."""

import numpy as np
import pytest
import torch

from client.data import SiteData
from client.dp_training import derive_noise_multiplier, sample_rate_for, train_locally
from client.privacy_ledger import LedgerEntry, PrivacyLedger
from medgan_models.config import RunConfig
from medgan_models.networks import build_models


def data(n=32, size=16, classes=2):
    rng = np.random.default_rng(1)
    return SiteData(rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32),
                    rng.integers(0, classes, n).astype(np.int64), classes,
                    [str(i) for i in range(classes)], "test")


def config(**kw):
    base = dict(image_size=16, base_channels=8, latent_dim=8, local_steps=4, batch_size=8,
                num_rounds=2)
    return RunConfig(**{**base, **kw})


@pytest.mark.parametrize("loss", ["minimax", "wasserstein"])
@pytest.mark.parametrize("augment,mode", [(False, "hooks"), (True, "functorch")])
def test_both_models_learn_and_steps_are_counted(loss, augment, mode):
    cfg = config(loss=loss, augment=augment, grad_sample_mode=mode)
    torch.manual_seed(0)
    generator, discriminator = build_models(cfg)
    g0 = [p.detach().clone() for p in generator.parameters()]
    d0 = [p.detach().clone() for p in discriminator.parameters()]
    result = train_locally(generator, discriminator, data(), cfg, 1.0, torch.device("cpu"), 0)
    assert result.steps == 4 and np.isfinite(result.d_loss) and np.isfinite(result.g_loss)
    assert result.sample_rate == pytest.approx(0.25)
    assert any(not torch.equal(a, b) for a, b in zip(g0, generator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, discriminator.parameters(), strict=True))
    if loss == "wasserstein":
        assert max(p.abs().max().item() for p in discriminator.parameters()) <= cfg.wgan_clip


def test_empty_poisson_batches_do_not_break_a_step():
    cfg = config(batch_size=1, local_steps=12, num_classes=0)  # q = 1/4: many empty batches
    generator, discriminator = build_models(cfg)
    result = train_locally(generator, discriminator, data(n=4, classes=1), cfg, 1.0,
                           torch.device("cpu"), 3)
    assert result.steps == 12 and np.isfinite(result.d_loss)


def test_generator_updates_every_n_discriminator_steps():
    cfg = config(local_steps=6, discriminator_steps=3)
    generator, discriminator = build_models(cfg)
    result = train_locally(generator, discriminator, data(), cfg, 1.0, torch.device("cpu"), 0)
    assert result.steps == 6  # privacy counts discriminator steps only


def test_derived_noise_spends_the_target_over_all_rounds():
    cfg = config(target_epsilon=3.0, local_steps=20, num_rounds=5, batch_size=16)
    sigma = derive_noise_multiplier(cfg, 200)
    q = sample_rate_for(200, 16)
    assert q == pytest.approx(1 / 13)
    ledger = PrivacyLedger([LedgerEntry(r, sigma, q, 20) for r in range(1, 6)])
    assert ledger.epsilon(cfg.delta) == pytest.approx(3.0, rel=0.01)
    assert ledger.epsilon(cfg.delta) <= 3.0
    assert derive_noise_multiplier(cfg.replace(noise_multiplier=2.5), 200) == 2.5
