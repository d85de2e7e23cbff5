"""TFDS builders: build each into a temporary data_dir and read it back.

GlaS, Knee and DRIVE use the shared sample data; Echo (both configs) and the
nnU-Net folder builder use small files written here in their real layouts.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import nibabel as nib
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from ldseg_tf.data.pipeline import register_builders

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
register_builders()


def build(name, manual_dir, data_dir):
    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual_dir), try_download_gcs=False
        )
    )
    return builder


def examples(builder, split):
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def split_sizes(builder):
    return {name: info.num_examples for name, info in builder.info.splits.items()}


def save_nifti(path, array, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))


def finished_versions(data_dir, name):
    """Version folders of `name` that hold a dataset_info.json (a finished build)."""
    root = pathlib.Path(data_dir) / name
    return sorted(p for p in root.rglob("dataset_info.json")) if root.exists() else []


# ------------------------------------------------------------------------- GlaS
@pytest.fixture(scope="module")
def glas_demo(shared_data, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("glas_tfds")
    return build("glas", shared_data / "glas_sample", data_dir), data_dir


def test_glas_demo_layout(glas_demo, shared_data):
    builder, _ = glas_demo
    assert split_sizes(builder) == {"train": 5}
    assert builder.info.metadata["layout"] == "demo"
    assert builder.info.metadata["num_classes"] == 2
    by_name = {ex["file_name"].decode(): ex for ex in examples(builder, "train")}
    assert sorted(by_name) == [f"Case{i}.bmp" for i in range(1, 6)]
    for i in range(1, 6):
        ex = by_name[f"Case{i}.bmp"]
        image = np.array(Image.open(shared_data / "glas_sample" / "Image" / f"Case{i}.bmp"))
        instances = np.array(Image.open(shared_data / "glas_sample" / "Label" / f"Case{i}_label.bmp"))
        np.testing.assert_array_equal(ex["image"], image)
        assert ex["image"].dtype == np.uint8 and ex["image"].shape[-1] == 3
        assert ex["label"].shape == image.shape[:2] + (1,) and ex["label"].dtype == np.uint8
        np.testing.assert_array_equal(ex["label"][..., 0], instances > 0)
        np.testing.assert_array_equal(ex["instances"][..., 0], instances)
        assert set(np.unique(ex["label"])) <= {0, 1}
        assert ex["grade"] == builder.info.features["grade"].str2int("unknown")
        assert ex["patient_id"] == -1


GRADE_CSV = (
    "name,patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)\n"
    "testA_1,4, benign, adenomatous\n"
    "train_1,1, malignant, moderately differentiated\n"
    "train_2,1, malignant, moderately differentiated\n"
    "train_3,2, benign, healthy\n"
    "testB_1,9, malignant, poorly differentiated\n"
)


def _official_layout(shared_data, root, splits=None):
    """Writes the official Warwick-QU file names from the shared sample images."""
    splits = splits or {"train_1": 1, "train_2": 2, "train_3": 3, "testA_1": 4, "testB_1": 5}
    root.mkdir(parents=True)
    for name, case in splits.items():
        shutil.copy(shared_data / "glas_sample" / "Image" / f"Case{case}.bmp", root / f"{name}.bmp")
        shutil.copy(
            shared_data / "glas_sample" / "Label" / f"Case{case}_label.bmp", root / f"{name}_anno.bmp"
        )
    (root / "Grade.csv").write_text(GRADE_CSV)
    return root


def test_glas_official_layout(shared_data, tmp_path):
    # The zip extracts into one folder; the builder looks inside it.
    manual = tmp_path / "raw"
    _official_layout(shared_data, manual / "Warwick QU Dataset (Released 2016_07_08)")
    builder = build("glas", manual, tmp_path / "tfds")
    assert split_sizes(builder) == {"train": 3, "testA": 1, "testB": 1}
    assert builder.info.metadata["layout"] == "official"
    grade = builder.info.features["grade"]
    train = {ex["file_name"].decode(): ex for ex in examples(builder, "train")}
    assert sorted(train) == ["train_1.bmp", "train_2.bmp", "train_3.bmp"]
    assert grade.int2str(train["train_1.bmp"]["grade"]) == "malignant"
    assert grade.int2str(train["train_3.bmp"]["grade"]) == "benign"
    assert train["train_3.bmp"]["patient_id"] == 2
    assert train["train_1.bmp"]["grade_sirinukunwattana"] == b"moderately differentiated"
    (test_a,) = examples(builder, "testA")
    assert grade.int2str(test_a["grade"]) == "benign" and test_a["patient_id"] == 4
    anno = np.array(Image.open(shared_data / "glas_sample" / "Label" / "Case4_label.bmp"))
    np.testing.assert_array_equal(test_a["label"][..., 0], anno > 0)
    (test_b,) = examples(builder, "testB")
    assert grade.int2str(test_b["grade"]) == "malignant"


def test_glas_official_empty_split_and_missing_grade(shared_data, tmp_path):
    manual = _official_layout(shared_data, tmp_path / "a", {"train_1": 1, "testA_1": 2})
    with pytest.raises(ValueError, match=r"split 'testB' is empty; expected testB_1\.bmp"):
        build("glas", manual, tmp_path / "tfds")
    manual = _official_layout(
        shared_data, tmp_path / "b", {"train_1": 1, "train_7": 2, "testA_1": 3, "testB_1": 4}
    )
    with pytest.raises(ValueError, match=r"train_7\.bmp: no row for 'train_7' in .*Grade\.csv"):
        build("glas", manual, tmp_path / "tfds")
    assert finished_versions(tmp_path / "tfds", "glas") == []


def _demo_copy(shared_data, root):
    shutil.copytree(shared_data / "glas_sample", root)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def test_glas_missing_mask_names_the_file(shared_data, tmp_path):
    manual = _demo_copy(shared_data, tmp_path / "raw")
    os.remove(manual / "Label" / "Case3_label.bmp")
    with pytest.raises(ValueError, match=r"Case3\.bmp: no label map found; expected .*Case3_label\.bmp"):
        build("glas", manual, tmp_path / "tfds")


def test_glas_wrong_layout(tmp_path):
    (tmp_path / "raw" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"raw: not a GlaS folder; expected the official release"):
        build("glas", tmp_path / "raw", tmp_path / "tfds")


def test_interrupted_build_leaves_no_finished_dataset(shared_data, tmp_path):
    manual = _demo_copy(shared_data, tmp_path / "raw")
    label = manual / "Label" / "Case4_label.bmp"
    good = label.read_bytes()
    label.write_bytes(good[:200])  # truncated: the build dies after writing some examples
    data_dir = tmp_path / "tfds"
    with pytest.raises(ValueError, match=r"Case4_label\.bmp: cannot read this bmp file"):
        build("glas", manual, data_dir)
    # TFDS wrote into glas/incomplete.* and removed it: no version folder, no
    # dataset_info.json, nothing a reader could mistake for a dataset.
    assert finished_versions(data_dir, "glas") == []
    assert not (data_dir / "glas" / "1.0.0").exists()
    assert not [p for p in (data_dir / "glas").rglob("*") if "incomplete" in p.name]
    assert not tfds.builder("glas", data_dir=str(data_dir)).is_prepared()
    # Fixing the file and building again works.
    label.write_bytes(good)
    assert split_sizes(build("glas", manual, data_dir)) == {"train": 5}


# ------------------------------------------------- the `tfds build` command
# `tfds` is the console script that tensorflow-datasets installs next to the
# interpreter (venv/bin/tfds): these tests run the real command in a subprocess,
# as a user would, and read its output from processes that never import the
# builder code.
TFDS_CLI = pathlib.Path(sys.executable).with_name("tfds")


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def _tfds_build_argv(name, manual_dir, data_dir, *extra):
    if not TFDS_CLI.is_file():
        pytest.fail(f"{TFDS_CLI}: the `tfds` command of tensorflow-datasets is missing")
    return [
        str(TFDS_CLI), "build", str(REPO_ROOT / "data_builders" / name),
        f"--manual_dir={manual_dir}", f"--data_dir={data_dir}", *extra,
    ]


def tfds_build(name, manual_dir, data_dir, *extra, cwd):
    """`tfds build data_builders/<name> --manual_dir=... --data_dir=...`."""
    out = subprocess.run(
        _tfds_build_argv(name, manual_dir, data_dir, *extra),
        capture_output=True, text=True, cwd=cwd, env=_env(), timeout=600,
    )
    assert out.returncode == 0, f"tfds build {name} failed:\n{out.stderr[-4000:]}"
    return out


def run_fresh_python(script, cwd):
    """Runs `script` in a new interpreter (repo not on PYTHONPATH, cwd elsewhere)
    and returns the JSON object it prints last."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, cwd=cwd, env=_env(), timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


_SUMMARIZE = """
import json, sys
import numpy as np
import tensorflow_datasets as tfds

def summarize(name, data_dir):
    builder = tfds.builder(name, data_dir=data_dir)
    splits = {}
    for split, info in builder.info.splits.items():
        ds = tfds.load(name, split=split, data_dir=data_dir)
        shapes, dtypes, labels, n = set(), set(), set(), 0
        for ex in tfds.as_numpy(ds):
            n += 1
            shapes.add((ex["image"].shape, ex["label"].shape))
            dtypes.add((str(ex["image"].dtype), str(ex["label"].dtype)))
            labels |= set(np.unique(ex["label"]).tolist())
        splits[split] = {
            "num_examples": info.num_examples, "loaded": n,
            "shapes": sorted([list(i), list(l)] for i, l in shapes),
            "dtypes": sorted(list(d) for d in dtypes), "labels": sorted(labels),
        }
    return {"type": type(builder).__name__, "version": str(builder.info.version),
            "class_names": builder.info.metadata["class_names"], "splits": splits}
"""


def test_tfds_build_command_then_load_in_fresh_process(shared_data, tmp_path):
    """GlaS (shared demo sample) and Echo's `camus` config (`--config camus`,
    files written here) built by `tfds build` into one data_dir, then read by
    `tfds.load` in a process that never imports the builders."""
    data_dir = tmp_path / "tensorflow_datasets"
    tfds_build("glas", shared_data / "glas_sample", data_dir, cwd=tmp_path)
    _camus_layout(tmp_path / "camus")
    tfds_build("echo", tmp_path / "camus", data_dir, "--config", "camus", cwd=tmp_path)
    for version_dir in (data_dir / "glas" / "1.0.0", data_dir / "echo" / "camus" / "1.0.0"):
        assert (version_dir / "dataset_info.json").is_file()
        assert not [p for p in version_dir.parent.iterdir() if p.name.startswith("incomplete")]
    result = run_fresh_python(
        _SUMMARIZE
        + f"""
out = {{name: summarize(name, {str(data_dir)!r}) for name in ("glas", "echo/camus")}}
out["imported"] = sorted(
    m for m in sys.modules if m.startswith(("data_builders", "glas", "echo", "ldseg"))
)
print(json.dumps(out))
""",
        cwd=tmp_path,
    )
    # Nothing of this repository was imported: TFDS read the records and the
    # dataset_info.json / features.json that `tfds build` wrote.
    assert result["imported"] == []

    glas = result["glas"]
    assert glas["type"] == "ReadOnlyBuilder" and glas["version"] == "1.0.0"
    assert glas["class_names"] == ["background", "gland"]
    assert list(glas["splits"]) == ["train"]
    train = glas["splits"]["train"]
    assert train["num_examples"] == train["loaded"] == 5
    sizes = {Image.open(p).size for p in (shared_data / "glas_sample" / "Image").glob("*.bmp")}
    assert train["shapes"] == sorted([[h, w, 3], [h, w, 1]] for w, h in sizes)
    assert train["dtypes"] == [["uint8", "uint8"]]
    assert train["labels"] == [0, 1]

    echo = result["echo/camus"]
    assert echo["type"] == "ReadOnlyBuilder" and echo["version"] == "1.0.0"
    assert echo["class_names"] == ["background", "LV", "LA"]
    # 5 patients (videos): 3 train, 1 validation, 1 test; ED and ES frames each.
    assert {s: v["num_examples"] for s, v in echo["splits"].items()} == {
        "train": 6, "validation": 2, "test": 2,
    }
    for split in echo["splits"].values():
        assert split["loaded"] == split["num_examples"]
        assert split["shapes"] == [[[9, 7, 1], [9, 7, 1]]]
        assert split["dtypes"] == [["uint8", "uint8"]]
        assert set(split["labels"]) <= {0, 1, 2}


# A `sitecustomize` module that the `tfds` process imports at start-up (through
# PYTHONPATH): when the build opens the file named by LDSEG_TEST_STALL_ON, it
# creates LDSEG_TEST_STALL_MARK and sleeps, so the test kills it at a known
# point. The `tfds` command and the builder themselves are unchanged.
_STALL_HOOK = """
import builtins, os, time

_open = builtins.open
_trigger = os.environ.get("LDSEG_TEST_STALL_ON")


def _stalling_open(file, *args, **kwargs):
    if _trigger and isinstance(file, (str, os.PathLike)) and os.fspath(file).endswith(_trigger):
        _open(os.environ["LDSEG_TEST_STALL_MARK"], "w").close()
        time.sleep(600)
    return _open(file, *args, **kwargs)


builtins.open = _stalling_open
"""


def test_killed_tfds_build_leaves_no_finished_dataset(shared_data, tmp_path):
    """SIGKILL `tfds build` midway (no clean-up can run), then check that no
    reader sees a dataset, and that building again works."""
    manual = _official_layout(shared_data, tmp_path / "raw")
    data_dir = tmp_path / "tensorflow_datasets"
    hook, mark = tmp_path / "hook", tmp_path / "stalled"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_STALL_HOOK)
    log = tmp_path / "tfds_build.log"
    # Splits are written in order train, testA, testB: stalling on testB_1.bmp
    # kills the build after train and testA were fully written.
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            _tfds_build_argv("glas", manual, data_dir),
            cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
            env=_env(PYTHONPATH=str(hook), LDSEG_TEST_STALL_ON="testB_1.bmp",
                     LDSEG_TEST_STALL_MARK=str(mark)),
        )
        try:
            deadline = time.monotonic() + 300
            while not mark.exists():
                assert proc.poll() is None, f"tfds build ended early:\n{log.read_text()[-4000:]}"
                assert time.monotonic() < deadline, "tfds build did not reach testB_1.bmp"
                time.sleep(0.2)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # What the killed build left: TFDS's own `incomplete.*` folder holding the
    # records of the finished splits, and no version folder.
    (incomplete,) = [p for p in (data_dir / "glas").iterdir()]
    assert incomplete.name.startswith("incomplete.") and incomplete.name.endswith("_1.0.0")
    written = sorted(p.name for p in incomplete.iterdir())
    assert any(n.startswith("glas-train.tfrecord") for n in written), written
    assert not any(n.startswith("glas-testB.tfrecord") for n in written), written
    assert "dataset_info.json" not in written
    assert not (data_dir / "glas" / "1.0.0").exists()

    # A fresh process (no builder code): no dataset named glas in data_dir.
    result = run_fresh_python(
        f"""
        import json
        import tensorflow_datasets as tfds
        out = {{}}
        for what, call in (
            ("builder", lambda: tfds.builder("glas", data_dir={str(data_dir)!r})),
            ("load", lambda: tfds.load("glas", split="train", data_dir={str(data_dir)!r},
                                       download=False)),
        ):
            try:
                call()
                out[what] = "found"
            except Exception as e:
                out[what] = [type(e).__name__, str(e)[:300]]
        print(json.dumps(out))
        """,
        cwd=tmp_path,
    )
    for what in ("builder", "load"):
        assert result[what][0] == "DatasetNotFoundError", result

    # This process (builders registered): the builder exists but is not
    # prepared, and reading without building fails with TFDS's message.
    assert not tfds.builder("glas", data_dir=str(data_dir)).is_prepared()
    with pytest.raises(AssertionError, match="could not find data"):
        tfds.load("glas", split="train", data_dir=str(data_dir), download=False)

    # Building again (same command, not killed) gives the whole dataset.
    tfds_build("glas", manual, data_dir, cwd=tmp_path)
    builder = tfds.builder("glas", data_dir=str(data_dir))
    assert builder.is_prepared()
    assert split_sizes(builder) == {"train": 3, "testA": 1, "testB": 1}
    for split, n in split_sizes(builder).items():
        assert len(examples(builder, split)) == n


# ------------------------------------------------------------------------- Knee
def test_knee_from_shared_sample(shared_data, tmp_path):
    builder = build("knee", shared_data / "knee_sample", tmp_path)
    sizes = split_sizes(builder)
    assert sizes == {"train": 3, "validation": 1, "test": 1}
    seen = {}
    for split in sizes:
        for ex in examples(builder, split):
            seen.setdefault(ex["case_id"].decode(), []).append(split)
            assert ex["image"].shape == (240, 104, 160, 1) and ex["image"].dtype == np.float32
            assert ex["label"].shape == (240, 104, 160) and ex["label"].dtype == np.uint8
            assert set(np.unique(ex["label"])) == {0, 1, 2}
            np.testing.assert_allclose(ex["spacing"], [1.0, 1.0, 1.0])
            assert ex["patient_id"] == ex["case_id"]
            if ex["case_id"] == b"Case2":
                source = nib.load(str(shared_data / "knee_sample" / "Image" / "Case2.nii.gz"))
                np.testing.assert_array_equal(ex["image"][..., 0], np.asanyarray(source.dataobj))
                np.testing.assert_allclose(ex["affine"], source.affine)
    # Each case in exactly one split.
    assert sorted(seen) == [f"Case{i}" for i in range(1, 6)]
    assert all(len(v) == 1 for v in seen.values())
    assert builder.info.metadata["class_names"] == ["background", "femur", "tibia"]


def _knee_like(root, n=3, shape=(6, 5, 4)):
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        save_nifti(root / "Image" / f"Case{i}.nii.gz", rng.integers(0, 255, shape).astype(np.int16))
        save_nifti(root / "Label" / f"Case{i}_label.nii.gz", rng.integers(0, 3, shape).astype(np.uint8))
    return root


def test_knee_errors_name_the_file(tmp_path):
    root = _knee_like(tmp_path / "mismatch")
    save_nifti(root / "Label" / "Case2_label.nii.gz", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"Case2_label\.nii\.gz: label map has shape \(6, 5, 3\).*\(6, 5, 4\)"):
        build("knee", root, tmp_path / "tfds")

    root = _knee_like(tmp_path / "badlabel")
    save_nifti(root / "Label" / "Case3_label.nii.gz", np.full((6, 5, 4), 5, np.uint8))
    with pytest.raises(ValueError, match=r"Case3_label\.nii\.gz: label values \[5\] are outside"):
        build("knee", root, tmp_path / "tfds")

    root = _knee_like(tmp_path / "orphan")
    os.rename(root / "Image" / "Case1.nii.gz", root / "Image" / "Case9.nii.gz")
    with pytest.raises(ValueError, match=r"Case9\.nii\.gz: no label map found; expected .*Case9_label\.nii\.gz"):
        build("knee", root, tmp_path / "tfds")
    assert finished_versions(tmp_path / "tfds", "knee") == []


def test_knee_split_is_by_patient(tmp_path):
    root = _knee_like(tmp_path / "raw", n=8, shape=(3, 3, 2))
    # Cases 1-4 are two scans each of patients A and B: they must stay together.
    (root / "patients.csv").write_text(
        "case,patient\nCase1,A\nCase2,A\nCase3,B\nCase4,B\nCase5,C\nCase6,D\nCase7,E\nCase8,F\n"
    )
    builder = build("knee", root, tmp_path / "tfds")
    split_of = {}
    for split in builder.info.splits:
        for ex in examples(builder, split):
            split_of.setdefault(ex["patient_id"].decode(), set()).add(split)
    assert all(len(s) == 1 for s in split_of.values()), split_of
    assert len(split_of) == 6


# ------------------------------------------------------------------------- DRIVE
def test_drive_from_shared_data(shared_data, tmp_path):
    builder = build("drive", shared_data / "drive", tmp_path)
    assert split_sizes(builder) == {"train": 20}
    ids = []
    for ex in examples(builder, "train"):
        ids.append(int(ex["image_id"]))
        assert ex["image"].shape == (584, 565, 3) and ex["image"].dtype == np.uint8
        assert ex["label"].shape == (584, 565, 1) and set(np.unique(ex["label"])) == {0, 1}
        assert ex["fov"].shape == (584, 565, 1) and set(np.unique(ex["fov"])) == {0, 1}
        if ex["image_id"] == b"21":
            manual = np.array(Image.open(shared_data / "drive/training/1st_manual/21_manual1.gif"))
            np.testing.assert_array_equal(ex["label"][..., 0], manual // 255)
    assert sorted(ids) == list(range(21, 41))


def test_drive_bad_mask_values(tmp_path):
    root = tmp_path / "raw" / "training"
    for sub in ("images", "1st_manual", "mask"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(root / "images" / "21_training.tif")
    Image.fromarray(np.full((4, 5), 255, np.uint8)).save(root / "mask" / "21_training_mask.gif")
    Image.fromarray(np.full((4, 5), 128, np.uint8)).save(root / "1st_manual" / "21_manual1.gif")
    with pytest.raises(ValueError, match=r"21_manual1\.gif: label values \[128\] are outside"):
        build("drive", tmp_path / "raw", tmp_path / "tfds")


# ------------------------------------------------------------------------- Echo
def _echo_videos(root, n_videos=10, shape=(12, 10), frames=5):
    """Writes `n_videos` ITK-SNAP-style folders; frame 0 of every video is unlabelled."""
    rng = np.random.default_rng(3)
    labelled = {}
    for v in range(n_videos):
        vid = f"echo{v:02d}"
        image = rng.integers(0, 256, shape + (frames,)).astype(np.uint8)
        labels = rng.integers(0, 3, shape + (frames,)).astype(np.uint8)
        labels[..., 0] = 0
        save_nifti(root / vid / f"{vid}.nii.gz", image)
        save_nifti(root / vid / f"{vid}_label.nii.gz", labels)
        labelled[vid] = (image, labels)
    return labelled


def test_echo_iowa_split_by_video(tmp_path):
    videos = _echo_videos(tmp_path / "raw")
    builder = build("echo", tmp_path / "raw", tmp_path / "tfds")  # default config: iowa
    assert builder.builder_config.name == "iowa"
    # 10 videos: 2 test, round(0.1 * 8) = 1 validation, 7 train; 4 labelled frames each.
    assert split_sizes(builder) == {"train": 28, "validation": 4, "test": 8}
    split_of_video = {}
    for split in ("train", "validation", "test"):
        for ex in examples(builder, split):
            vid = ex["video_id"].decode()
            split_of_video.setdefault(vid, set()).add(split)
            image, labels = videos[vid]
            t = int(ex["frame_index"])
            assert t != 0  # the unlabelled frame is skipped
            np.testing.assert_array_equal(ex["image"][..., 0], image[..., t])
            np.testing.assert_array_equal(ex["label"][..., 0], labels[..., t])
            assert ex["image"].shape == (12, 10, 1) and ex["label"].dtype == np.uint8
    # The leak test: no video has frames in two splits.
    assert sorted(split_of_video) == sorted(videos)
    assert all(len(s) == 1 for s in split_of_video.values()), split_of_video
    assert builder.info.metadata["class_names"] == ["background", "LV", "LA"]


def test_echo_split_is_deterministic_and_by_group():
    from data_builders._common import split_groups

    ids = [f"v{i}" for i in range(65)]
    a, b = split_groups(ids), split_groups(list(reversed(ids)))
    assert a == b
    assert {k: len(v) for k, v in a.items()} == {"test": 13, "validation": 5, "train": 47}
    assert set(a["train"]) | set(a["validation"]) | set(a["test"]) == set(ids)
    assert not (set(a["train"]) & set(a["test"])) and not (set(a["validation"]) & set(a["test"]))
    with pytest.raises(ValueError, match=r"at least 3"):
        split_groups(["a", "b"], what="video", where="x")


def test_echo_iowa_bad_labels_and_layout(tmp_path):
    _echo_videos(tmp_path / "raw", n_videos=4)
    save_nifti(tmp_path / "raw" / "echo02" / "echo02_label.nii.gz", np.full((12, 10, 5), 3, np.uint8))
    with pytest.raises(ValueError, match=r"echo02_label\.nii\.gz: label values \[3\] are outside"):
        build("echo", tmp_path / "raw", tmp_path / "tfds")

    (tmp_path / "raw2" / "video1").mkdir(parents=True)
    save_nifti(tmp_path / "raw2" / "video1" / "a.nii.gz", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=r"video1: expected exactly one image NIfTI and one label"):
        build("echo", tmp_path / "raw2", tmp_path / "tfds")
    assert finished_versions(tmp_path / "tfds", "echo") == []


def _camus_layout(root, n_patients=5, shape=(9, 7)):
    """Writes the CAMUS NIfTI release layout (`database_nifti/patientXXXX/...`)."""
    rng = np.random.default_rng(4)
    gts = {}
    for p in range(1, n_patients + 1):
        patient = f"patient{p:04d}"
        folder = root / "database_nifti" / patient
        for phase in ("ED", "ES"):
            image = rng.integers(0, 256, shape).astype(np.uint8)
            gt = rng.integers(0, 4, shape).astype(np.uint8)
            save_nifti(folder / f"{patient}_4CH_{phase}.nii.gz", image)
            save_nifti(folder / f"{patient}_4CH_{phase}_gt.nii.gz", gt)
            gts[(patient, phase)] = (image, gt)
        # Two-chamber views are ignored.
        save_nifti(folder / f"{patient}_2CH_ED.nii.gz", np.zeros(shape, np.uint8))
    return gts


def test_echo_camus_config(tmp_path):
    gts = _camus_layout(tmp_path / "camus")
    builder = build("echo/camus", tmp_path / "camus", tmp_path / "tfds")
    sizes = split_sizes(builder)
    # 5 patients: 1 test, 1 validation, 3 train; ED and ES each.
    assert sizes == {"train": 6, "validation": 2, "test": 2}
    split_of = {}
    for split in sizes:
        for ex in examples(builder, split):
            patient, phase = ex["video_id"].decode(), ex["phase"].decode()
            split_of.setdefault(patient, set()).add(split)
            image, gt = gts[(patient, phase)]
            np.testing.assert_array_equal(ex["image"][..., 0], image)
            expected = np.select([gt == 1, gt == 3], [1, 2], 0)  # LV=1, LA=2, myocardium -> 0
            np.testing.assert_array_equal(ex["label"][..., 0], expected)
    assert all(len(s) == 1 for s in split_of.values())
    assert (tmp_path / "tfds" / "echo" / "camus" / "1.0.0" / "dataset_info.json").is_file()


# ------------------------------------------------------------------------- Folder
def _nnunet_2d(root, n=3):
    rng = np.random.default_rng(5)
    cases = {}
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        case = f"cell_{i:03d}"
        image = rng.integers(0, 256, (10, 8, 3)).astype(np.uint8)
        label = rng.integers(0, 3, (10, 8)).astype(np.uint8)
        Image.fromarray(image).save(root / "imagesTr" / f"{case}_0000.png")
        Image.fromarray(label).save(root / "labelsTr" / f"{case}.png")
        cases[case] = (image, label)
    (root / "dataset.json").write_text(json.dumps({
        "name": "Cells",
        "channel_names": {"0": "R", "1": "G", "2": "B"},
        "labels": {"background": 0, "nucleus": 1, "membrane": 2},
        "numTraining": n,
        "file_ending": ".png",
    }))
    return cases


def test_folder_2d_png(tmp_path):
    cases = _nnunet_2d(tmp_path / "raw")
    builder = build("folder", tmp_path / "raw", tmp_path / "tfds")
    assert split_sizes(builder) == {"train": 3}
    meta = builder.info.metadata
    assert meta["class_names"] == ["background", "nucleus", "membrane"]
    assert meta["channel_names"] == ["R", "G", "B"] and meta["num_channels"] == 3
    for ex in examples(builder, "train"):
        image, label = cases[ex["case_id"].decode()]
        assert ex["image"].dtype == np.float32 and ex["image"].shape == (10, 8, 3)
        np.testing.assert_array_equal(ex["image"], image)
        np.testing.assert_array_equal(ex["label"], label)


def test_folder_3d_nifti_two_channels_with_test_split(tmp_path):
    rng = np.random.default_rng(6)
    root = tmp_path / "raw"
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    for split, n in (("Tr", 3), ("Ts", 1)):
        for i in range(n):
            case = f"liver_{split}{i}"
            for c in range(2):
                save_nifti(root / f"images{split}" / f"{case}_{c:04d}.nii.gz",
                           rng.normal(size=(5, 6, 4)).astype(np.float32) + 10 * c, affine)
            save_nifti(root / f"labels{split}" / f"{case}.nii.gz",
                       rng.integers(0, 2, (5, 6, 4)).astype(np.uint8), affine)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T2"},
        "labels": {"background": 0, "liver": 1},
        "file_ending": ".nii.gz",
    }))
    builder = build("folder/3d", root, tmp_path / "tfds")
    assert split_sizes(builder) == {"train": 3, "test": 1}
    for ex in examples(builder, "train"):
        assert ex["image"].shape == (5, 6, 4, 2) and ex["label"].shape == (5, 6, 4)
        assert ex["image"][..., 1].mean() > 5 > ex["image"][..., 0].mean()  # channel order kept
        np.testing.assert_allclose(ex["spacing"], [0.8, 0.8, 3.0])
        np.testing.assert_allclose(ex["affine"], affine)


def test_folder_errors_name_the_file(tmp_path):
    _nnunet_2d(tmp_path / "missing")
    os.remove(tmp_path / "missing" / "labelsTr" / "cell_001.png")
    with pytest.raises(ValueError, match=r"cell_001_0000\.png: no label map found; expected .*labelsTr/cell_001\.png"):
        build("folder", tmp_path / "missing", tmp_path / "tfds")

    _nnunet_2d(tmp_path / "size")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "size" / "labelsTr" / "cell_002.png")
    with pytest.raises(ValueError, match=r"cell_002\.png: label map has shape \(9, 8\).*\(10, 8\)"):
        build("folder", tmp_path / "size", tmp_path / "tfds")

    _nnunet_2d(tmp_path / "values")
    Image.fromarray(np.full((10, 8), 7, np.uint8)).save(tmp_path / "values" / "labelsTr" / "cell_000.png")
    with pytest.raises(ValueError, match=r"cell_000\.png: label values \[7\] are outside the declared"):
        build("folder", tmp_path / "values", tmp_path / "tfds")

    _nnunet_2d(tmp_path / "nojson")
    os.remove(tmp_path / "nojson" / "dataset.json")
    with pytest.raises(ValueError, match=r"dataset\.json: file not found"):
        build("folder", tmp_path / "nojson", tmp_path / "tfds")
    assert finished_versions(tmp_path / "tfds", "folder") == []
