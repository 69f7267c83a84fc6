"""The local DP-GAN step: both models learn, Poisson edge cases, both losses, every Opacus
gradient mode clips each sample's gradient on its own."""

import copy

import numpy as np
import pytest
import torch

from client.data import SiteData
from client.dp_training import (
    GanCriterion,
    LocalTrainer,
    discriminator_step,
    make_private_discriminator,
    train_locally,
)
from client.noise_schedule import derive_noise_multiplier, sample_rate_for
from client.privacy_ledger import LedgerEntry, PrivacyLedger
from medgan_models.config import RunConfig
from medgan_models.losses import make_loss, mode_seeking_penalty
from medgan_models.networks import build_models


def data(n=32, size=16, classes=2):
    rng = np.random.default_rng(1)
    return SiteData(rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32),
                    rng.integers(0, classes, n).astype(np.int64), classes,
                    [str(i) for i in range(classes)], "test")


def config(**kw):
    # the DP step itself: the mean-embedding term (its own release) is test_mean_embedding's
    base = dict(image_size=16, base_channels=8, latent_dim=8, local_steps=4, batch_size=8,
                num_rounds=2, mean_embedding=0.0)
    return RunConfig(**{**base, **kw})


@pytest.mark.parametrize("loss", ["minimax", "hinge", "wasserstein"])
@pytest.mark.parametrize("augment,mode", [(False, "hooks"), (True, "functorch"), (False, "ghost")])
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


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_empty_poisson_batches_do_not_break_a_step(mode):
    cfg = config(batch_size=1, local_steps=12, num_classes=0,  # q = 1/4: many empty batches
                 grad_sample_mode=mode)
    generator, discriminator = build_models(cfg)
    result = train_locally(generator, discriminator, data(n=4, classes=1), cfg, 1.0,
                           torch.device("cpu"), 3)
    assert result.steps == 12 and np.isfinite(result.d_loss)


@pytest.mark.parametrize("d_steps,g_steps,mode_seeking,expected_g,expected_forwards",
                         [(3, 1, 0.0, 2, 6), (1, 2, 0.0, 12, 12), (2, 3, 0.0, 9, 12),
                          (1, 1, 1.0, 6, 12)])
def test_generator_updates_follow_discriminator_and_generator_steps(
        d_steps, g_steps, mode_seeking, expected_g, expected_forwards):
    """The first generator step after a discriminator step reuses its fakes (one generator
    forward pass less), except with mode seeking, whose pairs share labels."""
    cfg = config(local_steps=6, discriminator_steps=d_steps, generator_steps=g_steps,
                 mode_seeking=mode_seeking)
    generator, discriminator = build_models(cfg)
    trainer = LocalTrainer(generator, discriminator, data(), cfg, 1.0, torch.device("cpu"), 0)
    forwards = []
    generator.register_forward_hook(lambda module, args, out: forwards.append(out))
    for _ in range(6):
        trainer.step()
    assert len(trainer.g_losses) == expected_g
    assert len(forwards) == expected_forwards
    assert trainer.result(1.0).steps == 6  # privacy counts discriminator steps only


def test_the_generator_step_reuses_the_discriminator_steps_fakes():
    cfg = config(local_steps=1)
    generator, discriminator = build_models(cfg)
    trainer = LocalTrainer(generator, discriminator, data(), cfg, 1.0, torch.device("cpu"), 0)
    seen = {}
    discriminator.register_forward_hook(
        lambda module, args, out: seen.setdefault("d_inputs", []).append(args[0].detach()))
    trainer.step()
    d_step, g_step = seen["d_inputs"]
    assert torch.equal(d_step[-trainer.fake_batch:], g_step)  # the D step's fake half


def test_derived_noise_spends_the_target_over_all_rounds():
    cfg = config(target_epsilon=3.0, local_steps=20, num_rounds=5, batch_size=16)
    sigma = derive_noise_multiplier(cfg, 200)
    q = sample_rate_for(200, 16)
    assert q == pytest.approx(1 / 13)
    ledger = PrivacyLedger([LedgerEntry(r, sigma, q, 20) for r in range(1, 6)])
    assert ledger.epsilon(cfg.delta) == pytest.approx(3.0, rel=0.01)
    assert ledger.epsilon(cfg.delta) <= 3.0
    assert derive_noise_multiplier(cfg.replace(noise_multiplier=2.5), 200) == 2.5


def reference_clipped_mean(discriminator, criterion, images, labels, n_real, max_grad_norm,
                           expected_batch_size):
    """DP-SGD's clipped gradient by hand: each sample's gradient alone, clipped to
    max_grad_norm, summed, divided by the expected real batch size."""
    criterion.reduction = "none"
    total = [torch.zeros_like(p) for p in discriminator.parameters()]
    for i in range(len(images)):
        scores, logits = discriminator(images[i:i + 1], labels[i:i + 1], with_logits=True)
        real = i < n_real
        per_sample = criterion(scores, int(real), logits, labels[i:i + 1][:int(real)])
        grads = torch.autograd.grad(per_sample.sum(), list(discriminator.parameters()))
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        factor = min(1.0, max_grad_norm / (norm.item() + 1e-6))
        for t, g in zip(total, grads, strict=True):
            t += factor * g
    return [t / expected_batch_size for t in total]


@pytest.mark.parametrize("loss,auxiliary", [("minimax", 0.0), ("wasserstein", 0.0),
                                            ("minimax", 1.0), ("hinge", 1.0)])
@pytest.mark.parametrize("max_grad_norm", [1e-3, 1.0])
def test_every_mode_clips_each_sample_and_matches_the_hand_computed_gradient(loss, auxiliary,
                                                                            max_grad_norm):
    """With noise 0 the DP gradient is exactly the sum of per-sample clipped gradients over the
    expected batch size: the same for hooks, functorch and ghost clipping, with or without the
    auxiliary classifier's loss on the real images."""
    rng = torch.Generator().manual_seed(5)
    n, n_real, fake_batch = 32, 6, 8  # a Poisson batch of 6 real images, 8 fake (q = 1/4)
    site = data(n=n)
    real = torch.from_numpy(site.images[:n_real])
    real_labels = torch.from_numpy(site.labels[:n_real])
    fake = torch.rand(fake_batch, 1, 16, 16, generator=rng) * 2 - 1
    fake_labels = torch.randint(0, 2, (fake_batch,), generator=rng)
    for mode in ("hooks", "functorch", "ghost"):
        cfg = config(loss=loss, grad_sample_mode=mode, max_grad_norm=max_grad_norm,
                     auxiliary_classifier=auxiliary)
        torch.manual_seed(0)
        _, discriminator = build_models(cfg)
        plain = copy.deepcopy(discriminator)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(site.images),
                                           torch.from_numpy(site.labels)), batch_size=8)
        d_optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.0)
        private_d, d_optimizer, criterion, _, _ = make_private_discriminator(
            discriminator, d_optimizer, loader, make_loss(loss), cfg, noise_multiplier=0.0)
        assert (discriminator.classifier is not None) == (auxiliary > 0)
        discriminator_step(private_d, d_optimizer, criterion, real, real_labels, fake,
                           fake_labels, cfg)
        got = [p.grad.detach().clone() for p in discriminator.parameters()]
        expected = reference_clipped_mean(
            plain, GanCriterion(make_loss(loss), auxiliary), torch.cat([real, fake]),
            torch.cat([real_labels, fake_labels]), n_real, max_grad_norm, expected_batch_size=8)
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)
        norm = torch.sqrt(sum(g.pow(2).sum() for g in got)).item()
        assert norm <= (n_real + fake_batch) * max_grad_norm / 8 * (1 + 1e-5)
    unclipped = reference_clipped_mean(
        plain, GanCriterion(make_loss(loss), auxiliary), torch.cat([real, fake]),
        torch.cat([real_labels, fake_labels]), n_real, 1e9, expected_batch_size=8)
    unclipped_norm = torch.sqrt(sum(g.pow(2).sum() for g in unclipped)).item()
    if max_grad_norm == 1e-3:  # clipping did bite (the comparison above is not vacuous)
        assert norm < 0.1 * unclipped_norm


def test_mode_seeking_penalty_pushes_paired_images_apart():
    codes = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    images = torch.zeros(8, 1, 4, 4)
    images[4:] += 0.01  # the pairs are nearly the same image: a collapsed generator
    images.requires_grad_(True)
    penalty = mode_seeking_penalty(images, codes)
    far = mode_seeking_penalty(torch.randn(8, 1, 4, 4), codes)
    assert penalty > 10 * far
    penalty.backward()
    moved = (images - 0.1 * images.grad).detach()
    gap = lambda x: (x[:4] - x[4:]).abs().mean()  # noqa: E731
    assert gap(moved) > gap(images.detach())


def test_training_with_mode_seeking_counts_the_same_private_steps():
    cfg = config(mode_seeking=1.0, local_steps=5)
    generator, discriminator = build_models(cfg)
    before = copy.deepcopy(generator.state_dict())
    result = train_locally(generator, discriminator, data(), cfg, 1.0, torch.device("cpu"), 0)
    assert result.steps == 5 and np.isfinite(result.g_loss)
    assert any(not torch.equal(before[k], v) for k, v in generator.state_dict().items())


def test_discriminator_beta1_reaches_the_private_optimizer_only():
    cfg = config(discriminator_beta1=0.9)
    generator, discriminator = build_models(cfg)
    trainer = LocalTrainer(generator, discriminator, data(), cfg, 1.0, torch.device("cpu"), 0)
    assert trainer.d_optimizer.original_optimizer.param_groups[0]["betas"] == (0.9, 0.999)
    assert trainer.g_optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    with pytest.raises(ValueError, match="discriminator-beta1"):
        RunConfig.from_mapping({"discriminator-beta1": 1.0})


def test_auxiliary_classifier_loss_counts_only_real_images_and_teaches_the_generator():
    """The classifier's cross-entropy is added to the real images' terms only; the generator
    step adds it for its own labels, so the generator learns from the class head."""
    criterion = GanCriterion(make_loss("minimax"), classifier_weight=2.0)
    criterion.reduction = "none"
    scores = torch.zeros(5)
    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0], [4.0, -4.0], [0.0, 0.0], [9.0, -9.0]])
    labels = torch.tensor([1, 1, 0])  # the 3 real images: wrong, right, right
    plain = GanCriterion(make_loss("minimax"))
    plain.reduction = "none"
    gap = criterion(scores, 3, logits, labels) - plain(scores, 3)
    assert gap[0] > 10 and gap[1] < 0.01 and gap[2] < 0.01
    assert torch.equal(gap[3:], torch.zeros(2))  # fake images: the GAN loss alone

    cfg = config(auxiliary_classifier=1.0, local_steps=3)
    generator, discriminator = build_models(cfg)
    before = copy.deepcopy(discriminator.classifier.state_dict())
    result = train_locally(generator, discriminator, data(), cfg, 1.0, torch.device("cpu"), 0)
    assert result.steps == 3 and np.isfinite(result.g_loss)
    assert not torch.equal(before["weight"], discriminator.classifier.weight)
    _, unconditional = build_models(cfg.replace(num_classes=0))
    assert unconditional.classifier is None  # no classes, no class head
    with pytest.raises(ValueError, match="auxiliary-classifier"):
        RunConfig.from_mapping({"auxiliary-classifier": -1.0})


def test_frozen_discriminator_blocks_stay_at_their_weights_and_the_rest_learns():
    cfg = config(discriminator_frozen_blocks=1, local_steps=3)  # 16 px: 2 conv blocks
    generator, discriminator = build_models(cfg)
    before = copy.deepcopy(discriminator.state_dict())
    result = train_locally(generator, discriminator, data(), cfg, 1.0, torch.device("cpu"), 0)
    assert result.steps == 3
    after = discriminator.state_dict()
    assert torch.equal(before["features.0.weight"], after["features.0.weight"])
    assert torch.equal(before["features.0.bias"], after["features.0.bias"])
    assert not torch.equal(before["features.2.weight"], after["features.2.weight"])
    assert not torch.equal(before["head.weight"], after["head.weight"])
    with pytest.raises(ValueError, match="discriminator-frozen-blocks"):
        build_models(cfg)[1].freeze_features(3)
    with pytest.raises(ValueError, match=r"discriminator-frozen-blocks must be in \[0, 3\]"):
        RunConfig.from_mapping({"discriminator-frozen-blocks": 4, "image-size": 32})
