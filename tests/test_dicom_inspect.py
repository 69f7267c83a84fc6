"""``medgan data inspect``: the per-site report (text and JSON) and the contact sheet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_dicom_testdata import CANARY, ct_hu, real_file, write_dicom

from simulation.cli import main


@pytest.fixture
def mixed_site(tmp_path) -> Path:
    """Real pydicom files plus one file for every kind of bad input."""
    root = tmp_path / "hospital"
    root.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "MR_truncated.dcm"):
        shutil.copy(real_file(name), root / name)
    shutil.copy(real_file("dicomdirtests/77654033/CR1/6154"), root / "cr_6154")  # MONOCHROME1
    (root / "README.txt").write_text("exported from PACS")
    (root / "cut.dcm").write_bytes(real_file("CT_small.dcm").read_bytes()[:3000])
    write_dicom(root / "nopix.dcm", np.zeros((4, 4), np.int16), pixel_data=False)
    write_dicom(root / "hsv.dcm", np.zeros((4, 4), np.uint8), photometric="HSV")
    write_dicom(root / "ts.dcm", np.zeros((4, 4), np.int16), transfer_syntax="1.2.3.4.5.6.7.8")
    write_dicom(root / "one.dcm", np.zeros((1, 1), np.int16))
    nan = np.ones((8, 8), np.float32)
    nan[0, 0] = np.nan
    write_dicom(root / "nan.dcm", nan)
    return root


def _inspect(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", "inspect", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_of_a_mixed_folder(mixed_site, tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    code, out, _ = _inspect(capsys, str(mixed_site), "--json", "--sheet", str(sheet),
                            "--image-size", "64")
    assert code == 0
    report = json.loads(out)
    assert report["files"] == 12 and report["read"] == 4 and report["usable"] is True
    assert report["images"] == 1 + 1 + 15 + 1  # rtdose has 15 frames
    reasons = {item["path"]: item["kind"] for item in report["skipped"]}
    assert reasons == {"MR_truncated.dcm": "truncated", "cut.dcm": "truncated",
                       "README.txt": "not-dicom", "nopix.dcm": "no-pixel-data",
                       "hsv.dcm": "unsupported-photometric", "ts.dcm": "unknown-transfer-syntax",
                       "one.dcm": "too-small", "nan.dcm": "non-finite"}
    assert all(item["reason"] for item in report["skipped"])
    assert report["skipped_by_reason"]["truncated"] == 2
    assert report["modalities"]["CT"] >= 1 and report["modalities"]["RTDOSE"] == 1
    assert report["modalities"]["MR"] >= 1 and report["modalities"]["CR"] == 1
    assert report["photometric"]["MONOCHROME1"] == 1
    assert report["sizes"]["128x128"] == 1 and report["bits_stored"]["16"] >= 2
    assert report["labels"] == {"all": 18} and report["label_mode"] == "none"
    assert 0.0 <= report["intensity"]["min"] < report["intensity"]["max"] <= 1.0
    assert report["contact_sheet"] == str(sheet)
    grid = np.asarray(Image.open(sheet))
    assert grid.shape[0] > 64 and grid.std() > 0
    assert CANARY["PatientName"] not in out  # the report names no patient


def test_text_report_and_sheet_naming_for_several_sites(mixed_site, tmp_path, capsys):
    other = tmp_path / "site2"
    for i in range(3):
        ct_hu(other / f"s{i}.dcm", 40 * i, body_part="CHEST")
    sheet = tmp_path / "sheets" / "grid.png"
    code, out, _ = _inspect(capsys, f"{mixed_site},{other}", "--sheet", str(sheet))
    assert code == 0
    for needle in ("files          12 found, 4 read (18 images), 8 skipped", "truncated 2",
                   "MONOCHROME1 1", "RTDOSE 1", "CHEST 3", "labels         all 3",
                   "cut.dcm: ", "intensity"):
        assert needle in out, needle
    assert (sheet.parent / "grid-site0.png").is_file() and (sheet.parent / "grid-site1.png").is_file()


def test_filters_and_window_flags(mixed_site, capsys):
    code, out, _ = _inspect(capsys, str(mixed_site), "--json", "--no-sheet", "--modality", "CT",
                            "--window", "ct-lung")
    report = json.loads(out)
    assert code == 0 and report["images"] == 1 and report["options"]["window"] == "ct-lung"
    assert report["skipped_by_reason"]["filtered"] == 3 and report["contact_sheet"] is None


def test_empty_and_unusable_folders_fail_clearly(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _inspect(capsys, str(empty), "--no-sheet")
    assert code == 2 and str(empty) in err and "no images" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.dcm").write_text("nope")
    (broken / "b.dcm").write_bytes(real_file("MR_truncated.dcm").read_bytes())
    code, out, err = _inspect(capsys, str(broken), "--json", "--no-sheet")
    report = json.loads(out)
    assert code == 2 and report["usable"] is False and report["read"] == 0
    assert len(report["skipped"]) == 2 and "no usable DICOM image" in err


def test_simulate_refuses_an_unusable_dicom_site_before_training(tmp_path, capsys):
    good = tmp_path / "good"
    for i in range(4):
        ct_hu(good / f"s{i}.dcm", 40)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.dcm").write_text("nope")
    code = main(["simulate", "--data", f"{good},{bad}", "--sites", "2", "--rounds", "1",
                 "--image-size", "16", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and "no usable DICOM image" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_png_folder_gets_a_basic_report(tmp_path, capsys):
    root = tmp_path / "png" / "normal"
    root.mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "a.png")
    code, out, _ = _inspect(capsys, str(tmp_path / "png"), "--json", "--no-sheet")
    report = json.loads(out)
    assert code == 0 and report["format"] == "image-folder" and report["labels"] == {"normal": 1}
