"""Reading images and volumes, and writing label maps back in their geometry.

`read_image` returns the pixel array exactly as stored plus a `meta` dict that
`write_mask` uses to write a prediction in the same format and geometry:

- 2D formats (PNG, BMP, TIFF, GIF, JPEG) are read with Pillow. The array is
  `(H, W)` for single-channel images and `(H, W, C)` for colour images; a
  multi-page TIFF is read as a `(D, H, W)` stack.
- NIfTI (`.nii`, `.nii.gz`) is read with nibabel in voxel order `(i, j, k)`
  exactly as nibabel returns it (no reorientation, no transpose): a volume saved
  by ITK-SNAP as `X x Y x Z` comes back with shape `(X, Y, Z)`. The affine,
  header and voxel spacing are kept in `meta`, so `write_mask` reproduces the
  geometry voxel for voxel.

Every error names the file and says what was expected.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

import numpy as np

from ldseg_tf.utils import atomic_path

#: Extensions read with Pillow, mapped to the format name kept in `meta`.
PIL_EXTENSIONS = {
    ".png": "png",
    ".bmp": "bmp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".gif": "gif",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
}
NIFTI_EXTENSIONS = {".nii": "nifti", ".nii.gz": "nifti"}
#: Every extension `read_image` understands.
IMAGE_EXTENSIONS = tuple(PIL_EXTENSIONS) + tuple(NIFTI_EXTENSIONS)


def split_extension(path: str) -> Tuple[str, str]:
    """`("dir/case_0000", ".nii.gz")` for `"dir/case_0000.nii.gz"`: like
    `os.path.splitext`, but keeps the double `.nii.gz` extension together."""
    lower = path.lower()
    if lower.endswith(".nii.gz"):
        return path[: -len(".nii.gz")], path[-len(".nii.gz"):]
    return os.path.splitext(path)


def file_format(path: str) -> str:
    """The format name (`"png"`, `"nifti"`, ...) of `path`, from its extension.

    Raises:
        ValueError: naming the file when the extension is not supported.
    """
    ext = split_extension(path)[1].lower()
    if ext in PIL_EXTENSIONS:
        return PIL_EXTENSIONS[ext]
    if ext in NIFTI_EXTENSIONS:
        return "nifti"
    raise ValueError(
        f"{path}: unsupported file type {ext!r}; expected one of {', '.join(IMAGE_EXTENSIONS)}."
    )


def read_image(path: str, *, label: bool = False) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Reads a 2D image or a 3D volume.

    Args:
        path: a PNG/BMP/TIFF/GIF/JPEG image or a NIfTI (`.nii`, `.nii.gz`) volume.
        label: whether the file is a label map. A palette (`P` mode) label map
            gives its palette indices, or its grey levels when the palette is
            grey (as in GIF masks); a palette image is converted to RGB.

    Returns:
        `(array, meta)`. `array` keeps the stored dtype (uint8, uint16, int16,
        float32, ...): `(H, W)` or `(H, W, C)` for 2D formats, `(D, H, W)` for a
        multi-page TIFF, nibabel's voxel order for NIfTI. `meta` holds `path`,
        `format`, `shape` and `dtype` of the array, `spatial_shape` (the shape
        without the channel axis) and, for NIfTI, `affine` (4x4 float64),
        `header` (a `nibabel.Nifti1Header` copy) and `spacing` (voxel sizes of the
        spatial axes); for Pillow formats `mode` (Pillow's mode string).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file type is unsupported or the file cannot be decoded.
    """
    path = os.fspath(path)
    fmt = file_format(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found.")
    try:
        if fmt == "nifti":
            array, meta = _read_nifti(path)
        else:
            array, meta = _read_pil(path, fmt, label=label)
    except (FileNotFoundError, ValueError) as e:
        if path in str(e):
            raise
        raise ValueError(f"{path}: cannot read this {fmt} file ({e}).") from e
    except Exception as e:  # noqa: BLE001 - decoders raise all sorts of errors
        raise ValueError(f"{path}: cannot read this {fmt} file ({type(e).__name__}: {e}).") from e
    meta.update(path=path, format=fmt, shape=tuple(array.shape), dtype=str(array.dtype))
    return array, meta


def _read_pil(path: str, fmt: str, *, label: bool):
    from PIL import Image, ImageSequence

    with Image.open(path) as img:
        # Multi-page TIFFs are 3D stacks; animated GIFs are not volumes, so only
        # their first frame is used.
        n_frames = getattr(img, "n_frames", 1)
        if fmt == "tiff" and n_frames > 1:
            frames = [_pil_to_array(f, label=label) for f in ImageSequence.Iterator(img)]
            shapes = {f.shape for f in frames}
            if len(shapes) != 1:
                raise ValueError(f"{path}: TIFF pages have different shapes {sorted(shapes)}.")
            array = np.stack(frames)
            spatial = array.shape[:3]
        else:
            array = _pil_to_array(img, label=label)
            spatial = array.shape[:2]
        mode = img.mode
    return array, {"mode": mode, "spatial_shape": tuple(spatial)}


def _pil_to_array(img, *, label: bool) -> np.ndarray:
    mode = img.mode
    if mode == "P" and label:
        return _palette_labels(img)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "1":
        # Bilevel images decode to bool; labels and images both want 0/1 integers.
        return np.asarray(img, dtype=np.uint8)
    elif mode in ("LA", "PA"):
        img = img.convert("L")
    array = np.array(img)
    if array.ndim == 3 and array.shape[-1] == 4 and not label:
        # Alpha carries no image content in medical/microscopy data.
        array = array[..., :3]
    return array


def _palette_labels(img) -> np.ndarray:
    """Label values of a palette image.

    A grey palette (GIF masks such as DRIVE's, which Pillow may re-index) stands
    for grey levels, so the indices are mapped through it; a colour palette (VOC
    style) encodes classes as indices, which are returned unchanged.
    """
    indices = np.array(img)
    palette = img.getpalette()
    if not palette:
        return indices
    colours = np.array(palette, dtype=np.uint8).reshape(-1, 3)
    used = np.unique(indices)
    if used.max() >= len(colours):
        return indices
    grey = colours[used]
    if np.all(grey[:, 0] == grey[:, 1]) and np.all(grey[:, 1] == grey[:, 2]):
        return colours[indices, 0]
    return indices


def _read_nifti(path: str):
    import nibabel as nib

    img = nib.load(path)
    # `dataobj` keeps the on-disk dtype unless the header asks for scaling
    # (then nibabel applies scl_slope/scl_inter and returns floats).
    array = np.asanyarray(img.dataobj)
    if array.ndim < 2:
        raise ValueError(f"{path}: expected a 2D or 3D NIfTI image, got shape {array.shape}.")
    spatial_rank = min(array.ndim, 3)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:spatial_rank])
    meta = {
        "affine": np.asarray(img.affine, dtype=np.float64),
        "header": img.header.copy(),
        "spacing": zooms,
        "spatial_shape": tuple(array.shape[:spatial_rank]),
    }
    return array, meta


def write_mask(path: str, mask, meta: Dict[str, Any] | None = None) -> str:
    """Writes a label map atomically, in the format of `path`'s extension.

    Args:
        path: the output file. Its extension picks the format (PNG, BMP, TIFF,
            GIF or NIfTI; JPEG is refused because it is lossy).
        mask: integer labels with the spatial shape of the original image:
            `(H, W)` for 2D formats, the voxel shape for NIfTI. Use
            `ldseg_tf.data.pipeline.restore_geometry` to bring a prediction back
            to that shape first.
        meta: the `meta` of the source image from `read_image`. When given, the
            mask shape must equal `meta["spatial_shape"]`, and a NIfTI output
            keeps the source affine and header (with an integer data type).

    Returns:
        `path`. The file is written to a temporary sibling and renamed, so a
        reader never sees a half-written file.

    Raises:
        ValueError: naming the file, for a shape that does not match `meta`,
            non-integer or negative labels, labels above 255 for 2D formats, or
            an unsupported format.
    """
    path = os.fspath(path)
    fmt = file_format(path)
    mask = np.asarray(mask)
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)) or np.any(mask != np.round(mask)):
            raise ValueError(f"{path}: a label map must hold integers; got non-integer floats.")
    elif mask.dtype.kind not in "iub":
        raise ValueError(f"{path}: a label map must hold integers; got dtype {mask.dtype}.")
    if mask.size and mask.min() < 0:
        raise ValueError(f"{path}: labels must be >= 0; got {mask.min()}.")
    if meta is not None and "spatial_shape" in meta:
        expected = tuple(meta["spatial_shape"])
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"{path}: mask shape {tuple(mask.shape)} does not match the source image "
                f"{meta.get('path', '')} (expected {expected}); resize it with "
                f"restore_geometry first."
            )
    top = int(mask.max()) if mask.size else 0
    with atomic_path(path) as tmp:
        if fmt == "nifti":
            _write_nifti(tmp, mask, top, meta)
        else:
            _write_pil(tmp, path, fmt, mask, top)
    return path


def _write_nifti(tmp: str, mask: np.ndarray, top: int, meta) -> None:
    import nibabel as nib

    dtype = np.uint8 if top <= 255 else np.int16 if top <= 32767 else np.int32
    data = mask.astype(dtype)
    affine = None if meta is None else meta.get("affine")
    header = None if meta is None or meta.get("header") is None else meta["header"].copy()
    img = nib.Nifti1Image(data, affine if affine is not None else np.eye(4), header=header)
    img.header.set_data_dtype(dtype)
    # Labels are stored unscaled whatever the source image's scl_slope was.
    img.header.set_slope_inter(1.0, 0.0)
    nib.save(img, tmp)


def _write_pil(tmp: str, path: str, fmt: str, mask: np.ndarray, top: int) -> None:
    from PIL import Image

    if fmt == "jpeg":
        raise ValueError(f"{path}: JPEG is lossy and would corrupt labels; write PNG instead.")
    if mask.ndim != 2:
        raise ValueError(
            f"{path}: {fmt.upper()} label maps are 2D; got shape {mask.shape} "
            f"(use NIfTI for volumes)."
        )
    if top > 255:
        raise ValueError(f"{path}: {fmt.upper()} label maps are 8-bit; got label {top} > 255.")
    Image.fromarray(mask.astype(np.uint8)).save(tmp, format=_PIL_SAVE_FORMAT[fmt])


_PIL_SAVE_FORMAT = {"png": "PNG", "bmp": "BMP", "tiff": "TIFF", "gif": "GIF"}
