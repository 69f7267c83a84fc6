"""Train-synthetic-test-real utility classifier."""

import numpy as np
import pytest
import torch
from torch import nn

from medgan_models.metrics import SmallClassifier, accuracy, train_classifier


def discs_and_squares(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Label 0: a bright disc; label 1: a bright axis-aligned square (same area range)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.full((n, 1, size, size), -1.0)
    labels = rng.integers(0, 2, n)
    for i in range(n):
        half = rng.uniform(2.5, 4.5)
        cy, cx = rng.uniform(half + 0.5, size - half - 0.5, size=2)
        if labels[i] == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= (half * 1.13) ** 2
        else:
            mask = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
        images[i, 0][mask] = 1.0
    images += rng.normal(0, 0.05, images.shape)
    return np.clip(images, -1, 1), labels


def test_classifier_learns_discs_versus_squares():
    train_x, train_y = discs_and_squares(512, seed=0)
    test_x, test_y = discs_and_squares(256, seed=1)
    model = train_classifier(train_x, train_y, num_classes=2, steps=100, batch_size=32, seed=0)
    assert accuracy(model, test_x, test_y) > 0.9


def test_training_is_deterministic_in_the_seed_and_leaves_global_rng_alone():
    x, y = discs_and_squares(64, seed=2)
    state = torch.random.get_rng_state()
    a = train_classifier(x, y, num_classes=2, steps=3, batch_size=16, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())
    b = train_classifier(x, y, num_classes=2, steps=3, batch_size=16, seed=5)
    c = train_classifier(x, y, num_classes=2, steps=3, batch_size=16, seed=6)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.head.weight, c.head.weight)


@pytest.mark.parametrize("size", (16, 32, 64, 128))
@pytest.mark.parametrize("channels", (1, 3))
def test_classifier_handles_sizes_and_channels(size, channels):
    model = SmallClassifier(channels, num_classes=4)
    assert model(torch.zeros(2, channels, size, size)).shape == (2, 4)


class SignOfMean(nn.Module):
    """Class 1 when the image mean is positive, class 0 otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1)


def test_accuracy_on_a_hand_made_model():
    means = np.array([0.5, -0.5, 0.2, -0.3, 0.9, -0.1, 0.4, -0.8])
    images = np.broadcast_to(means[:, None, None, None], (8, 1, 4, 4))
    predicted = (means > 0).astype(int)
    labels = predicted.copy()
    labels[[1, 4, 6]] = 1 - labels[[1, 4, 6]]  # three wrong
    assert accuracy(SignOfMean(), images, labels, batch_size=3) == pytest.approx(5 / 8)
    assert accuracy(SignOfMean(), images, predicted) == 1.0


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError):
        train_classifier(np.zeros((4, 1, 16, 16)), np.array([0, 1, 2, 1]), num_classes=2)
