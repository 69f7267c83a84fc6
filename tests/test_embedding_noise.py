"""benchmarks/embedding_noise.py: how much of the mean embedding's noise a generator drew."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from benchmarks import embedding_noise  # noqa: E402
from medgan_models.mean_embedding import RandomFourierFeatures  # noqa: E402


def discs(n: int, seed: int) -> torch.Tensor:
    """(n, 1, 16, 16) bright discs of varied radius on a dark background, with grain."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(16.0) - 7.5, torch.arange(16.0) - 7.5, indexing="ij")
    radius = 4 + 3 * torch.rand(n, 1, 1, generator=g)
    disc = ((yy**2 + xx**2).sqrt() < radius).float()
    return (disc * 1.4 - 0.7 + 0.1 * torch.randn(n, 16, 16, generator=g)).clamp(-1, 1)[:, None]


def test_images_fitted_to_a_noisy_release_draw_its_noise_and_fresh_ones_do_not():
    features = RandomFourierFeatures(256, 256, 8.0, 0)
    real = discs(400, 1)
    with torch.no_grad():
        clean = features(real).mean(0)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))
    released = clean + 0.2 * noise / noise.norm()
    fresh = embedding_noise.alignment(features, real, discs(400, 3), released)
    assert fresh["noise_norm"] == pytest.approx(0.2, rel=1e-4)
    assert abs(fresh["cosine"]) < 0.25
    # free pixels trained to match the release, as a generator is by the mean-embedding loss
    pixels = discs(64, 4).requires_grad_(True)
    optimiser = torch.optim.Adam([pixels], lr=0.02)
    for _ in range(150):
        loss = (features(pixels.clamp(-1, 1)).mean(0) - released).norm()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    fitted = embedding_noise.alignment(features, real, pixels.detach().clamp(-1, 1), released)
    assert fitted["fake_to_release"] < fresh["fake_to_release"]
    assert fitted["cosine"] > 0.5


def test_a_folder_without_checkpoints_is_a_clear_error(tmp_path, capsys):
    assert embedding_noise.main([str(tmp_path)]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
