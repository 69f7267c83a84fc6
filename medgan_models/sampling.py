"""Draw images from a generator, and write them as PNG grids or files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import RunConfig
from .networks import Generator, build_models
from .weights import generator_state


def generator_from_state(state: dict[str, torch.Tensor], config: RunConfig) -> Generator:
    """A generator for ``config`` loaded from a pair state (checkpoint or aggregate)."""
    generator, _ = build_models(config)
    generator.load_state_dict(
        {k: v.to(generator.state_dict()[k].dtype) for k, v in generator_state(state).items()})
    return generator.eval()


@torch.no_grad()
def sample_images(generator: Generator, labels: torch.Tensor | None, n: int, seed: int,
                  device: torch.device | str = "cpu", batch_size: int = 256,
                  sites: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` images in [-1, 1] (N, C, S, S) on CPU; ``labels`` (N,) for conditional models;
    ``sites`` (N,) for a site-conditional one (None: drawn in the federation's proportions)."""
    generator = generator.to(device).eval()
    noise = torch.Generator().manual_seed(seed)
    out = []
    device = torch.device(device)
    # the same images for the same seed, also with per-pixel noise inputs (global RNG)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            z = torch.randn(stop - start, generator.latent_dim, generator=noise).to(device)
            y = labels[start:stop].to(device) if labels is not None else None
            s = sites[start:stop].to(device) if sites is not None else None
            out.append(generator(z, y, s).cpu())
    return torch.cat(out) if out else torch.empty(0)


def class_labels(num_classes: int, per_class: int) -> torch.Tensor | None:
    """``per_class`` labels of each class in order (None for an unconditional model)."""
    if num_classes <= 1:
        return None
    return torch.arange(num_classes).repeat_interleave(per_class)


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """[-1, 1] (N, C, H, W) -> uint8 (N, H, W, C)."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    array = np.clip((array + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return array.transpose(0, 2, 3, 1)


def save_image_grid(images: torch.Tensor | np.ndarray, path: Path, columns: int = 8,
                    group_size: int | None = None, scale: int = 2) -> Path:
    """Tile images into one PNG; a blank row separates each group (e.g. each class)."""
    pixels = to_uint8(images)
    n, height, width, channels = pixels.shape
    group_size = group_size or n
    rows_per_group = -(-group_size // columns)
    groups = -(-n // group_size)
    pad = 2
    grid_h = groups * rows_per_group * (height + pad) + (groups - 1) * height // 2 + pad
    grid_w = columns * (width + pad) + pad
    canvas = np.full((grid_h, grid_w, channels), 255, np.uint8)
    for i in range(n):
        group, index = divmod(i, group_size)
        row, col = divmod(index, columns)
        top = pad + (group * rows_per_group + row) * (height + pad) + group * height // 2
        left = pad + col * (width + pad)
        canvas[top:top + height, left:left + width] = pixels[i]
    image = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    if scale > 1:
        image = image.resize((grid_w * scale, grid_h * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
