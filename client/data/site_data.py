"""Container for one site's training data and the data-loading error type."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """Bad or missing input data; the message names the file/folder and the problem in one line."""


@dataclass
class SiteData:
    """Images and labels held by one federated site.

    ``images`` is float32 of shape (N, C, S, S) with values in [-1, 1];
    ``labels`` is int64 of shape (N,) with values in [0, num_classes).
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    class_names: list[str]
    source: str

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise DataError(f"{self.source}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        """Number of examples at this site."""
        return int(self.images.shape[0])

    def label_counts(self) -> dict[str, int]:
        """Map each class name to how many examples of it this site holds."""
        counts = np.bincount(self.labels.astype(np.int64), minlength=self.num_classes)
        names = list(self.class_names) or [str(i) for i in range(self.num_classes)]
        return {names[i]: int(counts[i]) for i in range(self.num_classes)}
