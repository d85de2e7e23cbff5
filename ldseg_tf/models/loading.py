"""`load_model`: the one way the library opens a `.keras` file a user gave it.

`keras.models.load_model` says "File not found" for a file that exists but is
not a zip archive (a truncated checkpoint, a weights file renamed), so the
archive is checked first and every failure becomes one `UserError` line that
names the file.
"""

from __future__ import annotations

import contextlib
import os
import zipfile

from ldseg_tf.errors import UserError, one_line

MODEL_FILE = "a .keras model saved by `ldseg train` or `model.save`"


def load_model(path, what: str = MODEL_FILE, hint=None, scope=None):
    """The Keras model (an `LDSeg`, `ResUNet`, ... with its optimizer) in `path`.

    Args:
        path: a `.keras` file.
        what: what the file should be, for the error message.
        hint: what to do about a bad file, appended to the message.
        scope: a context (e.g. a `tf.distribute` strategy's scope) to load in.

    Raises:
        UserError: `path` is missing, a folder, not a zip archive, or an
            archive Keras cannot load (its error in the message).
    """
    import keras

    import ldseg_tf.models  # noqa: F401  (registers the classes Keras deserializes)

    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(path, what, "nothing (it does not exist)", hint)
    if os.path.isdir(path):
        raise UserError(path, what, "a folder", hint)
    if not zipfile.is_zipfile(path):
        raise UserError(path, what, f"a file Keras cannot load: not a zip archive "
                        f"({os.path.getsize(path)} bytes; truncated, or another format)", hint)
    try:
        with scope if scope is not None else contextlib.nullcontext():
            return keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - Keras raises many kinds for a bad file
        raise UserError(path, what, f"a file Keras cannot load ({type(e).__name__}: "
                        f"{one_line(e)})", hint) from e
