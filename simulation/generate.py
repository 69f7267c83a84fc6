"""``medgan generate``: synthetic images from a run's latest (or a given) checkpoint.

Written as PNG files, one ``.npz`` file, or DICOM Secondary Capture objects marked synthetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from client.dp_training import resolve_device
from medgan_models.config import RunConfig
from medgan_models.networks import Generator
from medgan_models.sampling import class_labels, generator_from_state, sample_images, to_uint8
from server.checkpoint import latest_checkpoint, load_checkpoint

FORMATS = ("png", "npz", "dicom")


def generate(run: Path, n: int, out: Path, label: int | None = None, seed: int = 0,
             checkpoint: Path | None = None, device: str = "auto", fmt: str | None = None,
             site: int | None = None) -> Path:
    """Write ``n`` images to ``out`` as ``fmt`` (``png``/``dicom``: a folder; ``npz``: one file).

    Without ``fmt``: one ``.npz`` if ``out`` ends so, PNG files otherwise. A site-conditional
    model draws ``site``'s look, or (None) sites in proportion to their training-set sizes.
    """
    fmt = fmt or ("npz" if out.suffix == ".npz" else "png")
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    if fmt == "npz" and out.suffix != ".npz":
        raise ValueError(f"--format npz needs an --out file ending in .npz, got {out}")
    path = checkpoint or latest_checkpoint(run)
    if path is None:
        raise FileNotFoundError(f"{run}: no checkpoints/round_*.pt (is this a run folder?)")
    ckpt = load_checkpoint(path)
    config = RunConfig.from_mapping(ckpt.run_config)
    generator = generator_from_state(ckpt.release_weights, config)
    labels = None
    if config.conditional:
        if label is not None and not 0 <= label < config.num_classes:
            raise ValueError(f"--label {label} is not in [0, {config.num_classes})")
        per_class = class_labels(config.num_classes, -(-n // config.num_classes))
        labels = torch.full((n,), label) if label is not None else per_class[:n]
    elif label is not None:
        raise ValueError("--label given, but this model is unconditional")
    sites = site_codes(generator, n, site, seed, labels)
    images = sample_images(generator, labels, n, seed=seed, device=resolve_device(device),
                           sites=sites)
    pixels = to_uint8(images)
    label_array = labels.numpy() if labels is not None else np.zeros(n, np.int64)
    if fmt == "dicom":
        from simulation.dicom_export import write_synthetic_dicom

        description = (f"SYNTHETIC medgan-fl DP-GAN {config.image_size}px run {run.resolve().name} "
                       f"round {ckpt.round}")
        write_synthetic_dicom(pixels, labels.numpy() if labels is not None else None, out,
                              description)
        return out
    if fmt == "npz":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, images=pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels,
                            labels=label_array, checkpoint=str(path),
                            **({"sites": sites.numpy()} if sites is not None else {}))
        return out
    out.mkdir(parents=True, exist_ok=True)
    for i, (image, y) in enumerate(zip(pixels, label_array, strict=True)):
        tag = f"_site{int(sites[i])}" if sites is not None else ""
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            out / f"synthetic_{i:05d}_class{int(y)}{tag}.png")
    return out


def site_codes(generator: Generator, n: int, site: int | None, seed: int,
               labels: torch.Tensor | None = None) -> torch.Tensor | None:
    """The site index of each image for a site-conditional generator (None otherwise):
    ``site`` for all, or drawn (seeded) in proportion to the sites' images of its label."""
    if generator.site_embedding is None:
        if site is not None:
            raise ValueError("--site given, but this model is not site-conditional "
                             "(num-sites 0)")
        return None
    if site is not None:
        if not 0 <= site < generator.num_sites:
            raise ValueError(f"--site {site} is not in [0, {generator.num_sites})")
        return torch.full((n,), site)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return generator.draw_sites(n, labels)
