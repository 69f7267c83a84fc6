"""DICOM folders as site datasets: find the files, label them, filter them, decode them once.

Every file is decoded, windowed and resized a single time, when the site loads; the resulting
array is what every epoch reads (and ``client.site`` keeps it per process), so no epoch
re-decodes a file. A bad file is skipped with a reason that the data report lists; only a site
with no usable image at all is an error (:class:`DataError`, before any training).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from client.data.dicom_labels import (dicom_class_names, label_of, labeller, manifest_path,
                                      sort_class_names)
from client.data.dicom_options import SETTINGS_FILE, DicomOptions, dicom_options
from client.data.dicom_reader import (DicomInfo, DicomSkip, check_image, decode_frames,
                                      header_info, is_dicom_file, read_dataset)
from client.data.folder_png import FLAT_CLASS_NAME, IMAGE_SUFFIXES, fit_image
from client.data.site_data import DataError


@dataclass
class FileRecord:
    """What happened to one file; header facts stay on this machine (local reports only)."""

    path: Path
    info: DicomInfo | None = None
    images: int = 0
    label: str | None = None
    skip_kind: str = ""
    reason: str = ""


@dataclass
class DicomLoad:
    """A decoded DICOM site: images float32 (N, C, S, S) in [-1, 1], labels, and every file's fate."""

    root: Path
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    options: DicomOptions
    records: list[FileRecord] = field(default_factory=list)
    label_mode: str = "none"

    def skip_counts(self) -> dict[str, int]:
        """Skipped files per reason kind."""
        return dict(Counter(r.skip_kind for r in self.records if r.skip_kind))


def _candidates(root: Path) -> list[Path]:
    """Every visible file under ``root`` except its own settings file."""
    found = (p for p in root.rglob("*") if p.is_file() or p.is_symlink())
    return sorted(p for p in found if p.name != SETTINGS_FILE
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def is_dicom_source(path: Path) -> bool:
    """True for a ``.dcm`` file or a folder holding DICOM files (and no PNG/JPEG images)."""
    if path.is_file():
        return path.suffix.lower() == ".dcm"
    if not path.is_dir():
        return False
    files = _candidates(path)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    dicom = next((p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES and p.suffix.lower()
                  not in (".csv", ".txt", ".toml") and is_dicom_file(p)), None)
    if dicom is not None and images:
        raise DataError(f"{path}: holds both DICOM files (e.g. {dicom.relative_to(path)}) and "
                        f"PNG/JPEG images (e.g. {images[0].relative_to(path)}); use one kind per site")
    return dicom is not None


# ---------------------------------------------------------------- loading


def _filter(info: DicomInfo, options: DicomOptions) -> None:
    if options.modality and info.modality not in options.modality:
        raise DicomSkip("filtered", f"modality {info.modality} not selected "
                                    f"(modality = {','.join(options.modality)})")
    if options.body_part and info.body_part not in options.body_part:
        raise DicomSkip("filtered", f"body part {info.body_part} not selected "
                                    f"(body-part = {','.join(options.body_part)})")
    if min(info.rows, info.columns) < options.min_size:
        raise DicomSkip("too-small", f"{info.rows}x{info.columns} is below min-size {options.min_size}")


def _read_one(record: FileRecord, options: DicomOptions) -> list[np.ndarray]:
    ds = read_dataset(record.path)
    record.info = header_info(ds)
    check_image(ds, record.info)
    _filter(record.info, options)
    return decode_frames(ds, options.window)


def load_dicom(path: Path, image_size: int, channels: int, options: DicomOptions | None = None,
               class_names: list[str] | None = None) -> DicomLoad:
    """Decode a DICOM folder (or one ``.dcm`` file); bad files are recorded, never raised.

    Multi-frame files give one image per frame; a series of slices gives one image per file.
    ``class_names`` fixes the label order (shared by all sites); labels outside it are an error.
    """
    options = options or dicom_options(path)
    root = path if path.is_dir() else path.parent
    files = _candidates(path) if path.is_dir() else [path]
    mode, manifest = labeller(path, options) if path.is_dir() else ("none", None)
    if class_names is not None:
        names = list(class_names)
    else:
        names = dicom_class_names(path, options) if path.is_dir() else [FLAT_CLASS_NAME]
    index = {name: i for i, name in enumerate(names)}
    manifest_file = manifest_path(root, options) if mode == "manifest" else None
    records: list[FileRecord] = []
    images: list[np.ndarray] = []
    labels: list[int] = []
    for file in files:
        if manifest_file is not None and file.resolve() == manifest_file.resolve():
            continue
        record = FileRecord(file)
        records.append(record)
        try:
            record.label = label_of(file, root, mode, manifest)
            if record.label not in index:
                raise DataError(f"{path}: class '{record.label}' is not among the federation's "
                                f"classes {names}")
            fitted = [fit_image(frame, image_size, channels) for frame in _read_one(record, options)]
        except DicomSkip as skip:
            record.skip_kind, record.reason = skip.kind, str(skip)
            continue
        except DataError:
            raise
        except Exception as exc:  # never let one odd file end the load
            record.skip_kind = "decode-error"
            record.reason = f"unexpected {type(exc).__name__}: {exc}".replace("\n", " ")[:200]
            continue
        images.extend(fitted)
        labels.extend([index[record.label]] * len(fitted))
        record.images = len(fitted)
    if manifest:
        seen = {r.path.resolve() for r in records}
        for missing in sorted(p for p in manifest if p not in seen):
            records.append(FileRecord(missing, skip_kind="missing",
                                      reason="listed in the label manifest but not found"))
    shape = (len(images), channels, image_size, image_size)
    stacked = np.stack(images).astype(np.float32) if images else np.empty(shape, np.float32)
    return DicomLoad(path, stacked, np.asarray(labels, dtype=np.int64), names, options, records, mode)


def require_images(load: DicomLoad) -> DicomLoad:
    """``load`` unchanged, or DataError (one line) when it holds no usable image."""
    if len(load.images):
        return load
    if not load.records:
        raise DataError(f"{load.root}: no files found")
    reasons = ", ".join(f"{n} {kind}" for kind, n in sorted(load.skip_counts().items()))
    raise DataError(f"{load.root}: no usable DICOM image among {len(load.records)} files "
                    f"({reasons}); run 'medgan data inspect {load.root}' for the details")


def load_dicom_site(path: Path, image_size: int, channels: int,
                    overrides: Mapping[str, Any] | None = None,
                    class_names: list[str] | None = None) -> DicomLoad:
    """Options from the folder and ``overrides``, then :func:`load_dicom`; DataError if empty."""
    options = dicom_options(path, overrides)
    return require_images(load_dicom(path, image_size, channels, options, class_names))


def shared_dicom_class_names(paths: list[Path], overrides: Mapping[str, Any] | None,
                             source: str) -> list[str]:
    """Class names common to all per-site DICOM entries found here, so labels agree across sites."""
    per_site = [dicom_class_names(p, dicom_options(p, overrides)) if p.is_dir() else [FLAT_CLASS_NAME]
                for p in paths]
    flat = [p for p, names in zip(paths, per_site, strict=True) if names == [FLAT_CLASS_NAME]]
    if flat and len(flat) != len(paths):
        raise DataError(f"{source}: some per-site DICOM folders are labelled and some are not "
                        f"(e.g. {flat[0]} has no labels); use the same labelling at every site")
    return sort_class_names(set().union(*per_site))
