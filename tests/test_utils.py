"""Atomic file writes and JSON reports (`ldseg_tf.utils`)."""

import json
import os
import stat

import numpy as np
import pytest

from ldseg_tf.utils import atomic_path, atomic_write_text, json_default, write_csv, write_json


@pytest.fixture
def umask():
    """Sets the process umask for a test and restores it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_write_text_gives_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    path = tmp_path / "sub" / "state.json"
    atomic_write_text(str(path), '{"epoch": 1}\n')
    assert path.read_text() == '{"epoch": 1}\n'
    assert _mode(path) == expected
    # The same mode as open() gives a new file.
    with open(tmp_path / "reference", "w") as f:
        f.write("x")
    assert _mode(path) == _mode(tmp_path / "reference")
    assert sorted(os.listdir(path.parent)) == ["state.json"]  # no temporary left


def test_atomic_write_text_keeps_the_mode_of_a_replaced_file(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "config.json"
    path.write_text("old")
    os.chmod(path, 0o600)
    atomic_write_text(str(path), "new")
    assert path.read_text() == "new" and _mode(path) == 0o600


def test_atomic_write_text_failure_leaves_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(str(path), "old")
    with pytest.raises(TypeError):
        atomic_write_text(str(path), 123)  # not a str: write fails
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_atomic_path_gives_the_umask_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "model.bin"
    with atomic_path(str(path)) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"\0" * 10)
    assert _mode(path) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["model.bin"]


def test_json_default_converts_numpy():
    assert json_default(np.float32(0.5)) == 0.5 and type(json_default(np.float32(0.5))) is float
    assert json_default(np.int64(3)) == 3 and type(json_default(np.int64(3))) is int
    assert json_default(np.arange(4).reshape(2, 2)) == [[0, 1], [2, 3]]
    with pytest.raises(TypeError, match="set"):
        json_default({1})


def test_write_json_is_atomic_and_takes_numpy(tmp_path):
    path = tmp_path / "sub" / "report.json"
    doc = {"dsc": np.float64(0.75), "cases": np.array([1, 2]), "shape": (2, 2)}
    assert write_json(str(path), doc, indent=1) == str(path)
    text = path.read_text()
    assert text == json.dumps({"dsc": 0.75, "cases": [1, 2], "shape": [2, 2]}, indent=1) + "\n"
    assert sorted(os.listdir(path.parent)) == ["report.json"]  # no temporary left
    with pytest.raises(TypeError):
        write_json(str(path), {"bad": object()})
    assert path.read_text() == text  # a failed write leaves the old file


def test_write_csv_columns_and_missing_values(tmp_path):
    import csv

    path = tmp_path / "table.csv"
    rows = [{"model": "a", "dsc": 0.5}, {"model": "b", "note": "x", "dsc": None}]
    assert write_csv(str(path), rows) == str(path)
    # Columns in first-seen order; a missing value or None is an empty cell.
    assert path.read_text() == "model,dsc,note\na,0.5,\nb,,x\n"
    write_csv(str(path), rows, columns=["note", "model"])
    assert list(csv.reader(path.open())) == [["note", "model"], ["", "a"], ["x", "b"]]
