"""discriminator-subspace: the noised DP gradient projected onto directions found from fakes."""

import numpy as np
import pytest
import torch

from client.data import SiteData
from client.dp_training import LocalTrainer
from client.gradient_subspace import probe_weights, project_gradients, public_basis
from medgan_models.config import ConfigError, RunConfig
from medgan_models.networks import build_models


def config(**kw):
    base = dict(image_size=16, base_channels=8, latent_dim=8, local_steps=1, batch_size=16,
                num_rounds=1, mean_embedding=0.0)
    return RunConfig(**{**base, **kw})


def site_data(n=64, size=16):
    rng = np.random.default_rng(0)
    return SiteData(rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32),
                    rng.integers(0, 2, n).astype(np.int64), 2, ["0", "1"], "test")


def test_projection_keeps_the_span_and_drops_what_is_orthogonal():
    p = torch.nn.Parameter(torch.zeros(4, 5))
    basis = torch.linalg.qr(torch.randn(20, 3))[0]
    inside = (basis @ torch.randn(3)).reshape(4, 5)
    p.grad = inside.clone()
    project_gradients([p], [basis])
    assert torch.allclose(p.grad, inside, atol=1e-5)
    outside = torch.randn(20)
    outside -= basis @ (basis.T @ outside)
    p.grad = outside.reshape(4, 5).clone()
    project_gradients([p], [basis])
    assert p.grad.abs().max() < 1e-5
    p.grad = inside.clone()
    project_gradients([p], [None])  # no basis: left as it is
    assert torch.equal(p.grad, inside)


def test_probes_start_with_each_class_mean_of_each_output():
    labels = torch.tensor([0, 1, 1, 0, 1])
    weights = probe_weights(labels, 5, 2, 6, torch.Generator().manual_seed(0))
    assert weights.shape == (6, 10)
    assert torch.allclose(weights[0], torch.tensor([.5, 0, 0, .5, 0] + [0] * 5))
    assert torch.allclose(weights[1], torch.tensor([0, 1 / 3, 1 / 3, 0, 1 / 3] + [0] * 5))
    assert torch.allclose(weights[2], torch.tensor([0] * 5 + [.5, 0, 0, .5, 0]))
    assert weights[4:].abs().sum() > 0  # the rest: random mixtures


def test_basis_spans_each_class_mean_score_gradient_and_is_orthonormal():
    cfg = config()
    torch.manual_seed(0)
    _, discriminator = build_models(cfg)
    params = [p for p in discriminator.parameters() if p.requires_grad]
    fakes, labels = torch.randn(12, 1, 16, 16), torch.tensor([0, 1] * 6)
    basis = public_basis(discriminator, params, fakes, labels, 6, with_classifier=True,
                         generator=torch.Generator().manual_seed(0))
    assert len(basis) == len(params)
    scores = discriminator(fakes, labels)
    mean_class_1 = torch.autograd.grad(scores[labels == 1].mean(), params, allow_unused=True)
    checked = 0
    for p, q, g in zip(params, basis, mean_class_1, strict=True):
        if q is None or g is None or g.abs().max() == 0:
            continue
        assert q.shape[0] == p.numel() and q.shape[1] <= 6
        assert torch.allclose(q.T @ q, torch.eye(q.shape[1]), atol=1e-4)
        flat = g.reshape(-1)
        assert torch.allclose(q @ (q.T @ flat), flat, atol=1e-5 * flat.norm() + 1e-7)
        checked += 1
    assert checked >= 3
    # a function of the fakes and the probes' seed alone: the same fakes, the same span
    again = public_basis(discriminator, params, fakes, labels, 6, with_classifier=True,
                         generator=torch.Generator().manual_seed(0))
    for q, r in zip(basis, again, strict=True):
        if q is not None:
            assert torch.allclose(q @ q.T, r @ r.T, atol=1e-4)


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_the_dp_step_keeps_its_accounting_and_loses_most_of_its_noise(mode):
    """Under heavy noise, the projected gradient of the largest weight is far smaller than the
    plain DP gradient (its noise is kept in <= q of its coordinates), and the accountant still
    counts the step at the same noise multiplier."""
    norms = {}
    for q in (0, 4):
        # two D steps per G step: the first step leaves its gradient in place (no G step after)
        cfg = config(discriminator_subspace=q, grad_sample_mode=mode, discriminator_steps=2)
        torch.manual_seed(1)
        generator, discriminator = build_models(cfg)
        trainer = LocalTrainer(generator, discriminator, site_data(), cfg, 50.0,
                               torch.device("cpu"), seed=3)
        trainer.step()
        weight = max(discriminator.parameters(), key=lambda p: p.numel())
        norms[q] = float(weight.grad.norm())
        assert trainer.result(1.0).steps == 1
        assert trainer.engine.accountant.history[-1][0] == 50.0
    # noise 50 over ~4,600 coordinates at batch 16: norm ~210; 4 of them: ~6
    assert norms[0] > 100 and norms[4] < norms[0] / 10


def test_a_negative_subspace_is_a_config_error():
    with pytest.raises(ConfigError, match="discriminator-subspace"):
        RunConfig.from_mapping({"discriminator-subspace": -1})
    assert RunConfig().discriminator_subspace == 0
