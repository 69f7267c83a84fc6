"""Labels for DICOM files: a ``path,label`` CSV manifest, class sub-folders, or none."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from client.data.dicom_options import SETTINGS_FILE, DicomOptions
from client.data.dicom_reader import DicomSkip, is_dicom_file
from client.data.folder_png import FLAT_CLASS_NAME
from client.data.site_data import DataError

MANIFEST_FILE = "labels.csv"


def manifest_path(root: Path, options: DicomOptions) -> Path | None:
    """The label manifest: ``label-manifest`` (relative to ``root``), else ``labels.csv`` if present."""
    if options.label_manifest:
        path = Path(options.label_manifest).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise DataError(f"{path}: label manifest not found")
        return path
    default = root / MANIFEST_FILE
    return default if root.is_dir() and default.is_file() else None


def read_manifest(path: Path, root: Path) -> dict[Path, str]:
    """``path,label`` CSV (header row; paths relative to ``root`` or absolute) -> {file: label}."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the label manifest ({exc})".replace("\n", " ")) from None
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "path" not in header or "label" not in header:
        raise DataError(f"{path}: a label manifest needs a header row with 'path' and 'label' columns")
    col_path, col_label = header.index("path"), header.index("label")
    labels: dict[Path, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(col_path, col_label) or not row[col_path].strip() or not row[col_label].strip():
            raise DataError(f"{path}: line {line} needs both a path and a label")
        file = Path(row[col_path].strip()).expanduser()
        file = (file if file.is_absolute() else root / file).resolve()
        label = row[col_label].strip()
        if labels.setdefault(file, label) != label:
            raise DataError(f"{path}: line {line}: {row[col_path].strip()} is listed with two labels")
    if not labels:
        raise DataError(f"{path}: the label manifest lists no files")
    return labels


def sort_class_names(names: Iterable[str]) -> list[str]:
    """Sorted class names; numerically when every name is an integer."""
    unique = set(names)
    if unique and all(n.lstrip("-").isdigit() for n in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def label_mode(root: Path, options: DicomOptions) -> str:
    """The effective label mode: ``auto`` resolves to manifest, folders or none."""
    if options.labels != "auto":
        return options.labels
    if not root.is_dir():
        return "none"
    if manifest_path(root, options) is not None:
        return "manifest"
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    loose = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.name not in (SETTINGS_FILE, MANIFEST_FILE) and is_dicom_file(p)]
    return "folders" if subdirs and not loose else "none"


def labeller(root: Path, options: DicomOptions) -> tuple[str, dict[Path, str] | None]:
    """(effective label mode, manifest {resolved file: label} or None)."""
    mode = label_mode(root, options)
    if mode == "manifest":
        manifest = manifest_path(root, options)
        if manifest is None:
            raise DataError(f"{root}: labels = manifest but there is no {MANIFEST_FILE} "
                            "(set label-manifest)")
        return mode, read_manifest(manifest, root)
    return mode, None


def dicom_class_names(path: Path, options: DicomOptions) -> list[str]:
    """This source's class names, without decoding any image."""
    mode, manifest = labeller(path, options)
    if mode == "manifest":
        return sort_class_names(manifest.values())
    if mode == "folders":
        return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [FLAT_CLASS_NAME]


def label_of(path: Path, root: Path, mode: str, manifest: dict[Path, str] | None) -> str:
    """The class name of one file; DicomSkip("unlabelled") when the mode gives it none."""
    if mode == "manifest":
        label = manifest.get(path.resolve()) if manifest else None
        if label is None:
            raise DicomSkip("unlabelled", "not listed in the label manifest")
        return label
    if mode == "folders":
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            raise DicomSkip("unlabelled", "not inside a class sub-folder")
        return parts[0]
    return FLAT_CLASS_NAME
