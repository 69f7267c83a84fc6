"""One DICOM file -> images in [0, 1]: rescale, windows, MONOCHROME1, colour, frames, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLSLossless
from test_dicom_testdata import ct_hu, real_file, write_dicom

from client.data import dicom_reader
from client.data.dicom_reader import (DicomSkip, check_window, decode_frames, header_info,
                                      read_dataset, window_to_unit)


def frames_of(path: Path, window: str = "auto") -> list[np.ndarray]:
    return decode_frames(read_dataset(path), window)


def skip_kind(path: Path, window: str = "auto") -> DicomSkip:
    with pytest.raises(DicomSkip) as info:
        frames_of(path, window)
    assert "\n" not in str(info.value)
    return info.value


# ---------------------------------------------------------------- intensities


@pytest.mark.parametrize(("hu", "expected"), [(-1000, 0.0), (-160, 0.0), (40, 0.50125),
                                              (140, 0.75188), (1000, 1.0)])
def test_ct_soft_tissue_window_maps_known_hu(tmp_path, hu, expected):
    # DICOM linear window, center 40 / width 400: y = (HU - 39.5) / 399 + 0.5, clipped
    image = frames_of(ct_hu(tmp_path / "ct.dcm", hu), "ct-soft-tissue")[0]
    np.testing.assert_allclose(image, expected, atol=1e-4)


def test_ct_auto_uses_soft_tissue_and_lung_preset_differs(tmp_path):
    path = ct_hu(tmp_path / "ct.dcm", np.array([[-600, 40]]), shape=(8, 2))
    auto = frames_of(path)[0]
    np.testing.assert_allclose(auto[0], [0.0, 0.50125], atol=1e-4)  # CT default: soft tissue
    lung = frames_of(path, "ct-lung")[0]
    # center -600 / width 1500: y = (HU + 600.5) / 1499 + 0.5
    np.testing.assert_allclose(lung[0], [0.50033, 0.92728], atol=1e-4)
    explicit = frames_of(path, "40/400")[0]
    np.testing.assert_allclose(explicit, auto)


def test_real_ct_small_hounsfield_and_grey_levels():
    path = real_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    image = frames_of(path)[0]  # no window in the file: CT soft-tissue preset
    np.testing.assert_allclose(image, window_to_unit(hu, 40, 400), atol=1e-6)
    assert image[hu <= -160].max() == 0.0 and image[hu >= 240].min() == 1.0
    tissue = (hu > 0) & (hu < 80)
    assert tissue.any() and 0.4 < image[tissue].mean() < 0.6  # soft tissue is mid grey


def test_mr_uses_the_files_own_window():
    path = real_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (600.0, 1600.0)
    expected = window_to_unit(ds.pixel_array, 600, 1600)
    np.testing.assert_allclose(frames_of(path)[0], expected, atol=1e-6)
    pct = frames_of(path, "percentile")[0]
    assert pct.min() == 0.0 and pct.max() == 1.0


def test_monochrome1_is_inverted_real_cr_and_written(tmp_path):
    path = real_file("dicomdirtests/77654033/CR1/6154")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    physical = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
    expected = 1.0 - window_to_unit(physical, float(ds.WindowCenter), float(ds.WindowWidth))
    np.testing.assert_allclose(frames_of(path)[0], expected, atol=1e-6)
    ramp = np.tile(np.arange(16, dtype=np.uint16) * 100, (16, 1))
    mono1 = frames_of(write_dicom(tmp_path / "m1.dcm", ramp, modality="CR",
                                  photometric="MONOCHROME1"))[0]
    mono2 = frames_of(write_dicom(tmp_path / "m2.dcm", ramp, modality="CR"))[0]
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono1[0, 0] == 1.0 and mono1[0, -1] == 0.0  # low stored value = white


def test_multi_frame_rtdose_gives_one_image_per_frame():
    path = real_file("rtdose.dcm")
    frames = frames_of(path)
    info = header_info(read_dataset(path))
    assert info.frames == 15 and len(frames) == 15 and info.modality == "RTDOSE"
    assert all(f.shape == (10, 10) and 0.0 <= f.min() and f.max() <= 1.0 for f in frames)
    assert not np.allclose(frames[0], frames[7])


def test_colour_rgb_ybr_and_palette():
    rgb = frames_of(real_file("examples_rgb_color.dcm"))[0]
    assert rgb.shape == (240, 320, 3) and rgb.dtype == np.float32 and rgb.max() <= 1.0
    ybr = frames_of(real_file("SC_ybr_full_422_uncompressed.dcm"))[0]
    reference = frames_of(real_file("SC_rgb_rle.dcm"))[0]  # the same picture, RGB, RLE
    assert ybr.shape == reference.shape == (100, 100, 3)
    assert np.abs(ybr - reference).mean() < 0.01
    palette = frames_of(real_file("examples_palette.dcm"))[0]
    assert palette.shape == (350, 800, 3) and palette.max() > 0.5


def test_rle_decodes_without_plugins_like_the_native_file():
    np.testing.assert_allclose(frames_of(real_file("MR_small_RLE.dcm"))[0],
                               frames_of(real_file("MR_small.dcm"))[0])


@pytest.mark.skipif(not get_decoder(JPEGLSLossless).is_available,
                    reason="no JPEG-LS decoder: pip install 'medgan-fl[dicom-codecs]'")
def test_jpeg_ls_decodes_with_the_codecs_extra():
    np.testing.assert_allclose(frames_of(real_file("MR_small_jpeg_ls_lossless.dcm"))[0],
                               frames_of(real_file("MR_small.dcm"))[0])


def test_compressed_without_decoder_is_skipped_naming_the_extra(monkeypatch):
    class Missing:
        is_available = False

    monkeypatch.setattr(dicom_reader, "get_decoder", lambda uid: Missing())
    skip = skip_kind(real_file("MR_small_jpeg_ls_lossless.dcm"))
    assert skip.kind == "no-decoder" and "medgan-fl[dicom-codecs]" in str(skip)
    assert "JPEG-LS" in str(skip)


# ---------------------------------------------------------------- bad input


def test_truncated_files(tmp_path):
    assert skip_kind(real_file("MR_truncated.dcm")).kind == "truncated"
    whole = real_file("CT_small.dcm").read_bytes()
    for cut in (len(whole) // 2, 1000, 140):
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(whole[:cut])
        assert skip_kind(path).kind == "truncated", cut


def test_not_dicom_at_all(tmp_path):
    (tmp_path / "notes.dcm").write_text("patient list, definitely not DICOM\n" * 20)
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "image.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    for name in ("notes.dcm", "empty.dcm", "image.dcm"):
        assert skip_kind(tmp_path / name).kind == "not-dicom", name


def test_no_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "nopix.dcm", np.zeros((4, 4), np.int16), pixel_data=False)
    ds = pydicom.dcmread(path)
    del ds.Rows, ds.Columns
    ds.save_as(path)
    assert skip_kind(path).kind == "no-pixel-data"
    assert skip_kind(real_file("rtplan.dcm")).kind == "no-pixel-data"
    dicomdir = skip_kind(real_file("dicomdirtests/DICOMDIR"))
    assert dicomdir.kind == "no-pixel-data" and "DICOMDIR" in str(dicomdir)


def test_unsupported_photometric(tmp_path):
    path = write_dicom(tmp_path / "hsv.dcm", np.zeros((4, 4), np.uint8), photometric="HSV")
    skip = skip_kind(path)
    assert skip.kind == "unsupported-photometric" and "HSV" in str(skip)


def test_unknown_transfer_syntax(tmp_path):
    path = write_dicom(tmp_path / "ts.dcm", np.zeros((4, 4), np.int16),
                       transfer_syntax="1.2.3.4.5.6.7.8")
    skip = skip_kind(path)
    assert skip.kind == "unknown-transfer-syntax" and "1.2.3.4.5.6.7.8" in str(skip)


@pytest.mark.parametrize("shape", [(0, 0), (1, 1), (1, 40)])
def test_zero_sized_and_one_pixel_images(tmp_path, shape):
    assert skip_kind(write_dicom(tmp_path / "tiny.dcm", np.zeros(shape, np.int16))).kind == "too-small"


def test_nan_after_rescale(tmp_path):
    values = np.ones((8, 8), np.float32)
    values[3, 3] = np.nan
    assert skip_kind(write_dicom(tmp_path / "nan.dcm", values, modality="MR")).kind == "non-finite"
    huge = write_dicom(tmp_path / "inf.dcm", np.full((8, 8), 2000, np.int16), slope=1e308)
    assert skip_kind(huge).kind == "non-finite"


def test_unreadable_file(tmp_path, monkeypatch):
    path = ct_hu(tmp_path / "secret.dcm", 40)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: emulate the permission check failing
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != path and real_access(p, mode))
    try:
        skip = skip_kind(path)
    finally:
        path.chmod(0o644)
    assert skip.kind == "unreadable" and "permission" in str(skip)


def test_window_spec_validation():
    assert check_window("CT-Lung") == "ct-lung" and check_window("40/400") == "40/400"
    for bad in ("lungs", "40/0", "a/b", "1/2/3"):
        with pytest.raises(ValueError):
            check_window(bad)
