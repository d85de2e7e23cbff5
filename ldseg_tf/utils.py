"""Small helpers shared by the library: atomic file writes."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


def atomic_write_text(path: str, text: str) -> None:
    """Writes `text` to `path` via a temporary file and a rename, so that a
    reader never sees a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
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
