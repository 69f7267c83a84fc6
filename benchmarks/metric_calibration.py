"""What the site-side precision/recall/density/coverage figures mean: real images scored as if
they were generated ones.

    python benchmarks/metric_calibration.py [--sites 3] [--image-size 32] [--json OUT.json]

The quality benchmark's sites (default phantom data, a scanner per site, Dirichlet(1) labels)
are split as in a run (90 % training, 10 % held out); then each site's held-out images are the
reference, as in a run's evaluation, and the "generated" images are:

- real training images of the same site (what a perfect generator would reach),
- real training images of each OTHER site (a perfect generator of the wrong scanner),
- the same site's real images, slightly altered: blurred, shifted by one pixel, brightened,
  with more noise (how far from perfect a near miss lands).

Prints one table; ``--json`` writes the same rows. Takes well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parents[1]))

from client.data.sources import load_site_dataset  # noqa: E402
from client.holdout import split_holdout  # noqa: E402
from client.site_evaluation import PRDC_K  # noqa: E402
from medgan_models.metrics import prdc, random_features  # noqa: E402

SAMPLES = 300  # as many "generated" images as a run's evaluation draws (eval-samples)
KEYS = ("precision", "recall", "density", "coverage")


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (5 taps, edges replicated)."""
    taps = torch.arange(-2, 3, dtype=images.dtype)
    kernel = torch.exp(-taps**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    out = F.conv2d(F.pad(images, (2, 2, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 5))
    return F.conv2d(F.pad(out, (0, 0, 2, 2), mode="replicate"), kernel.view(1, 1, 5, 1))


def alterations(seed: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Near misses of a perfect generator, by name (images in [-1, 1], one channel)."""
    noise = torch.Generator().manual_seed(seed)
    return {
        "blurred, sigma 0.5 px": lambda x: gaussian_blur(x, 0.5),
        "blurred, sigma 0.8 px": lambda x: gaussian_blur(x, 0.8),
        "shifted 1 px": lambda x: torch.roll(x, 1, dims=-1),
        "brightened by 5 % of the range": lambda x: (x + 0.1).clamp(-1, 1),
        "extra noise, sd 10 % of the range": lambda x: (
            x + 0.2 * torch.randn(x.shape, generator=noise)).clamp(-1, 1),
    }


def calibrate(sites: int = 3, image_size: int = 32, samples_per_site: int = 2000,
              seed: int = 0, holdout_fraction: float = 0.1) -> list[dict[str, object]]:
    """One row per (site, "generated" set): the PRDC of that set against the site's held-out
    images, in the embedding the runs use."""
    split = [split_holdout(load_site_dataset("phantom", i, sites, image_size, 1, alpha=1.0,
                                             seed=seed, samples_per_site=samples_per_site),
                           holdout_fraction, seed) for i in range(sites)]
    rows: list[dict[str, object]] = []
    for site, (_, holdout) in enumerate(split):
        reference = random_features(holdout.images)
        candidates = {f"real, site {other}": split[other][0].images[:SAMPLES]
                      for other in range(sites)}
        own = torch.from_numpy(split[site][0].images[:SAMPLES])
        candidates.update({f"site {site}, {name}": alter(own).numpy()
                           for name, alter in alterations(seed).items()})
        for name, images in candidates.items():
            scores = prdc(reference, random_features(images), k=PRDC_K)
            rows.append({"reference": f"site {site}", "generated": name,
                         **{k: float(scores[k]) for k in KEYS}})
            print(_line(rows[-1]), flush=True)
    return rows


def _line(row: dict[str, object]) -> str:
    figures = " / ".join(f"{row[k]:.2f}" for k in KEYS)
    return f"| {row['reference']} held out | {row['generated']} | {figures} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--samples-per-site", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    print("| reference | 'generated' images | precision / recall / density / coverage |")
    print("|---|---|---|")
    rows = calibrate(args.sites, args.image_size, args.samples_per_site, args.seed)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
