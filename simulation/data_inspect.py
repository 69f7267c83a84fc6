"""``medgan data inspect PATH``: what a site's data holds, before anyone trains.

Prints, per site, the files found, read and skipped (with reasons), modalities, sizes, bits,
photometric interpretations, label counts and the intensity range after windowing, and writes a
contact sheet PNG of pre-processed images. Everything stays on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from client.data import DataError, dicom_options, is_dicom_source, load_dicom, load_site_dataset
from client.data.dicom_reader import WINDOW_HELP
from client.data.dicom_report import (dicom_report, format_report, intensity_summary,
                                      write_contact_sheet)
from client.data.dicom_source import require_images
from medgan_models.config import SUPPORTED_IMAGE_SIZES

DEFAULT_SHEET = Path("data-inspect.png")
# flag -> DICOM option key
OPTION_FLAGS = {"window": "window", "labels": "labels", "label_manifest": "label-manifest",
                "modality": "modality", "body_part": "body-part", "min_size": "min-size"}


def add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``medgan data inspect``."""
    p.add_argument("path", help="a DICOM or PNG folder, a .dcm or .npz file, or DIR1,DIR2,... "
                                "(one per site)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sheet", type=Path, default=DEFAULT_SHEET,
                   help=f"contact sheet PNG (default {DEFAULT_SHEET}; -siteN added per site "
                        "for several sites)")
    p.add_argument("--no-sheet", action="store_true", help="do not write a contact sheet")
    p.add_argument("--image-size", type=int, default=32, help="training image size (default 32)")
    p.add_argument("--channels", type=int, default=1, choices=[1, 3])
    p.add_argument("--window", help=f"DICOM VOI window: {WINDOW_HELP}")
    p.add_argument("--labels", choices=["auto", "manifest", "folders", "none"],
                   help="where DICOM labels come from (default auto: labels.csv if present, "
                        "else class sub-folders, else none)")
    p.add_argument("--label-manifest", help="CSV with path,label columns (relative to the folder)")
    p.add_argument("--modality", help="keep only these modalities, e.g. CT or CT,MR")
    p.add_argument("--body-part", help="keep only these Body Part Examined values, e.g. CHEST")
    p.add_argument("--min-size", type=int, help="skip images with a side below this (default 8)")


def _sheet_path(base: Path, site: int, sites: int) -> Path:
    return base if sites == 1 else base.with_name(f"{base.stem}-site{site}{base.suffix or '.png'}")


def _other_report(path: str, image_size: int, channels: int, sheet: Path | None
                  ) -> dict[str, Any]:
    """A report for a phantom / PNG folder / .npz source (no DICOM header facts to give)."""
    data = load_site_dataset(path, 0, 1, image_size, channels)
    kind = "npz" if path.lower().endswith(".npz") else "image-folder"
    if path.strip().lower() == "phantom":
        kind = "phantom"
    written = write_contact_sheet(data.images, data.labels, sheet) if sheet else None
    return {"path": path, "format": kind, "files": len(data), "read": len(data),
            "images": len(data), "skipped": [], "skipped_by_reason": {}, "modalities": {},
            "labels": data.label_counts(), "intensity": intensity_summary(data.images),
            "image_size": image_size, "channels": channels,
            "contact_sheet": str(written) if written else None}


def inspect_source(path: str, image_size: int = 32, channels: int = 1,
                   overrides: dict[str, Any] | None = None, sheet: Path | None = None
                   ) -> dict[str, Any]:
    """The report of one site's source; ``usable`` False and ``error`` set when it cannot train."""
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise DataError(f"--image-size {image_size} is not supported "
                        f"(supported: {', '.join(map(str, SUPPORTED_IMAGE_SIZES))})")
    location = Path(path).expanduser()
    report: dict[str, Any] | None = None
    try:
        if location.exists() and is_dicom_source(location):
            load = load_dicom(location, image_size, channels, dicom_options(location, overrides))
            written = write_contact_sheet(load.images, load.labels, sheet) if sheet else None
            report = dicom_report(load, written)
            require_images(load)
        else:
            report = _other_report(path, image_size, channels, sheet)
    except DataError as error:
        report = report or {"path": path, "format": "unknown", "files": 0, "read": 0, "images": 0,
                            "skipped": [], "skipped_by_reason": {}, "modalities": {}, "labels": {}}
        return {**report, "usable": False, "error": str(error)}
    return {**report, "usable": True, "error": None}


def run_inspect(args: argparse.Namespace) -> int:
    """Handle ``medgan data inspect``; 0 when every site is usable, 2 otherwise."""
    overrides = {key: getattr(args, flag) for flag, key in OPTION_FLAGS.items()
                 if getattr(args, flag) is not None}
    entries = [e.strip() for e in args.path.split(",")] if "," in args.path else [args.path]
    reports = []
    for site, entry in enumerate(entries):
        sheet = None if args.no_sheet else _sheet_path(args.sheet, site, len(entries))
        reports.append(inspect_source(entry, args.image_size, args.channels, overrides, sheet))
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    else:
        text = "\n\n".join(format_report(r) for r in reports if r.get("format") != "unknown")
        if text:
            print(text)
    for report in reports:
        if not report["usable"]:
            print(f"medgan: error: {report['error']}", file=sys.stderr)
    return 0 if all(r["usable"] for r in reports) else 2
