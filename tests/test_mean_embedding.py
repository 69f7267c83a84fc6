"""The private mean embedding (DP-MERF): its features, its release, its accounting, its loss."""

import json

import numpy as np
import pytest
import torch

from audit.accounting import site_accounting
from client.data import SiteData
from client.dp_training import LocalTrainer
from client.embedding_release import embedding_path, make_release, site_embedding
from client.noise_schedule import derive_noise_multiplier, sample_rate_for
from client.privacy_ledger import (
    DP_SGD,
    LEDGER_FILE,
    MEAN_EMBEDDING,
    LedgerEntry,
    PrivacyLedger,
    composed_epsilon,
)
from client.site import site_config
from client.training_round import ledger_path, train_round
from medgan_models.config import ConfigError, RunConfig
from medgan_models.mean_embedding import (
    MeanEmbedding,
    RandomFourierFeatures,
    private_mean_embedding,
)
from medgan_models.networks import build_models
from medgan_models.weights import pair_state


def blobs(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of 16x16 images: bright discs of varied radius (label 1 brighter)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16] - 7.5
    labels = rng.integers(0, 2, n)
    radius = rng.uniform(3, 7, n)
    disc = (np.hypot(yy, xx)[None] < radius[:, None, None]).astype(np.float32)
    images = disc * (0.5 + 0.5 * labels[:, None, None]) * 2 - 1
    return images[:, None].astype(np.float32), labels.astype(np.int64)


def features(seed: int = 0) -> RandomFourierFeatures:
    return RandomFourierFeatures(256, 512, 8.0, seed)


def test_every_image_has_features_of_norm_one_and_the_map_depends_on_the_seed_only():
    images = torch.from_numpy(blobs(20)[0])
    phi = features()(images)
    assert phi.shape == (20, 512)
    assert torch.allclose(phi.norm(dim=1), torch.ones(20), atol=1e-5)  # sensitivity 1
    assert torch.equal(features(3).frequencies, features(3).frequencies)
    assert not torch.equal(features(3).frequencies, features(4).frequencies)
    with pytest.raises(ValueError, match="even"):
        RandomFourierFeatures(256, 511, 8.0, 0)


def test_noiseless_release_is_the_class_means_and_shares():
    images, labels = blobs()
    release = private_mean_embedding(images, labels, 2, features(), noise_multiplier=0.0)
    phi = features()(torch.from_numpy(images))
    for c in (0, 1):
        chosen = torch.from_numpy(labels == c)
        assert torch.allclose(release.means[c], phi[chosen].mean(0), atol=1e-5)
        assert release.weights[c].item() == pytest.approx(chosen.float().mean().item(), abs=1e-5)


def test_release_noise_is_secret_randomness_of_the_given_scale():
    images, labels = blobs()
    clean = private_mean_embedding(images, labels, 2, features(), 0.0)
    noisy = [private_mean_embedding(images, labels, 2, features(), 2.0,
                                    noise=torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert not torch.allclose(noisy[0].means, noisy[1].means)
    # per coordinate, the sum's noise has std 2, so the class mean's about 2 / class size
    count = int((labels == 0).sum())
    spread = (noisy[0].means[0] - clean.means[0]).std().item()
    assert 0.5 * 2 / count < spread < 2 * 2 / count


def test_loss_is_lower_for_varied_real_images_than_for_a_collapsed_batch():
    images, labels = blobs(400)
    release = private_mean_embedding(images, labels, 2, features(), 1.0)
    fresh, fresh_labels = blobs(128, seed=1)
    varied = release.loss(torch.from_numpy(fresh), torch.from_numpy(fresh_labels))
    collapsed = release.loss(torch.from_numpy(np.repeat(fresh[:2], 64, axis=0)),
                             torch.from_numpy(np.repeat(fresh_labels[:2], 64)))
    assert varied < 0.5 * collapsed
    fake = torch.from_numpy(fresh).requires_grad_(True)  # differentiable, for the generator
    release.loss(fake, torch.from_numpy(fresh_labels)).backward()
    assert fake.grad.abs().sum() > 0


def test_a_release_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="does not fit 512"):
        MeanEmbedding(features(), torch.zeros(2, 100), torch.ones(2))


def test_config_checks_the_mean_embedding_keys():
    with pytest.raises(ConfigError, match="mean-embedding-features must be even"):
        RunConfig.from_mapping({"mean-embedding-features": 3})
    with pytest.raises(ConfigError, match="mean-embedding-noise must be > 0"):
        RunConfig.from_mapping({"mean-embedding-noise": 0})


def tiny_site(tmp_path, **overrides):
    run = {"image-size": 16, "base-channels": 8, "latent-dim": 8, "local-steps": 3,
           "batch-size": 8, "num-rounds": 2, "target-epsilon": 8.0, "max-epsilon": 8.0,
           "mean-embedding": 5.0, "mean-embedding-features": 64, "out-dir": str(tmp_path),
           **overrides}
    config, site = site_config(run, {"partition-id": 0, "num-partitions": 1})
    images, labels = blobs(40)
    data = SiteData(images, labels, 2, ["a", "b"], "test")
    torch.manual_seed(0)
    return config, site, data, pair_state(*build_models(config))


def test_site_releases_once_records_it_first_and_reuses_it(tmp_path):
    config, site, data, _ = tiny_site(tmp_path)
    ledger = PrivacyLedger()
    first = site_embedding(config, data, ledger, ledger_path(site), server_round=1)
    assert [(e.mechanism, e.noise_multiplier, e.sample_rate, e.steps) for e in ledger.entries] \
        == [(MEAN_EMBEDDING, 5.0, 1.0, 1)]
    assert PrivacyLedger.load(ledger_path(site)).entries == ledger.entries  # saved at once
    again = site_embedding(config, data, ledger, ledger_path(site), server_round=2)
    assert len(ledger.entries) == 1  # read back: no second release
    assert torch.equal(again.means, first.means)
    # other settings: another release, recorded too
    other = config.replace(mean_embedding_noise=8.0)
    site_embedding(other, data, ledger, ledger_path(site), server_round=2)
    assert [e.noise_multiplier for e in ledger.entries] == [5.0, 8.0]
    assert embedding_path(site.ledger_dir, config) != embedding_path(site.ledger_dir, other)


def test_an_unreadable_release_is_an_error_naming_the_file(tmp_path):
    config, site, data, _ = tiny_site(tmp_path)
    path = embedding_path(site.ledger_dir, config)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="mean_embedding_.*unreadable"):
        site_embedding(config, data, PrivacyLedger(), ledger_path(site), server_round=1)


def test_rounds_with_the_release_spend_the_target_and_the_ledger_holds_both(tmp_path):
    config, site, data, weights = tiny_site(tmp_path)
    first = train_round(weights, 1, config, site, data)
    second = train_round(first.weights, 2, config, site, data, first.ledger)
    mechanisms = [e.mechanism for e in second.ledger.entries]
    assert mechanisms == [MEAN_EMBEDDING, DP_SGD, DP_SGD]
    assert second.ledger.rounds == [1, 2] and second.ledger.total_steps == 6
    assert second.metrics["epsilon"] == second.ledger.epsilon(config.delta)
    assert second.metrics["epsilon"] == pytest.approx(8.0, rel=0.01)  # the plan included it
    assert second.metrics["epsilon"] <= 8.0
    without = derive_noise_multiplier(config.replace(mean_embedding=0.0), len(data))
    assert second.metrics["noise-multiplier"] > without  # the rounds pay for the release
    report = site_accounting("site-0", second.ledger, config.delta, "prv").as_dict(1.0)
    assert report["rounds_trained"] == 2 and report["steps"] == 6
    assert report["releases"] == [{"mechanism": MEAN_EMBEDDING, "round": 1,
                                   "noise_multiplier": 5.0}]
    assert report["agrees"]  # PLD composes the release too


def test_a_release_that_alone_spends_the_budget_is_refused():
    config = RunConfig(mean_embedding=1.0, mean_embedding_noise=0.1, target_epsilon=1.0,
                       num_rounds=2)
    with pytest.raises(ValueError, match="raise mean-embedding-noise"):
        derive_noise_multiplier(config, 1000)


def test_release_plan_matches_composition():
    config = RunConfig(mean_embedding=1.0, num_rounds=4, local_steps=10, accountant="rdp")
    sigma = derive_noise_multiplier(config, 500)
    history = ((sigma, sample_rate_for(500, config.batch_size), 40), (5.0, 1.0, 1))
    spent = composed_epsilon(history, config.delta, "rdp")
    assert spent == pytest.approx(config.target_epsilon, rel=0.01)
    assert spent <= config.target_epsilon


def test_ledger_mechanism_round_trips_and_old_ledgers_read_as_dp_sgd(tmp_path):
    ledger = PrivacyLedger([LedgerEntry(1, 5.0, 1.0, 1, MEAN_EMBEDDING),
                            LedgerEntry(1, 1.0, 0.1, 10)])
    assert PrivacyLedger.from_config_record(ledger.to_config_record()).entries == ledger.entries
    path = tmp_path / LEDGER_FILE
    ledger.save(path)
    assert PrivacyLedger.load(path).entries == ledger.entries
    path.write_text(json.dumps({"version": 1, "entries": [
        {"round": 1, "noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 10}]}))
    assert PrivacyLedger.load(path).entries[0].mechanism == DP_SGD
    path.write_text(json.dumps({"version": 1, "entries": [
        {"round": 1, "noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 10,
         "mechanism": "laplace"}]}))
    with pytest.raises(ValueError, match="corrupt.*laplace"):
        PrivacyLedger.load(path)


def test_generator_steps_follow_the_embedding(tmp_path):
    # little noise: 40 images are far too few for a useful release at noise 5
    config, _, data, _ = tiny_site(tmp_path, **{"mean-embedding": 20.0,
                                                "mean-embedding-noise": 0.2,
                                                "learning-rate-generator": 2e-3})
    with pytest.raises(ValueError, match="pass the site's released mean embedding"):
        LocalTrainer(*build_models(config), data, config, 1.0, torch.device("cpu"), seed=0)
    release = make_release(config, data)

    def distance_after_training(setting: RunConfig) -> float:
        torch.manual_seed(0)
        generator, discriminator = build_models(setting)
        trainer = LocalTrainer(generator, discriminator, data, setting, 1.0,
                               torch.device("cpu"), seed=0,
                               embedding=release if setting.mean_embedding > 0 else None)
        for _ in range(30):
            trainer.step()
        # batch statistics: 30 steps (one BatchNorm update each) leave the running averages
        # behind the weights, and it is the weights the term trains
        generator.train()
        labels = torch.from_numpy(np.tile([0, 1], 64))
        with torch.no_grad():
            return release.loss(generator(torch.randn(128, 8), labels), labels).item()

    with_term = distance_after_training(config)
    without = distance_after_training(config.replace(mean_embedding=0.0))
    assert with_term < 0.8 * without


def test_a_class_too_small_for_the_noise_is_not_matched():
    images, labels = blobs(400)
    labels[:] = 0
    labels[:12] = 1  # 12 images of class 1: its mean's noise (norm ~ 2 sqrt(2 F) / 12) swamps it
    release = private_mean_embedding(images, labels, 2, features(), 2.0)
    assert release.weights[0] > 0.9 and release.weights[1] == 0
    fake = torch.from_numpy(images[:64])
    only_small = torch.ones(64, dtype=torch.long)
    assert release.loss(fake, only_small).item() == 0.0  # nothing pulls towards its noise
    assert release.loss(fake, torch.zeros(64, dtype=torch.long)).item() > 0
