"""Inception detector loading and use, with a stand-in TorchScript file (no weights needed)."""

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from medgan_models.metrics import (
    INCEPTION_PT_URL,
    inception_features,
    inception_probabilities,
    inception_score,
    load_inception,
)


class StandInDetector(nn.Module):
    """Same call signature as inception-2015-12-05.pt; features expose the channel means."""

    def __init__(self) -> None:
        super().__init__()
        self.classes = nn.Linear(3, 1008)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor:
        if x.dtype != torch.uint8 or x.shape[1] != 3:
            raise RuntimeError("expected uint8 NCHW with 3 channels")
        means = x.to(torch.float32).mean(dim=(2, 3))
        if return_features:
            return torch.cat([means, torch.zeros(x.shape[0], 2045)], dim=1)
        return torch.softmax(self.classes(means / 255.0), dim=1)


@pytest.fixture
def detector_path(tmp_path):
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(StandInDetector()).save(str(path))
    return path


def test_features_and_probabilities_shapes(detector_path):
    detector = load_inception(detector_path, "cpu")
    assert not detector.training
    images = np.random.default_rng(0).uniform(-1, 1, (10, 1, 16, 16))
    features = inception_features(detector, images, batch_size=4)
    assert features.shape == (10, 2048) and features.dtype == np.float64
    probs = inception_probabilities(detector, torch.as_tensor(images), batch_size=3)
    assert probs.shape == (10, 1008)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_images_become_uint8_with_gray_repeated_in_order(detector_path):
    detector = load_inception(detector_path, "cpu")
    values = np.array([-1.0, 0.0, 1.0, 0.5, -0.5])
    images = np.broadcast_to(values[:, None, None, None], (5, 1, 8, 8))
    features = inception_features(detector, images, batch_size=2)
    expected = np.round((values + 1) * 127.5)
    np.testing.assert_allclose(features[:, :3], np.repeat(expected[:, None], 3, axis=1))
    rgb = np.zeros((1, 3, 8, 8))
    rgb[:, 0] = 1.0
    np.testing.assert_allclose(inception_features(detector, rgb)[0, :3], [255, 127.5 + 0.5, 128])


def test_wrong_channel_count_is_rejected(detector_path):
    with pytest.raises(ValueError, match="channels|shape"):
        inception_features(load_inception(detector_path), np.zeros((2, 2, 8, 8)))


def test_missing_file_names_path_and_url_and_never_downloads(tmp_path):
    missing = tmp_path / "nowhere" / "inception-2015-12-05.pt"
    with pytest.raises(FileNotFoundError) as info:
        load_inception(missing, "cpu")
    assert str(missing) in str(info.value) and INCEPTION_PT_URL in str(info.value)
    assert not missing.exists()


def test_inception_score_bounds():
    uniform = np.full((100, 10), 0.1)
    assert inception_score(uniform, splits=10) == pytest.approx((1.0, 0.0), abs=1e-6)
    confident = np.eye(10)[np.arange(100) % 10]  # every split holds each class once
    mean, std = inception_score(confident, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    half = np.eye(10)[np.arange(100) % 5]  # only 5 classes used
    assert inception_score(half, splits=10)[0] == pytest.approx(5.0, rel=1e-6)
