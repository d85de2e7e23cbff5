"""Small helpers shared by the library: atomic file writes, JSON and CSV reports."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import stat
import tempfile
import uuid
from typing import Any, Mapping, Optional, Sequence

import numpy as np


def _create_sibling(path: str):
    """Creates a new, empty temporary file next to `path` and returns `(fd, name)`.

    Unlike `tempfile.mkstemp` (always mode 0600) the file gets the mode that
    `open(path, "w")` would give: that of an existing `path`, otherwise 0666
    minus the process umask. The name is a dot-name with the final suffix."""
    directory = os.path.dirname(path)
    existing = None
    with contextlib.suppress(OSError):
        existing = stat.S_IMODE(os.stat(path).st_mode)
    for _ in range(100):
        tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex[:12]}-{os.path.basename(path)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        except FileExistsError:
            continue
        if existing is not None:
            with contextlib.suppress(OSError):
                os.fchmod(fd, existing)
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file next to {path}.")


def atomic_write_text(path: str, text: str) -> None:
    """Writes `text` to `path` via a temporary file and a rename, so that a
    reader never sees a half-written file. The file's mode is the one `open()`
    would give (the umask's for a new file, the old file's when replacing one)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = _create_sibling(path)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def json_default(value):
    """`default=` for `json.dumps`, so that reports can hold metrics straight
    from NumPy: NumPy scalars -> Python scalars, arrays -> nested lists
    (`json` writes tuples as lists itself); anything else raises TypeError
    naming its type."""
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_json(path: str, doc, indent: int = 2) -> str:
    """Writes `doc` as JSON (NumPy values allowed, see `json_default`) with a
    final newline, atomically (`atomic_write_text`); returns `path`."""
    atomic_write_text(path, json.dumps(doc, indent=indent, default=json_default) + "\n")
    return path


def write_csv(path: str, rows: Sequence[Mapping[str, Any]],
              columns: Optional[Sequence[str]] = None) -> str:
    """Writes `rows` (dicts) as CSV, atomically; returns `path`. Columns are
    `columns`, or every key of the rows in first-seen order; a missing value or
    None is written as an empty cell."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: ("" if row.get(k) is None else row[k]) for k in columns} for row in rows)
    atomic_write_text(path, buffer.getvalue())
    return path


@contextlib.contextmanager
def atomic_path(path: str):
    """Yields a temporary sibling path to write a file or directory into; on
    success it is renamed to `path` (replacing a previous file), on failure it is
    removed and `path` is left untouched.

    The temporary name keeps the final suffix (Keras checks `.keras`)."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmpdir = tempfile.mkdtemp(dir=directory, prefix=".tmp-")
    tmp = os.path.join(tmpdir, os.path.basename(path))
    try:
        yield tmp
        if os.path.isdir(path) and os.path.isdir(tmp):
            raise FileExistsError(f"{path} already exists; refusing to overwrite a directory.")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
