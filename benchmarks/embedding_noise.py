"""How much of what the generator learnt from the private mean embedding is the release's noise.

    python benchmarks/embedding_noise.py RUN_DIR [--checkpoint FILE] [--json OUT.json]

For a simulated run (every site's state folder on this disk), per site and class: the norm of
the Gaussian noise in the site's mean-embedding release (its noisy class mean minus the clean
mean of the same training images, recomputed here), how far the released generator's class
mean lies from the clean mean and from the release, and the cosine between the generator's
offset from the clean mean and the noise. A cosine near 0 (about 1 / sqrt(features) by chance)
means the generator ignores the noise; a clearly positive one that it drew part of the noise
into its images. Seconds on a CPU; it reads the run's own images, so it is a diagnostic for a
simulation, not something a real site would publish.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parents[1]))

from client.embedding_release import embedding_path, load_release  # noqa: E402
from client.site import site_config, train_and_holdout  # noqa: E402
from medgan_models.sampling import generator_from_state, sample_images  # noqa: E402
from server.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint  # noqa: E402

MIN_CLASS_IMAGES = 20  # a class with fewer training images at a site is left out


@torch.no_grad()
def alignment(features: nn.Module, real: torch.Tensor, fake: torch.Tensor,
              released_mean: torch.Tensor) -> dict[str, float]:
    """One class at one site: |noise|, |fake - clean|, |fake - release| and the cosine between
    (fake - clean) and the noise, where clean is the mean of ``real``'s features."""
    clean = features(real).mean(0)
    generated = features(fake).mean(0)
    noise, offset = released_mean - clean, generated - clean
    return {"noise_norm": float(noise.norm()), "fake_to_clean": float(offset.norm()),
            "fake_to_release": float((generated - released_mean).norm()),
            "cosine": float(torch.nn.functional.cosine_similarity(offset, noise, dim=0))}


def run_alignment(run_dir: Path, checkpoint: Path | None = None) -> list[dict[str, Any]]:
    """:func:`alignment` for every site of a simulated run and every class with at least
    ``MIN_CLASS_IMAGES`` training images there, with the released generator of ``checkpoint``
    (default: the run's last); ``matched`` says whether the loss used that class's mean (not
    when its noise was too large for its image count)."""
    path = checkpoint or latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint (checkpoints/round_NNN.pt)")
    saved: Checkpoint = load_checkpoint(path)
    run_config = {**saved.run_config, "out-dir": str(run_dir), "state-dir": ""}
    site_dirs = sorted((run_dir / "site-state").glob("site-*"), key=lambda p: int(p.name[5:]))
    rows = []
    for site_dir in site_dirs:
        node = {"partition-id": int(site_dir.name[5:]), "num-partitions": len(site_dirs)}
        config, site = site_config(run_config, node, num_sites=len(site_dirs))
        release_file = embedding_path(site.ledger_dir, config)
        if not release_file.exists():
            raise FileNotFoundError(f"{site.site_id}: no mean-embedding release {release_file}")
        release = load_release(release_file, config)
        train, _ = train_and_holdout(config, site)
        generator = generator_from_state(saved.release_weights, config)
        labels = torch.from_numpy(train.labels).long()
        sites = (torch.full((len(labels),), site.site_code(config))
                 if config.site_conditional else None)
        fake = sample_images(generator, labels if config.conditional else None, len(labels),
                             seed=config.seed, sites=sites)
        real = torch.from_numpy(train.images).float()
        if not config.conditional:
            labels = torch.zeros_like(labels)
        for c in range(release.means.shape[0]):
            chosen = labels == c
            if int(chosen.sum()) < MIN_CLASS_IMAGES:
                continue
            rows.append({"site": site.site_id, "class": c, "images": int(chosen.sum()),
                         "matched": float(release.weights[c]) > 0,
                         **alignment(release.features, real[chosen], fake[chosen],
                                     release.means[c])})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a simulated run folder")
    parser.add_argument("--checkpoint", type=Path, help="default: the run's last")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    try:
        rows = run_alignment(args.run, args.checkpoint)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("site     class  images  |noise|  |fake-clean|  |fake-release|  "
          "cos(fake-clean, noise)")
    for r in rows:
        unused = "" if r["matched"] else "  (not matched: too few images for the noise)"
        print(f"{r['site']:<8} {r['class']:>5}  {r['images']:>6}  {r['noise_norm']:7.3f}  "
              f"{r['fake_to_clean']:12.3f}  {r['fake_to_release']:14.3f}  "
              f"{r['cosine']:22.2f}{unused}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
