"""Read one DICOM file into images in [0, 1]: decode, Modality LUT, VOI window, MONOCHROME1.

Every way a file can be unusable raises :class:`DicomSkip` with a short ``kind`` (for counting in
reports) and a one-line reason; nothing here ever lets a bad file crash a caller that catches it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, pixel_array
from pydicom.uid import UID

CODECS_EXTRA = "dicom-codecs"
INSTALL_HINT = f"pip install 'medgan-fl[{CODECS_EXTRA}]'"
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")
PALETTE = "PALETTE COLOR"
UNDEFINED_LENGTH = 0xFFFFFFFF
_MAGIC_OFFSET, _MAGIC = 128, b"DICM"
HARD_MIN_SIDE = 2  # a 0- or 1-pixel side is never an image worth training on

# (center, width) in physical units (HU for CT).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "ct-soft-tissue": (40.0, 400.0),
    "ct-lung": (-600.0, 1500.0),
    "ct-brain": (40.0, 80.0),
    "ct-bone": (400.0, 1800.0),
    "ct-mediastinum": (50.0, 350.0),
}
# Used by window "auto" when a file carries no Window Center/Width of its own.
MODALITY_DEFAULT_PRESET = {"CT": "ct-soft-tissue"}
PERCENTILES = (1.0, 99.0)
WINDOW_HELP = ("auto (the file's Window Center/Width, else a CT soft-tissue preset for CT, else "
               f"percentile {PERCENTILES[0]:g}-{PERCENTILES[1]:g}), percentile, "
               f"{', '.join(WINDOW_PRESETS)}, or CENTER/WIDTH (e.g. 40/400)")


class DicomSkip(Exception):
    """A file that cannot be used; ``kind`` groups reasons, ``str()`` is the one-line reason."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True)
class DicomInfo:
    """The header facts a data report needs (never sent anywhere: local reports only)."""

    modality: str
    body_part: str
    rows: int
    columns: int
    frames: int
    bits_stored: int
    photometric: str
    transfer_syntax: str


def check_window(spec: str) -> str:
    """Validate a window spec (see ``WINDOW_HELP``); return it normalised, ValueError if bad."""
    value = spec.strip().lower()
    if value in ("auto", "percentile") or value in WINDOW_PRESETS:
        return value
    parts = value.split("/")
    try:
        center, width = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"unknown window '{spec}'; use {WINDOW_HELP}") from None
    if not (np.isfinite(center) and np.isfinite(width) and width > 0):
        raise ValueError(f"window '{spec}': center/width must be finite with width > 0")
    return value


def is_dicom_file(path: Path) -> bool:
    """A ``.dcm`` file, or any file with the DICOM 'DICM' prefix at byte 128."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(_MAGIC_OFFSET + len(_MAGIC))
    except OSError:
        return False
    return head[_MAGIC_OFFSET:] == _MAGIC


def read_dataset(path: Path) -> Dataset:
    """Parse a file's header (pixel bytes deferred); DicomSkip if it is not readable DICOM."""
    if not os.access(path, os.R_OK):
        raise DicomSkip("unreadable", "cannot open the file (permission denied)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, defer_size="256 KB")
            except InvalidDicomError:
                # No preamble/'DICM': accept only if it parses to an image header.
                ds = pydicom.dcmread(path, defer_size="256 KB", force=True)
                if "Rows" not in ds or not _has_pixels(ds):
                    raise DicomSkip("not-dicom", "not a DICOM file") from None
    except DicomSkip:
        raise
    except PermissionError:
        raise DicomSkip("unreadable", "cannot open the file (permission denied)") from None
    except EOFError:
        raise DicomSkip("truncated", "file ends inside the DICOM header (truncated)") from None
    except Exception as exc:  # pydicom raises many types on garbage
        raise DicomSkip("not-dicom", f"not a readable DICOM file ({_short(exc)})") from None
    if len(ds) == 0 or _ends_early(ds, path):
        raise DicomSkip("truncated", "file ends inside a data element (truncated)")
    return ds


def header_info(ds: Dataset) -> DicomInfo:
    """Modality, size, bits, photometric and transfer syntax of a parsed file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _header_info(ds)


def check_image(ds: Dataset, info: DicomInfo) -> None:
    """DicomSkip unless ``ds`` holds pixels this reader can decode (cheap: nothing is decoded)."""
    meta = getattr(ds, "file_meta", None)
    if str(getattr(meta, "MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS:
        raise DicomSkip("no-pixel-data", "DICOMDIR index file, not an image")
    if not _has_pixels(ds):
        if "Rows" in ds and "Columns" in ds:
            raise DicomSkip("no-pixel-data", "no pixel data although the header describes an "
                                             "image (stripped or truncated?)")
        raise DicomSkip("no-pixel-data", "no pixel data (not an image object)")
    if min(info.rows, info.columns) < HARD_MIN_SIDE:
        raise DicomSkip("too-small", f"{info.rows}x{info.columns} image is too small")
    if info.photometric not in (*MONOCHROME, *COLOUR, PALETTE):
        raise DicomSkip("unsupported-photometric",
                        f"unsupported photometric interpretation '{info.photometric}' (supported: "
                        f"{', '.join((*MONOCHROME, 'RGB', 'YBR_*', PALETTE))})")
    ts = UID(str(getattr(meta, "TransferSyntaxUID", "") or ""))
    if not str(ts):
        return  # no meta: pydicom infers the encoding from the data
    if not ts.is_transfer_syntax:
        raise DicomSkip("unknown-transfer-syntax", f"unknown transfer syntax '{ts}'")
    if ts.is_compressed:
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise DicomSkip("unknown-transfer-syntax",
                            f"no pixel decoder exists for transfer syntax {ts.name}") from None
        if not decoder.is_available:
            raise DicomSkip("no-decoder", f"compressed ({ts.name}): no decoder installed "
                                          f"({INSTALL_HINT})")


def decode_frames(ds: Dataset, window: str = "auto") -> list[np.ndarray]:
    """Every frame of ``ds`` as float32 (H, W) or (H, W, 3) in [0, 1]; DicomSkip if unusable."""
    info = header_info(ds)
    check_image(ds, info)
    window = check_window(window)
    frames = []
    for index in range(info.frames):
        raw = _decode(ds, None if info.frames == 1 else index)
        if info.photometric in MONOCHROME:
            frames.append(_monochrome(ds, raw, index, info, window))
        else:
            frames.append(_colour(ds, raw, info))
    return frames


def window_to_unit(values: np.ndarray, center: float, width: float, function: str = "LINEAR"
                   ) -> np.ndarray:
    """DICOM VOI window (PS3.3 C.11.2.1.2) of physical values, as float32 in [0, 1]."""
    x = values.astype(np.float64)
    if function == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        out = (x - center) / width + 0.5
    else:  # LINEAR
        out = (x - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def percentile_to_unit(values: np.ndarray, low: float = PERCENTILES[0],
                       high: float = PERCENTILES[1]) -> np.ndarray:
    """Map the [low, high] percentiles of ``values`` to [0, 1] (clipped); a flat image gives 0."""
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- internals


def _short(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _header_info(ds: Dataset) -> DicomInfo:
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "")
    frames = _int(ds.get("NumberOfFrames", 1), 1)
    return DicomInfo(
        modality=str(ds.get("Modality", "") or "").strip().upper() or "unknown",
        body_part=str(ds.get("BodyPartExamined", "") or "").strip().upper() or "unknown",
        rows=_int(ds.get("Rows", 0), 0), columns=_int(ds.get("Columns", 0), 0),
        frames=max(1, frames),
        bits_stored=_int(ds.get("BitsStored", ds.get("BitsAllocated", 0)), 0),
        photometric=str(ds.get("PhotometricInterpretation", "") or "").strip().upper() or "unknown",
        transfer_syntax=UID(ts).name if ts else "unknown")


def _ends_early(ds: Dataset, path: Path) -> bool:
    """True when the last element read runs past, or stops short of, the end of the file."""
    last = ds.get_item(max(ds.keys()))
    if not isinstance(last, RawDataElement) or last.length == UNDEFINED_LENGTH:
        return False  # sequences/undefined lengths: pydicom would have raised on EOF
    try:
        return last.value_tell + last.length != path.stat().st_size
    except OSError:
        return False


def _has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _decode(ds: Dataset, index: int | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pixel_array(ds, index=index)
    except (EOFError, OSError) as exc:
        raise DicomSkip("truncated", f"pixel data cannot be read ({_short(exc)})") from None
    except Exception as exc:
        text = str(exc)
        if "less than expected" in text or "truncated" in text.lower():
            raise DicomSkip("truncated", "pixel data is shorter than the header says "
                                         "(truncated file)") from None
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        hint = f"; a decoder from {INSTALL_HINT} may help" if ts and UID(ts).is_compressed else ""
        raise DicomSkip("decode-error", f"pixel data cannot be decoded ({_short(exc)}){hint}") from None


def _rescale_item(ds: Dataset, index: int) -> Dataset | None:
    """Rescale slope/intercept of an enhanced multi-frame file's functional groups, if any."""
    for name, i in (("PerFrameFunctionalGroupsSequence", index),
                    ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(name)
        if groups and len(groups) > i:
            transform = groups[i].get("PixelValueTransformationSequence")
            if transform:
                return transform[0]
    return None


def _physical(ds: Dataset, raw: np.ndarray, index: int) -> np.ndarray:
    """Stored values -> physical (Modality LUT / Rescale, or RT Dose Grid Scaling)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
            values = apply_modality_lut(raw, ds)
        elif (item := _rescale_item(ds, index)) is not None:
            values = (raw * float(item.get("RescaleSlope", 1.0))
                      + float(item.get("RescaleIntercept", 0.0)))
        else:
            values = raw
        values = np.asarray(values, dtype=np.float64)
        if "DoseGridScaling" in ds:
            values = values * float(ds.DoseGridScaling)
    if not np.all(np.isfinite(values)):
        raise DicomSkip("non-finite", "NaN or infinite values after rescale")
    return values


def _file_window(ds: Dataset) -> tuple[float, float, str] | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(center[0] if isinstance(center, (list, tuple, pydicom.multival.MultiValue))
                  else center)
        w = float(width[0] if isinstance(width, (list, tuple, pydicom.multival.MultiValue))
                  else width)
    except (TypeError, ValueError, IndexError):
        return None
    if not (np.isfinite(c) and np.isfinite(w) and w > 0):
        return None
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    return c, w, function


def _monochrome(ds: Dataset, raw: np.ndarray, index: int, info: DicomInfo, window: str
                ) -> np.ndarray:
    values = _physical(ds, raw, index)
    if window == "percentile":
        unit = percentile_to_unit(values)
    elif window in WINDOW_PRESETS:
        unit = window_to_unit(values, *WINDOW_PRESETS[window])
    elif window != "auto":
        center, width = (float(p) for p in window.split("/"))
        unit = window_to_unit(values, center, width)
    elif (own := _file_window(ds)) is not None:
        unit = window_to_unit(values, *own)
    elif info.modality in MODALITY_DEFAULT_PRESET:
        unit = window_to_unit(values, *WINDOW_PRESETS[MODALITY_DEFAULT_PRESET[info.modality]])
    else:
        unit = percentile_to_unit(values)
    return 1.0 - unit if info.photometric == "MONOCHROME1" else unit


def _colour(ds: Dataset, raw: np.ndarray, info: DicomInfo) -> np.ndarray:
    if info.photometric == PALETTE:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rgb = apply_color_lut(raw, ds)
        except Exception as exc:
            raise DicomSkip("decode-error", f"palette lookup failed ({_short(exc)})") from None
        top = 255.0 if rgb.dtype == np.uint8 else 65535.0
    else:
        if raw.ndim != 3 or raw.shape[-1] != 3:
            raise DicomSkip("decode-error", f"{info.photometric} image decoded to shape {raw.shape}")
        rgb = raw
        top = float(2 ** max(1, min(info.bits_stored or 8, 32)) - 1)
    out = rgb.astype(np.float64) / top
    if not np.all(np.isfinite(out)):
        raise DicomSkip("non-finite", "NaN or infinite values in the colour image")
    return np.clip(out, 0.0, 1.0).astype(np.float32)
