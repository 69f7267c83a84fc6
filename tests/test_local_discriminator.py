"""``local-discriminator``: a site keeps its own discriminator across rounds."""

import numpy as np
import pytest
import torch

from client.data import SiteData
from client.local_discriminator import (keep_discriminator, local_discriminator_path,
                                        restore_discriminator)
from client.site import site_config
from client.training_round import train_round
from medgan_models.config import RunConfig
from medgan_models.networks import build_models
from medgan_models.weights import DISCRIMINATOR_PREFIX, pair_state


def tiny_site(tmp_path, **overrides):
    run = {"image-size": 16, "base-channels": 8, "latent-dim": 8, "local-steps": 2,
           "batch-size": 8, "num-rounds": 3, "mean-embedding": 0.0,
           "learning-rate-discriminator": 1e-5, "out-dir": str(tmp_path), **overrides}
    config, site = site_config(run, {"partition-id": 0, "num-partitions": 1})
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (40, 1, 16, 16)).astype(np.float32)
    data = SiteData(images, rng.integers(0, 2, 40), 2, ["a", "b"], "test")
    return config, site, data


def discriminator_of(weights):
    return torch.cat([v.flatten().float() for k, v in sorted(weights.items())
                      if k.startswith(DISCRIMINATOR_PREFIX)])


def fresh_weights(config, seed):
    torch.manual_seed(seed)
    return pair_state(*build_models(config))


def test_kept_weights_round_trip_only_into_the_next_round_and_a_bad_file_is_named(tmp_path):
    config = RunConfig(image_size=16, base_channels=8)
    path = local_discriminator_path(tmp_path / "site-0")
    _, discriminator = build_models(config)
    assert not restore_discriminator(discriminator, path, 2)  # nothing kept yet
    keep_discriminator(discriminator, path, server_round=1)
    _, other = build_models(config)
    before = [v.clone() for v in other.state_dict().values()]
    # a missed round, or another run's file: the federation's discriminator stays
    assert not restore_discriminator(other, path, 3)
    assert not restore_discriminator(other, path, 1)
    assert all(torch.equal(a, b) for a, b in zip(before, other.state_dict().values()))
    assert restore_discriminator(other, path, 2)
    for a, b in zip(discriminator.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    _, wider = build_models(config.replace(base_channels=16))
    with pytest.raises(ValueError, match="discriminator.pt.*does not fit"):
        restore_discriminator(wider, path, 2)
    path.write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="discriminator.pt.*unreadable"):
        restore_discriminator(other, path, 2)


@pytest.mark.parametrize("local", [True, False])
def test_a_site_trains_its_kept_discriminator_not_the_federations(tmp_path, local):
    config, site, data = tiny_site(tmp_path, **{"local-discriminator": local})
    first = train_round(fresh_weights(config, 0), 1, config, site, data)
    assert local_discriminator_path(site.ledger_dir).exists() == local
    kept = discriminator_of(first.weights)
    # the federation sends an unrelated discriminator (another site's, say)
    sent = {**first.weights, **{k: v for k, v in fresh_weights(config, 1).items()
                                if k.startswith(DISCRIMINATOR_PREFIX)}}
    second = train_round(sent, 2, config, site, data, first.ledger)
    trained = discriminator_of(second.weights)
    nearer_kept = (trained - kept).norm() < (trained - discriminator_of(sent)).norm()
    assert nearer_kept == local
