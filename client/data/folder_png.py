"""Image-folder datasets (PNG/JPEG, class = sub-folder) and shared image conversion helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from client.data.site_data import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FLAT_CLASS_NAME = "all"

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """Scale an (H, W) or (H, W, C) image array to float32 in [0, 1] by its dtype's range.

    uint8 and uint16 use their dtype range (/255, /65535); other integer arrays
    holding 0..255 or 0..65535 are scaled the same way; floats already within
    [0, 1] are kept; anything else is min-max normalised.
    """
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype in (np.uint8, np.uint16):
        return (array.astype(np.float32) / float(np.iinfo(array.dtype).max)).astype(np.float32)
    if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0:
        top = 255.0 if array.max() <= 255 else 65535.0 if array.max() <= 65535 else None
        if top is not None:
            return (array.astype(np.float32) / top).astype(np.float32)
    arr = array.astype(np.float32)
    if arr.size == 0 or (arr.min() >= 0.0 and arr.max() <= 1.0):
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def fit_image(unit: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    """Turn an (H, W) or (H, W, C) image in [0, 1] into float32 (channels, S, S) in [-1, 1].

    Converts grayscale <-> RGB (luma weights for RGB -> gray), resizes with PIL
    so the longer side becomes ``image_size`` keeping the aspect ratio, and pads
    the shorter side symmetrically with the image's minimum (background) value.
    """
    img = unit[..., None] if unit.ndim == 2 else unit
    if img.shape[-1] == 4 or img.shape[-1] == 2:
        img = img[..., :-1]  # drop alpha
    if channels == 1 and img.shape[-1] == 3:
        img = (img @ _LUMA)[..., None]
    elif channels == 3 and img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    elif img.shape[-1] != channels:
        raise ValueError(f"cannot convert a {img.shape[-1]}-channel image to {channels} channels")
    h, w = img.shape[:2]
    background = float(img.min()) if img.size else 0.0
    scale = image_size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.full((channels, image_size, image_size), background, dtype=np.float32)
    top, left = (image_size - new_h) // 2, (image_size - new_w) // 2
    for c in range(channels):
        plane = np.ascontiguousarray(img[..., c], dtype=np.float32)
        if (new_h, new_w) != (h, w):
            resized = Image.fromarray(plane).resize((new_w, new_h), Image.Resampling.BICUBIC)
            plane = np.asarray(resized, dtype=np.float32)
        out[c, top:top + new_h, left:left + new_w] = plane
    return np.clip(out, 0.0, 1.0) * 2.0 - 1.0


def read_image_file(path: Path) -> np.ndarray:
    """Read a PNG/JPEG into an (H, W) or (H, W, C) float32 array in [0, 1]; DataError if unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                return np.asarray(im, dtype=np.uint16).astype(np.float32) / 65535.0
            if mode == "I":
                arr = np.asarray(im, dtype=np.int64)
                if arr.size and arr.min() >= 0 and arr.max() <= 65535:
                    return arr.astype(np.float32) / 65535.0  # 16-bit PNG decoded as 32-bit int
                return to_unit_range(arr.astype(np.float64))
            if mode == "F":
                return to_unit_range(np.asarray(im, dtype=np.float32))
            if mode not in ("L", "RGB"):
                im = im.convert("RGB" if mode in ("P", "PA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV") else "L")
            return np.asarray(im, dtype=np.uint8).astype(np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        raise DataError(f"{path}: cannot read image ({detail})") from exc


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _images_under(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if _is_image(p) and not any(
        part.startswith(".") for part in p.relative_to(folder).parts))


def class_folders(root: Path) -> list[str]:
    """Names of the non-hidden immediate sub-folders of ``root`` (sorted), i.e. its class names."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_class_names(root: Path) -> list[str]:
    """Class names of an image folder: its sub-folders, or ``["all"]`` when it has none."""
    return class_folders(root) or [FLAT_CLASS_NAME]


def scan_image_folder(root: Path, class_names: list[str] | None = None,
                      ) -> tuple[list[Path], np.ndarray, list[str]]:
    """List the images of a folder dataset and their labels without decoding them.

    Each immediate sub-folder is a class (sorted alphabetically; images found
    recursively inside it); a folder with images and no sub-folders is the single
    class "all". ``class_names`` fixes the label order (e.g. shared by all sites);
    this folder's classes must be a subset of it. Returns (files, labels, class_names).
    """
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    subdirs = class_folders(root)
    names = list(class_names) if class_names is not None else (subdirs or [FLAT_CLASS_NAME])
    index = {name: i for i, name in enumerate(names)}
    files: list[Path] = []
    labels: list[int] = []
    if subdirs:
        loose = _images_under(root, recursive=False)
        if loose:
            raise DataError(f"{root}: has both class sub-folders and loose images (e.g. {loose[0].name}); "
                            "put every image in a class sub-folder")
        groups = [(name, _images_under(root / name, recursive=True)) for name in subdirs]
    else:
        groups = [(FLAT_CLASS_NAME, _images_under(root, recursive=False))]
    for name, paths in groups:
        if name not in index:
            raise DataError(f"{root}: class '{name}' is not among the federation's classes {names}")
        files.extend(paths)
        labels.extend([index[name]] * len(paths))
    if not files:
        raise DataError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files)")
    return files, np.asarray(labels, dtype=np.int64), names


def load_image_files(files: list[Path], image_size: int, channels: int) -> np.ndarray:
    """Decode, convert and resize image files into float32 (N, channels, S, S) in [-1, 1]."""
    out = np.empty((len(files), channels, image_size, image_size), dtype=np.float32)
    for i, path in enumerate(files):
        out[i] = fit_image(read_image_file(path), image_size, channels)
    return out
