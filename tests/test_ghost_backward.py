"""Ghost clipping's first pass without weight gradients: the same clipped gradients as
Opacus' own two passes, and no stale norm when a layer's hook did not run."""

import numpy as np
import pytest
import torch

from client.dp_training import make_private_discriminator
from client.ghost_backward import first_pass_targets, ghost_backward
from medgan_models.config import RunConfig
from medgan_models.losses import make_loss
from medgan_models.networks import build_models


def private(frozen_blocks: int = 0):
    cfg = RunConfig(image_size=16, base_channels=8, latent_dim=8, batch_size=8, num_rounds=1)
    torch.manual_seed(0)
    _, discriminator = build_models(cfg)
    discriminator.freeze_features(frozen_blocks)
    rng = np.random.default_rng(0)
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(rng.uniform(-1, 1, (32, 1, 16, 16)).astype(np.float32)),
        torch.from_numpy(rng.integers(0, 2, 32)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=8)
    optimizer = torch.optim.SGD([p for p in discriminator.parameters() if p.requires_grad],
                                lr=0.0)
    private_d, optimizer, criterion, _, _ = make_private_discriminator(
        discriminator, optimizer, loader, make_loss("minimax"), cfg, noise_multiplier=0.0)
    return discriminator, private_d, optimizer, criterion


def clipped_gradients(backward, frozen_blocks=0):
    discriminator, private_d, optimizer, criterion = private(frozen_blocks)
    rng = torch.Generator().manual_seed(1)
    images = (torch.rand(14, 1, 16, 16, generator=rng) * 2 - 1).requires_grad_(True)
    labels = torch.randint(0, 2, (14,), generator=rng)
    optimizer.zero_grad(set_to_none=True)
    scores, logits = private_d(images, labels, with_logits=True)
    loss = criterion(scores, 6, logits, labels[:6])  # 6 real, 8 fake
    backward(loss, images)
    grads = {name: p.grad.clone() for name, p in discriminator.named_parameters()
             if p.requires_grad}
    return grads, images, private_d


@pytest.mark.parametrize("frozen_blocks", [0, 1])
def test_the_same_clipped_gradients_as_opacus_own_passes(frozen_blocks):
    ours, images, _ = clipped_gradients(ghost_backward, frozen_blocks)
    theirs, _, _ = clipped_gradients(lambda loss, _: loss.backward(), frozen_blocks)
    assert ours.keys() == theirs.keys() and len(ours) > 0
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-8)
    assert images.grad is None  # the first pass's input gradient is not accumulated


def test_the_first_pass_targets_no_convolution():
    _, private_d, _, _ = private()
    targets = {id(p) for p in first_pass_targets(private_d)}
    convolutions = [m for m in private_d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and not any(id(p) in targets for m in convolutions
                                    for p in m.parameters())
    assert targets  # the heads, the projection and the GroupNorms


def test_a_layer_without_a_norm_is_an_error_not_a_stale_norm(monkeypatch):
    # towards the images alone, the class projection (on no path to them) gets no norm
    monkeypatch.setattr("client.ghost_backward.first_pass_targets", lambda module: [])
    with pytest.raises(RuntimeError, match="no per-sample gradient norm"):
        clipped_gradients(ghost_backward)


def test_the_images_must_require_grad():
    with pytest.raises(ValueError, match="require grad"):
        clipped_gradients(lambda loss, images: ghost_backward(loss, images.detach()))
