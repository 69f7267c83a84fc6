"""The per-site data report of ``medgan data inspect`` and its contact sheet.

Both stay at the site: they name local files and header facts (modality, sizes, bits...), and are
printed or written on the site's own machine, never sent to the federation.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from client.data.dicom_source import DicomLoad
from medgan_models.sampling import save_image_grid

SHEET_IMAGES = 64
_SHEET_TILE_PIXELS = 96


def _counts(values: list[str]) -> dict[str, int]:
    return dict(Counter(values).most_common())


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root if root.is_dir() else root.parent))
    except ValueError:
        return str(path)


def label_counts(labels: np.ndarray, class_names: list[str]) -> dict[str, int]:
    """Images per class name (every class listed, zeros included)."""
    counts = np.bincount(labels.astype(np.int64), minlength=len(class_names))
    return {name: int(counts[i]) for i, name in enumerate(class_names)}


def intensity_summary(images: np.ndarray) -> dict[str, float] | None:
    """Min, max, mean and 1st/99th percentiles of images in [-1, 1], reported on the [0, 1] scale."""
    if not len(images):
        return None
    unit = (images.astype(np.float64) + 1.0) / 2.0
    low, high = np.percentile(unit, [1, 99])
    return {"min": round(float(unit.min()), 4), "max": round(float(unit.max()), 4),
            "mean": round(float(unit.mean()), 4), "p1": round(float(low), 4),
            "p99": round(float(high), 4)}


def dicom_report(load: DicomLoad, contact_sheet: Path | None = None) -> dict[str, Any]:
    """The JSON-ready report of a decoded DICOM site (see the README for the keys)."""
    records = load.records
    headers = [r.info for r in records if r.info is not None]
    skipped = [r for r in records if r.skip_kind]
    return {
        "path": str(load.root),
        "format": "dicom",
        "files": len(records),
        "read": sum(1 for r in records if r.images),
        "images": int(len(load.images)),
        "skipped": [{"path": _relative(r.path, load.root), "kind": r.skip_kind, "reason": r.reason}
                    for r in skipped],
        "skipped_by_reason": _counts([r.skip_kind for r in skipped]),
        "modalities": _counts([i.modality for i in headers]),
        "body_parts": _counts([i.body_part for i in headers]),
        "sizes": _counts([f"{i.rows}x{i.columns}" for i in headers]),
        "frames": _counts([str(i.frames) for i in headers]),
        "bits_stored": _counts([str(i.bits_stored) for i in headers]),
        "photometric": _counts([i.photometric for i in headers]),
        "transfer_syntaxes": _counts([i.transfer_syntax for i in headers]),
        "label_mode": load.label_mode,
        "labels": label_counts(load.labels, load.class_names),
        "intensity": intensity_summary(load.images),
        "options": load.options.as_mapping(),
        "image_size": int(load.images.shape[-1]),
        "channels": int(load.images.shape[1]),
        "contact_sheet": str(contact_sheet) if contact_sheet else None,
    }


def _line(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def format_report(report: dict[str, Any], max_skipped: int = 50) -> str:
    """A human-readable version of :func:`dicom_report` (or of a non-DICOM source's report)."""
    lines = [f"site: {report['path']} ({report['format']})",
             f"  files          {report['files']} found, {report['read']} read "
             f"({report['images']} images), {len(report['skipped'])} skipped"]
    if report["skipped"]:
        lines.append(f"  skipped        {_line(report['skipped_by_reason'])}")
    for key, title in (("modalities", "modalities"), ("body_parts", "body parts"),
                       ("sizes", "sizes"), ("frames", "frames/file"), ("bits_stored", "bits stored"),
                       ("photometric", "photometric"), ("transfer_syntaxes", "transfer")):
        if report.get("format") == "dicom":
            lines.append(f"  {title:<14} {_line(report[key])}")
    mode = f" (labels: {report['label_mode']})" if report.get("label_mode") else ""
    lines.append(f"  labels         {_line(report['labels'])}{mode}")
    if report.get("intensity"):
        i = report["intensity"]
        window = report.get("options", {}).get("window")
        lines.append(f"  intensity      {i['min']:.3f} .. {i['max']:.3f} (mean {i['mean']:.3f}, "
                     f"p1 {i['p1']:.3f}, p99 {i['p99']:.3f}) after "
                     f"{'window ' + window if window else 'scaling'}, on [0, 1]")
    if report.get("contact_sheet"):
        lines.append(f"  contact sheet  {report['contact_sheet']}")
    if report["skipped"]:
        lines.append("  skipped files:")
        for item in report["skipped"][:max_skipped]:
            lines.append(f"    {item['path']}: {item['reason']}")
        if len(report["skipped"]) > max_skipped:
            lines.append(f"    ... and {len(report['skipped']) - max_skipped} more (see --json)")
    return "\n".join(lines)


def write_contact_sheet(images: np.ndarray, labels: np.ndarray, path: Path,
                        count: int = SHEET_IMAGES, seed: int = 0) -> Path | None:
    """A PNG grid of up to ``count`` pre-processed images (a seeded sample, ordered by class)."""
    if not len(images):
        return None
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=min(count, len(images)), replace=False)
    pick = pick[np.argsort(labels[pick], kind="stable")]
    scale = max(1, _SHEET_TILE_PIXELS // images.shape[-1])
    return save_image_grid(images[pick], path, columns=8, scale=scale)
