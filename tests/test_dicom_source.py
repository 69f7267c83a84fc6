"""DICOM folders as site data: dispatch, labels, filters, resize/pad, per-site lists, caching."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_dicom_testdata import ct_hu, real_file, write_dicom

from client import site as site_module
from client.data import DataError, load_site_dataset
from client.data import dicom_source
from client.data.dicom_options import DicomOptions, dicom_options
from client.data.dicom_source import is_dicom_source, load_dicom
from client.site import load_data, site_config


def _ct_site(root: Path, hu_by_class: dict[str, list[int]] | None = None, n: int = 3) -> Path:
    """Class sub-folders of uniform CT images (HU values) with no file suffix, PACS style."""
    for name, values in (hu_by_class or {"normal": [40] * n, "lesion": [200] * n}).items():
        for i, hu in enumerate(values):
            ct_hu(root / name / f"IM{i:04d}", hu)
    return root


def test_folder_dispatch_and_uniform_ct_grey_level(tmp_path):
    root = _ct_site(tmp_path / "site", {"soft": [40, 40]})
    assert is_dicom_source(root)
    data = load_site_dataset(str(root), 0, 1, 16)
    assert data.images.shape == (2, 1, 16, 16) and data.images.dtype == np.float32
    # HU 40 in the soft-tissue window is grey 0.50125 on [0, 1], i.e. 0.0025 on [-1, 1]
    np.testing.assert_allclose(data.images, 0.0025, atol=2e-3)
    assert data.class_names == ["soft"] and str(root) in data.source


def test_single_dcm_file_is_a_source_and_frames_are_images(tmp_path):
    path = tmp_path / "dose.dcm"
    shutil.copy(real_file("rtdose.dcm"), path)
    data = load_site_dataset(str(path), 0, 1, 16, channels=3)
    assert data.images.shape == (15, 3, 16, 16) and data.class_names == ["all"]
    assert data.images.min() >= -1 and data.images.max() <= 1


def test_png_folders_are_unchanged_and_mixed_folders_refused(tmp_path):
    png = tmp_path / "png" / "a"
    png.mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(png / "x.png")
    (tmp_path / "png" / "notes.txt").write_text("not an image")
    assert not is_dicom_source(tmp_path / "png")
    assert len(load_site_dataset(str(tmp_path / "png"), 0, 1, 16)) == 1
    ct_hu(png / "scan.dcm", 40)
    with pytest.raises(DataError, match="both DICOM files"):
        load_site_dataset(str(tmp_path / "png"), 0, 1, 16)


def test_aspect_ratio_kept_with_padding(tmp_path):
    wide = np.full((8, 32), 40 + 1024, np.int16)
    root = tmp_path / "wide"
    write_dicom(root / "w.dcm", wide, slope=1, intercept=-1024)
    image = load_site_dataset(str(root), 0, 1, 16).images[0, 0]
    assert np.allclose(image[6:10], 0.0025, atol=2e-3)  # 4 rows of content in the middle
    assert np.all(image[:6] == image.min()) and np.all(image[10:] == image.min())


def test_labels_from_subfolders_manifest_and_none(tmp_path):
    root = _ct_site(tmp_path / "folders")
    load = load_dicom(root, 16, 1)
    assert load.label_mode == "folders" and load.class_names == ["lesion", "normal"]
    assert load.labels.tolist() == [0, 0, 0, 1, 1, 1]

    flat = tmp_path / "manifest"
    for i in range(4):
        ct_hu(flat / f"s{i}.dcm", 40 * i)
    (flat / "labels.csv").write_text("path,label\ns0.dcm,1\ns1.dcm,0\ns2.dcm,1\ngone.dcm,0\n")
    load = load_dicom(flat, 16, 1)
    assert load.label_mode == "manifest" and load.class_names == ["0", "1"]
    assert load.labels.tolist() == [1, 0, 1]
    skipped = {r.path.name: r.skip_kind for r in load.records if r.skip_kind}
    assert skipped == {"s3.dcm": "unlabelled", "gone.dcm": "missing"}

    custom = tmp_path / "lists" / "train.csv"
    custom.parent.mkdir()
    custom.write_text(f"label,path\nhealthy,{flat / 's3.dcm'}\n")
    load = load_dicom(flat, 16, 1, DicomOptions(label_manifest=str(custom)))
    assert load.class_names == ["healthy"] and len(load.images) == 1

    none = load_dicom(root, 16, 1, DicomOptions(labels="none"))
    assert none.class_names == ["all"] and none.labels.tolist() == [0] * 6


def test_bad_manifest_is_a_clear_error(tmp_path):
    root = tmp_path / "m"
    ct_hu(root / "a.dcm", 0)
    (root / "labels.csv").write_text("file,class\na.dcm,1\n")
    with pytest.raises(DataError, match="'path' and 'label'"):
        load_site_dataset(str(root), 0, 1, 16)


def test_filters_modality_body_part_min_size(tmp_path):
    root = tmp_path / "mixed"
    ct_hu(root / "chest.dcm", 40, body_part="CHEST")
    ct_hu(root / "head.dcm", 40, body_part="HEAD")
    write_dicom(root / "mr.dcm", np.ones((16, 16), np.int16), modality="MR", body_part="CHEST")
    ct_hu(root / "small.dcm", 40, shape=(6, 6), body_part="CHEST")
    kept = load_dicom(root, 16, 1, dicom_options(root, {"modality": "ct", "body-part": "CHEST"}))
    reasons = {r.path.name: r.skip_kind for r in kept.records}
    assert reasons == {"chest.dcm": "", "head.dcm": "filtered", "mr.dcm": "filtered",
                       "small.dcm": "too-small"}
    assert len(load_dicom(root, 16, 1, DicomOptions(min_size=4)).images) == 4


def test_settings_file_in_the_folder(tmp_path):
    root = tmp_path / "s"
    ct_hu(root / "a.dcm", -600)
    (root / "medgan-dicom.toml").write_text('window = "ct-lung"\nmodality = ["CT"]\n')
    options = dicom_options(root)
    assert options.window == "ct-lung" and options.modality == ("CT",)
    image = load_site_dataset(str(root), 0, 1, 16).images
    np.testing.assert_allclose(image, 0.00067, atol=2e-3)  # HU -600 is the lung window centre
    (root / "medgan-dicom.toml").write_text('windwo = "ct-lung"\n')
    with pytest.raises(DataError, match="unknown DICOM option 'windwo'"):
        load_site_dataset(str(root), 0, 1, 16)


def test_bad_files_are_skipped_and_an_unusable_site_is_an_error(tmp_path):
    root = _ct_site(tmp_path / "site", {"a": [40, 40]})
    (root / "a" / "broken.dcm").write_bytes(real_file("CT_small.dcm").read_bytes()[:5000])
    (root / "a" / "junk.dcm").write_text("not dicom")
    assert len(load_site_dataset(str(root), 0, 1, 16)) == 2

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "junk.dcm").write_text("not dicom")
    (bad / "cut.dcm").write_bytes(real_file("CT_small.dcm").read_bytes()[:5000])
    with pytest.raises(DataError) as info:
        load_site_dataset(str(bad), 0, 1, 16)
    message = str(info.value)
    assert str(bad) in message and "1 truncated" in message and "1 not-dicom" in message
    assert "\n" not in message and "data inspect" in message


def test_per_site_dicom_folders_share_class_names(tmp_path):
    a = _ct_site(tmp_path / "a", {"neg": [0, 0], "pos": [300]})
    b = _ct_site(tmp_path / "b", {"pos": [300, 300]})
    sites = [load_site_dataset(f"{a},{b}", s, 2, 16) for s in range(2)]
    assert all(s.class_names == ["neg", "pos"] for s in sites)
    assert sites[0].label_counts() == {"neg": 2, "pos": 1}
    assert sites[1].label_counts() == {"neg": 0, "pos": 2}


def test_one_dicom_folder_split_across_sites(tmp_path):
    root = _ct_site(tmp_path / "pool", n=4)
    sizes = [len(load_site_dataset(str(root), s, 2, 16, seed=3)) for s in range(2)]
    assert sum(sizes) == 8 and min(sizes) > 0


def test_node_config_data_dir_and_options_and_decode_once(tmp_path, monkeypatch):
    root = _ct_site(tmp_path / "site", {"a": [-600, -600, -600]})
    calls = []
    real = dicom_source.decode_frames
    monkeypatch.setattr(dicom_source, "decode_frames",
                        lambda ds, window: calls.append(window) or real(ds, window))
    site_module._load_cached.cache_clear()
    run = {"image-size": 16, "num-classes": 0}
    config, site = site_config(run, {"data-dir": str(root), "window": "ct-lung"})
    assert config.data == str(root) and site.data_options == (("window", "ct-lung"),)
    first = load_data(config, site)
    np.testing.assert_allclose(first.images, 0.00067, atol=2e-3)
    assert load_data(config, site) is first and calls == ["ct-lung"] * 3  # decoded once
    site_module._load_cached.cache_clear()
    with pytest.raises(ValueError, match="data and data-dir"):
        site_config(run, {"data-dir": str(root), "data": "phantom"})
