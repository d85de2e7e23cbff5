"""Reading images/volumes and writing label maps back in their format and geometry."""

import os

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from ldseg_tf.data.io import read_image, split_extension, write_mask


def _affine():
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    affine[:3, 3] = [-10.0, 4.0, 30.0]
    return affine


def test_split_extension_keeps_nii_gz():
    assert split_extension("a/b/case_0000.nii.gz") == ("a/b/case_0000", ".nii.gz")
    assert split_extension("x.PNG") == ("x", ".PNG")


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".gif"])
def test_2d_label_round_trip(tmp_path, ext):
    mask = np.random.default_rng(0).integers(0, 4, size=(17, 23)).astype(np.uint8)
    path = str(tmp_path / f"mask{ext}")
    assert write_mask(path, mask) == path
    back, meta = read_image(path, label=True)
    np.testing.assert_array_equal(back, mask)
    assert back.dtype == np.uint8
    assert meta["spatial_shape"] == (17, 23)
    assert meta["format"] in ("png", "bmp", "tiff", "gif")
    # Only the final file is left: the temporary sibling was renamed.
    assert os.listdir(tmp_path) == [f"mask{ext}"]


def test_read_rgb_grey_16bit_and_palette(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(8, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    arr, meta = read_image(str(tmp_path / "rgb.png"))
    np.testing.assert_array_equal(arr, rgb)
    assert meta["shape"] == (8, 9, 3) and meta["spatial_shape"] == (8, 9) and meta["mode"] == "RGB"

    grey16 = (np.arange(8 * 9, dtype=np.uint16).reshape(8, 9) * 900).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    arr, _ = read_image(str(tmp_path / "g16.png"))
    np.testing.assert_array_equal(arr, grey16)

    # A palette image: indices for a label map, colours for an image.
    pal = Image.new("P", (2, 2))
    pal.putdata([0, 1, 2, 1])
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "pal.png")
    labels, _ = read_image(str(tmp_path / "pal.png"), label=True)
    np.testing.assert_array_equal(labels, [[0, 1], [2, 1]])
    colours, _ = read_image(str(tmp_path / "pal.png"))
    assert colours.shape == (2, 2, 3)
    np.testing.assert_array_equal(colours[0, 1], [255, 0, 0])


def test_multipage_tiff_is_a_stack(tmp_path):
    frames = [Image.fromarray(np.full((5, 6), i * 10, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    arr, meta = read_image(str(tmp_path / "stack.tif"))
    assert arr.shape == (3, 5, 6)
    assert meta["spatial_shape"] == (3, 5, 6)
    np.testing.assert_array_equal(arr[:, 0, 0], [0, 10, 20])


def test_nifti_round_trip_keeps_geometry(tmp_path):
    image = np.random.default_rng(2).normal(size=(6, 7, 5)).astype(np.float32)
    src = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(image, _affine()), str(src))
    arr, meta = read_image(str(src))
    np.testing.assert_allclose(arr, image)
    np.testing.assert_allclose(meta["affine"], _affine())
    assert meta["spacing"] == pytest.approx((0.5, 0.7, 2.0))
    assert meta["spatial_shape"] == (6, 7, 5) and meta["format"] == "nifti"

    mask = (image > 0).astype(np.uint8) + (image > 1)
    out = str(tmp_path / "pred.nii.gz")
    write_mask(out, mask, meta)
    written = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, _affine())
    assert written.header.get_zooms() == pytest.approx((0.5, 0.7, 2.0))


def test_write_mask_rejects_bad_input(tmp_path):
    meta = {"spatial_shape": (4, 4), "path": "src.png"}
    with pytest.raises(ValueError, match=r"pred\.png.*\(3, 4\).*expected \(4, 4\)"):
        write_mask(str(tmp_path / "pred.png"), np.zeros((3, 4), np.uint8), meta)
    with pytest.raises(ValueError, match=r"big\.png.*8-bit.*300"):
        write_mask(str(tmp_path / "big.png"), np.full((2, 2), 300), None)
    with pytest.raises(ValueError, match=r"lossy"):
        write_mask(str(tmp_path / "p.jpg"), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"p\.png.*integers"):
        write_mask(str(tmp_path / "p.png"), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match=r"unsupported file type '\.txt'"):
        write_mask(str(tmp_path / "p.txt"), np.zeros((2, 2), np.uint8))
    # Nothing was written, not even a temporary file.
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "mask.png")
    write_mask(path, np.ones((3, 3), np.uint8))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_mask(path, np.zeros((3, 3), np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(read_image(path, label=True)[0], np.ones((3, 3)))
    assert os.listdir(tmp_path) == ["mask.png"]


def test_missing_unreadable_and_unsupported_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.png: file not found"):
        read_image(str(tmp_path / "nope.png"))
    bad = tmp_path / "broken.bmp"
    bad.write_bytes(b"BM this is not a bitmap")
    with pytest.raises(ValueError, match=r"broken\.bmp: cannot read this bmp file"):
        read_image(str(bad))
    bad_nii = tmp_path / "broken.nii.gz"
    bad_nii.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match=r"broken\.nii\.gz: cannot read this nifti file"):
        read_image(str(bad_nii))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"notes\.txt: unsupported file type"):
        read_image(str(tmp_path / "notes.txt"))


def test_reads_the_shared_data(shared_data):
    image, meta = read_image(str(shared_data / "knee_sample" / "Image" / "Case1.nii.gz"))
    assert image.shape == (240, 104, 160) and image.dtype == np.int16
    assert meta["spacing"] == pytest.approx((1.0, 1.0, 1.0))
    labels, _ = read_image(str(shared_data / "knee_sample" / "Label" / "Case1_label.nii.gz"))
    assert set(np.unique(labels)) == {0, 1, 2}

    fundus, meta = read_image(str(shared_data / "drive" / "training" / "images" / "21_training.tif"))
    assert fundus.shape == (584, 565, 3) and fundus.dtype == np.uint8 and meta["format"] == "tiff"
    vessels, _ = read_image(
        str(shared_data / "drive" / "training" / "1st_manual" / "21_manual1.gif"), label=True
    )
    assert vessels.shape == (584, 565) and set(np.unique(vessels)) == {0, 255}

    gland, meta = read_image(str(shared_data / "glas_sample" / "Image" / "Case1.bmp"))
    assert gland.shape == (522, 775, 3) and meta["format"] == "bmp"
