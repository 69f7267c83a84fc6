"""DiffAugment: the same differentiable transforms on every image the discriminator sees."""

import numpy as np
import pytest
import torch

import client.dp_training as dp_training
from client.data import SiteData
from medgan_models.config import ConfigError, RunConfig
from medgan_models.diff_augment import cutout, diff_augment, translation
from medgan_models.networks import build_models


def test_translation_shifts_each_image_and_fills_with_background():
    torch.manual_seed(0)
    x = torch.ones(64, 1, 16, 16)
    out = translation(x, ratio=0.125)
    vacated = (out == -1).flatten(1).sum(1)
    # a shift of (dx, dy) vacates 16(|dx| + |dy|) - |dx||dy| pixels, at most 2 px each way
    assert vacated.max() <= 2 * 16 * 2 and vacated.min() == 0 < vacated.max()
    assert set(out.unique().tolist()) <= {-1.0, 1.0}
    # each output is its own input shifted by one (dx, dy) within 2 px, the rest background
    images = torch.rand(64, 1, 16, 16)
    moved = translation(images)
    padded = torch.nn.functional.pad(images, [2, 2, 2, 2], value=-1.0)
    shifts = [(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)]
    for original, out in zip(padded, moved, strict=True):
        matches = [(dx, dy) for dx, dy in shifts
                   if torch.equal(out, original[:, 2 + dx:18 + dx, 2 + dy:18 + dy])]
        assert len(matches) == 1


def test_cutout_blanks_one_square_per_image():
    torch.manual_seed(1)
    out = cutout(torch.ones(200, 1, 16, 16), ratio=0.5, fill=0.0)
    blank = (out == 0).flatten(1).sum(1)
    assert blank.max() == 64 and blank.min() > 0  # 8 x 8, cut at the border at times
    assert ((out == 0) | (out == 1)).all()


def test_gradients_flow_to_the_generator():
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    diff_augment(x, "translation,cutout").sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_empty_policy_and_empty_batch_pass_through():
    x = torch.randn(3, 1, 8, 8)
    assert diff_augment(x, "") is x
    assert diff_augment(torch.empty(0, 1, 8, 8), "translation").shape == (0, 1, 8, 8)


def test_an_unknown_policy_is_named():
    with pytest.raises(ValueError, match="'colour'"):
        diff_augment(torch.zeros(1, 1, 8, 8), "translation,colour")
    with pytest.raises(ConfigError, match="diff-augment"):
        RunConfig().replace(diff_augment="colour")
    assert RunConfig().replace(diff_augment="cutout,translation").diff_augment


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_every_discriminator_input_goes_through_the_policy(monkeypatch, mode):
    """Every discriminator input (the DP step's real + fake batch, the generator step's fakes)
    goes through the policy; the steps are all counted, so the accounting is unchanged."""
    seen = []

    def spy(images, policy):
        seen.append((images.shape[0], images.requires_grad, policy))
        return diff_augment(images, policy)

    monkeypatch.setattr(dp_training, "diff_augment", spy)
    cfg = RunConfig(image_size=16, base_channels=8, latent_dim=8, local_steps=3, batch_size=8,
                    num_rounds=1, mean_embedding=0.0, num_sites=0, grad_sample_mode=mode,
                    diff_augment="translation,cutout")
    rng = np.random.default_rng(0)
    site = SiteData(rng.uniform(-1, 1, (32, 1, 16, 16)).astype(np.float32),
                    rng.integers(0, 2, 32).astype(np.int64), 2, ["0", "1"], "test")
    torch.manual_seed(0)
    generator, discriminator = build_models(cfg)
    result = dp_training.train_locally(generator, discriminator, site, cfg, 1.0,
                                       torch.device("cpu"), 0)
    assert result.steps == 3 and np.isfinite(result.d_loss) and np.isfinite(result.g_loss)
    assert [policy for *_, policy in seen] == ["translation,cutout"] * 6
    # D steps see real + 8 fakes (no gradient to the generator), G steps 8 fakes with one
    d_inputs, g_inputs = seen[0::2], seen[1::2]
    assert all(n >= 8 and not grad for n, grad, _ in d_inputs)
    assert all(n == 8 and grad for n, grad, _ in g_inputs)
