"""MedMNIST-style ``.npz`` datasets (``train_images`` + ``train_labels``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from client.data.folder_png import fit_image, to_unit_range
from client.data.site_data import DataError

IMAGES_KEY = "train_images"
LABELS_KEY = "train_labels"


def _open(path: Path) -> np.lib.npyio.NpzFile:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        raise DataError(f"{path}: cannot read .npz file ({detail})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not an .npz archive (a plain .npy array?)")
    return archive


def _get(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    if key not in archive.files:
        raise DataError(f"{path}: missing array '{key}' (found: {', '.join(archive.files) or 'none'}); "
                        "expected MedMNIST format with train_images and train_labels")
    try:
        return archive[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read array '{key}' ({type(exc).__name__})") from exc


def read_npz_labels(path: Path) -> np.ndarray:
    """Read and validate ``train_labels`` as int64 (N,), without touching the images."""
    with _open(path) as archive:
        raw = _get(archive, LABELS_KEY, path)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1:
        raise DataError(f"{path}: '{LABELS_KEY}' must have shape (N,) or (N, 1), got {raw.shape} "
                        "(multi-label data is not supported)")
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        if not np.issubdtype(raw.dtype, np.floating) or not np.all(raw == np.round(raw)):
            raise DataError(f"{path}: '{LABELS_KEY}' must hold integer class indices, got dtype {raw.dtype}")
    labels = raw.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{path}: '{LABELS_KEY}' has negative class index {labels.min()}")
    return labels


def npz_class_names(labels: np.ndarray) -> list[str]:
    """Class names "0", "1", ... up to the largest label."""
    return [str(i) for i in range(int(labels.max()) + 1 if labels.size else 1)]


def scan_npz(path: Path) -> tuple[np.ndarray, list[str], tuple[int, ...]]:
    """Validate a MedMNIST ``.npz`` and return (labels, class_names, train_images shape)."""
    labels = read_npz_labels(path)
    with _open(path) as archive:
        if IMAGES_KEY not in archive.files:
            _get(archive, IMAGES_KEY, path)  # raises the "missing array" error
        shape = _array_shape(archive, path)
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] not in (1, 3, 4)):
        raise DataError(f"{path}: '{IMAGES_KEY}' must have shape (N, H, W) or (N, H, W, C) with C in 1/3/4, "
                        f"got {shape}")
    if shape[0] != labels.shape[0]:
        raise DataError(f"{path}: '{IMAGES_KEY}' has {shape[0]} images but '{LABELS_KEY}' has "
                        f"{labels.shape[0]} labels")
    if shape[0] == 0:
        raise DataError(f"{path}: no images ('{IMAGES_KEY}' is empty)")
    return labels, npz_class_names(labels), shape


def _array_shape(archive: np.lib.npyio.NpzFile, path: Path) -> tuple[int, ...]:
    """Shape of ``train_images`` read from the .npy header (no full decode)."""
    try:
        with archive.zip.open(IMAGES_KEY + ".npy") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape = np.lib.format.read_array_header_1_0(handle)[0]
            elif version == (2, 0):
                shape = np.lib.format.read_array_header_2_0(handle)[0]
            else:
                raise ValueError(f"unsupported .npy version {version}")
        return tuple(int(s) for s in shape)
    except Exception:  # noqa: BLE001 - fall back to loading the array
        return tuple(_get(archive, IMAGES_KEY, path).shape)


def load_npz_images(path: Path, indices: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    """Load ``train_images[indices]`` as float32 (n, channels, S, S) in [-1, 1]."""
    with _open(path) as archive:
        raw = _get(archive, IMAGES_KEY, path)
    subset = raw[np.asarray(indices, dtype=np.int64)]
    unit = _to_unit(raw, subset)
    if unit.ndim == 4 and unit.shape[-1] == 4:
        unit = unit[..., :3]
    n, h, w = unit.shape[:3]
    src_c = 1 if unit.ndim == 3 else unit.shape[-1]
    if (h, w) == (image_size, image_size) and src_c == channels:  # fast path: no resizing needed
        chw = unit[:, None] if unit.ndim == 3 else unit.transpose(0, 3, 1, 2)
        return (np.clip(chw, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)
    out = np.empty((n, channels, image_size, image_size), dtype=np.float32)
    for i in range(n):
        out[i] = fit_image(unit[i], image_size, channels)
    return out


def _to_unit(full: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Scale to [0, 1], deciding the range from the whole array so every site agrees.

    uint8/uint16 by dtype range; other integers holding 0..255 / 0..65535 likewise;
    floats already in [0, 1] kept; otherwise min-max over the whole array.
    """
    if full.dtype in (np.uint8, np.uint16, np.bool_):
        return to_unit_range(subset)
    lo, hi = float(full.min()), float(full.max())
    if np.issubdtype(full.dtype, np.integer) and lo >= 0 and hi <= 65535:
        return (subset.astype(np.float32) / (255.0 if hi <= 255 else 65535.0)).astype(np.float32)
    if np.issubdtype(full.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return subset.astype(np.float32)
    if hi <= lo:
        return np.zeros(subset.shape, dtype=np.float32)
    return ((subset.astype(np.float32) - lo) / (hi - lo)).astype(np.float32)
