"""Train-synthetic-test-real utility: a small CNN classifier and its accuracy."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SmallClassifier(nn.Module):
    """3 conv blocks (GroupNorm + ReLU, two max-pools) -> 4x4 adaptive pool -> linear.

    Widths are ``width``, ``2 * width``, ``4 * width``; any input of at least 16 px works.
    """

    def __init__(self, channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout),
                    nn.ReLU()]

        self.features = nn.Sequential(
            *block(channels, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(4 * width * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int,
                     steps: int = 300, batch_size: int = 64, seed: int = 0,
                     device: torch.device | str = "cpu") -> nn.Module:
    """Fit a :class:`SmallClassifier` on (N, C, H, W) images in [-1, 1]; deterministic in seed.

    Uses Adam (lr 1e-3) on minibatches drawn with replacement; the global torch RNG is left
    untouched. Returns the model in eval mode.
    """
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if x.ndim != 4 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"need (N, C, H, W) images and (N,) labels, got {x.shape}, {y.shape}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallClassifier(x.shape[1], num_classes).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = np.random.default_rng(seed)
    x, y = x.to(device), y.to(device)  # small images: the whole set moves once
    model.train()
    for _ in range(steps):
        index = torch.as_tensor(order.integers(0, x.shape[0], size=min(batch_size, x.shape[0])),
                                device=x.device)
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 256, device: torch.device | str | None = None) -> float:
    """Fraction of ``images`` whose argmax prediction equals ``labels``."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError("need as many labels as images, and at least one image")
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    model.eval()
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start:start + batch_size].to(device))
        correct += int((logits.argmax(dim=1).cpu() == y[start:start + batch_size]).sum())
    return correct / x.shape[0]
