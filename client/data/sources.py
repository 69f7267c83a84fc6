"""Resolve a data-source string into one site's :class:`SiteData`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from client.data.dicom_source import is_dicom_source, load_dicom_site, shared_dicom_class_names
from client.data.folder_png import class_folders, folder_class_names, load_image_files, scan_image_folder
from client.data.npz import load_npz_images, npz_class_names, read_npz_labels, scan_npz
from client.data.partition import partition_indices
from client.data.phantoms import CLASS_NAMES, render_phantoms, scanner_profile
from client.data.site_data import DataError, SiteData
from medgan_models.config import SUPPORTED_IMAGE_SIZES

PHANTOM_SOURCE = "phantom"
PHANTOM_LESION_PREVALENCE = 0.4


def _check_args(source: str, site: int, num_sites: int, image_size: int, channels: int,
                alpha: float | None, samples_per_site: int) -> None:
    if image_size not in SUPPORTED_IMAGE_SIZES:
        supported = ", ".join(str(s) for s in SUPPORTED_IMAGE_SIZES)
        raise DataError(f"{source}: image_size {image_size} is not supported (supported: {supported})")
    if channels not in (1, 3):
        raise DataError(f"{source}: channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if num_sites < 1:
        raise DataError(f"{source}: num_sites must be >= 1, got {num_sites}")
    if not 0 <= site < num_sites:
        raise DataError(f"{source}: site index {site} is out of range for {num_sites} sites "
                        f"(valid: 0..{num_sites - 1})")
    if alpha is not None and not (np.isfinite(alpha) and alpha > 0):
        raise DataError(f"{source}: alpha must be a positive number (or None for IID), got {alpha}")
    if samples_per_site < 1:
        raise DataError(f"{source}: samples_per_site must be >= 1, got {samples_per_site}")


def _seed_int(seed: int) -> int:
    return int(seed) % 2**32


def _split_desc(site: int, num_sites: int, alpha: float | None) -> str:
    split = "IID" if alpha is None else f"Dirichlet alpha={alpha:g}"
    return f"site {site + 1} of {num_sites}, {split}"


def _site_indices(labels: np.ndarray, where: str, site: int, num_sites: int, alpha: float | None,
                  seed: int) -> np.ndarray:
    """This site's share of a pooled dataset; DataError if it is empty."""
    idx = partition_indices(labels, num_sites, alpha, seed)[site]
    if idx.size == 0:
        raise DataError(f"site index {site} ({site + 1} of {num_sites}) got no images from {where} "
                        f"({labels.size} examples split over {num_sites} sites, "
                        f"{'IID' if alpha is None else f'alpha={alpha:g}'}); use fewer sites, more data "
                        "or a larger alpha")
    return idx


def _to_channels(images01: np.ndarray, channels: int) -> np.ndarray:
    """(N, 1, S, S) in [0, 1] -> (N, channels, S, S) float32 in [-1, 1]."""
    out = images01.astype(np.float32) * 2.0 - 1.0
    return np.repeat(out, channels, axis=1) if channels != 1 else out


def _phantom_site(site: int, num_sites: int, image_size: int, channels: int, alpha: float | None,
                  seed: int, samples_per_site: int) -> SiteData:
    total = samples_per_site * num_sites
    pool = np.zeros(total, dtype=np.int64)
    pool[: int(round(PHANTOM_LESION_PREVALENCE * total))] = 1
    pool = np.random.default_rng([_seed_int(seed), 0x1A8E15]).permutation(pool)
    idx = _site_indices(pool, "the phantom pool", site, num_sites, alpha, seed)
    labels = pool[idx]
    profile = scanner_profile(site, seed)
    rng = np.random.default_rng([_seed_int(seed), site, 0xFA27])
    images = _to_channels(render_phantoms(labels, image_size, profile, rng), channels)
    return SiteData(images, labels, len(CLASS_NAMES), list(CLASS_NAMES),
                    f"phantom (site {site + 1} of {num_sites}, scanner '{profile.name}')")


def _require_exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: does not exist")
    if not (path.is_dir() or (path.is_file() and path.suffix.lower() in (".npz", ".dcm"))):
        raise DataError(f"{path}: expected a folder of DICOM or PNG/JPEG images, a .dcm file "
                        "or a MedMNIST .npz file")


def _load_pooled(path: Path, site: int, num_sites: int, image_size: int, channels: int,
                 alpha: float | None, seed: int, dicom: Mapping[str, Any] | None) -> SiteData:
    _require_exists(path)
    if is_dicom_source(path):
        load = load_dicom_site(path, image_size, channels, dicom)
        labels, names = load.labels, load.class_names
        idx = _site_indices(labels, str(path), site, num_sites, alpha, seed)
        images = load.images[idx]
    elif path.is_dir():
        files, labels, names = scan_image_folder(path)
        idx = _site_indices(labels, str(path), site, num_sites, alpha, seed)
        images = load_image_files([files[i] for i in idx], image_size, channels)
    else:
        labels, names, _ = scan_npz(path)
        idx = _site_indices(labels, str(path), site, num_sites, alpha, seed)
        images = load_npz_images(path, idx, image_size, channels)
    desc = str(path) if num_sites == 1 else f"{path} ({_split_desc(site, num_sites, alpha)})"
    return SiteData(images, labels[idx].astype(np.int64), len(names), names, desc)


def _shared_class_names(paths: list[Path], own: Path, source: str,
                        dicom: Mapping[str, Any] | None = None) -> list[str]:
    """Class names common to all per-site entries that exist here, so labels agree across sites."""
    present = [p for p in paths if p == own or p.exists()]
    dicoms = [p for p in present if is_dicom_source(p)]
    if dicoms and len(dicoms) != len(present):
        raise DataError(f"{source}: per-site entries mix DICOM and other sources; use one kind")
    if dicoms:
        return shared_dicom_class_names(dicoms, dicom, source)
    folders = [p for p in present if p.is_dir()]
    npzs = [p for p in present if p.is_file() and p.suffix.lower() == ".npz"]
    if folders and npzs:
        raise DataError(f"{source}: per-site entries mix image folders and .npz files; use one kind")
    if npzs:
        return npz_class_names(np.concatenate([read_npz_labels(p) for p in npzs]))
    flat = [p for p in folders if not class_folders(p)]
    if flat and len(flat) != len(folders):
        raise DataError(f"{source}: some per-site folders have class sub-folders and some do not "
                        f"(e.g. {flat[0]} has none); use the same layout at every site")
    return sorted(set().union(*(folder_class_names(p) for p in folders)))


def _load_site_entry(source: str, site: int, num_sites: int, image_size: int,
                     channels: int, dicom: Mapping[str, Any] | None) -> SiteData:
    entries = [e.strip() for e in source.split(",")]
    if len(entries) != num_sites:
        raise DataError(f"{source}: {len(entries)} per-site entries given but there are {num_sites} sites; "
                        "give exactly one folder or .npz file per site")
    if any(not e for e in entries):
        raise DataError(f"{source}: empty entry in the comma-separated per-site list")
    paths = [Path(e).expanduser() for e in entries]
    own = paths[site]
    _require_exists(own)
    names = _shared_class_names(paths, own, source, dicom)
    if is_dicom_source(own):
        load = load_dicom_site(own, image_size, channels, dicom, names)
        images, labels = load.images, load.labels
    elif own.is_dir():
        files, labels, names = scan_image_folder(own, names)
        images = load_image_files(files, image_size, channels)
    else:
        labels, _, _ = scan_npz(own)
        images = load_npz_images(own, np.arange(labels.size), image_size, channels)
    return SiteData(images, labels.astype(np.int64), len(names), list(names), str(own))


def load_site_dataset(source: str, site: int, num_sites: int, image_size: int, channels: int = 1,
                      alpha: float | None = None, seed: int = 0, samples_per_site: int = 600,
                      dicom: Mapping[str, Any] | None = None) -> SiteData:
    """Load site ``site`` (0-based) of ``num_sites`` from ``source``.

    ``source`` is ``"phantom"`` (embedded synthetic brain slices; a pool of
    ``samples_per_site * num_sites`` labels split by :func:`partition_indices`,
    each site rendered with its own scanner profile), a comma-separated list
    with one folder/.npz per site (site i loads entry i whole; class names are
    shared across the entries found on this machine), or one folder/.npz split
    across sites (IID when ``alpha`` is None, Dirichlet(alpha) over labels
    otherwise). A folder holding DICOM files (or a ``.dcm`` file) is read by
    :mod:`client.data.dicom_source`; ``dicom`` overrides its options (window,
    labels, label-manifest, modality, body-part, min-size) on top of the
    folder's own ``medgan-dicom.toml``. Images come back as float32
    (N, channels, S, S) in [-1, 1].
    Raises :class:`DataError` with a one-line message naming the source on any
    bad input.
    """
    src = str(source).strip()
    _check_args(src, site, num_sites, image_size, channels, alpha, samples_per_site)
    if src.lower() == PHANTOM_SOURCE:
        return _phantom_site(site, num_sites, image_size, channels, alpha, seed, samples_per_site)
    if "," in src:
        return _load_site_entry(src, site, num_sites, image_size, channels, dicom)
    return _load_pooled(Path(src).expanduser(), site, num_sites, image_size, channels, alpha, seed,
                        dicom)
