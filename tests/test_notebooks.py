"""The notebooks in notebooks/: each runs end to end (LDSEG_FAST=1, synthetic
data) and is committed without outputs.

Every notebook is executed by nbclient in a `python3` kernel of this interpreter
(ipykernel), with the working directory notebooks/, as a user would run it. A
cell that raises fails the test with the cell's traceback.

Set LDSEG_NOTEBOOK_REAL_DATA=1 to also run the GlaS and knee notebooks on the
samples in ../shared/data (slower; skipped by default).
"""

import os
import pathlib
import subprocess
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
EXPECTED = ("01_quickstart_2d", "02_knee_3d", "03_steps_uncertainty_noise", "04_tuning",
            "05_export_and_serve")
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
# Seconds per notebook (and per cell); each takes about a minute on 2 CPU cores.
TIMEOUT = int(os.environ.get("LDSEG_NOTEBOOK_TIMEOUT", "400"))
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

sys.path.insert(0, str(NOTEBOOK_DIR))
import strip_outputs  # noqa: E402


def execute(path, env, timeout=TIMEOUT):
    """Runs the notebook at `path` with the environment variables `env` added
    (a value None removes the variable); returns the executed notebook."""
    nb = nbformat.read(str(path), as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out and "text/plain" in out.data:
                parts.append(out.data["text/plain"])
    return "\n".join(parts)


def tracked_notebooks():
    try:
        out = subprocess.run(["git", "ls-files", "notebooks/*.ipynb"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return [REPO_ROOT / line for line in out.splitlines() if line.strip()]


# --------------------------------------------------------------- static checks
def test_the_notebooks_are_there():
    assert tuple(p.stem for p in NOTEBOOKS) == EXPECTED


@pytest.mark.parametrize("path", sorted(set(NOTEBOOKS) | set(tracked_notebooks())),
                         ids=lambda p: p.stem)
def test_notebook_is_stripped_and_valid(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert strip_outputs.problems(nb) == [], (
        f"{path.name} has outputs: run `python notebooks/strip_outputs.py`")
    assert nb.metadata["kernelspec"]["name"] == "python3"
    sources = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "LDSEG_FAST" in sources and "LDSEG_OUT_DIR" in sources


def test_strip_outputs_script(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    cell.execution_count = 3
    cell.metadata["execution"] = {"iopub.status.idle": "2024-01-01"}
    nb.cells = [cell]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, str(path))
    assert strip_outputs.main(["--check", str(path)]) == 1
    assert strip_outputs.main([str(path)]) == 0
    assert strip_outputs.main(["--check", str(path)]) == 0
    stripped = nbformat.read(str(path), as_version=4)
    assert stripped.cells[0].outputs == [] and stripped.cells[0].execution_count is None
    assert stripped.cells[0].source == "print(1)"


# ------------------------------------------------------------------ execution
def test_kernel_runs_this_python():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys; print(sys.executable)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"ldseg-kernel-{os.getpid()}.ipynb"
    nbformat.write(nb, str(path))
    try:
        executed = execute(path, {}, timeout=120)
    finally:
        path.unlink()
    ran = outputs_text(executed).strip()
    assert os.path.realpath(ran) == os.path.realpath(sys.executable)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    pytest.importorskip("ipykernel")
    nb = execute(path, {"LDSEG_FAST": "1", "LDSEG_DATA_DIR": None, "LDSEG_TFDS_DIR": None,
                        "LDSEG_OUT_DIR": str(tmp_path / "out")})
    errors = [out for cell in nb.cells for out in cell.get("outputs", [])
              if out.output_type == "error"]
    assert errors == []
    assert any(out.output_type == "display_data" and "image/png" in out.data
               for cell in nb.cells for out in cell.get("outputs", [])), "no figure drawn"


def test_missing_data_dir_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(nbclient.exceptions.CellExecutionError,
                       match="LDSEG_DATA_DIR=.*does not exist"):
        execute(NOTEBOOK_DIR / "01_quickstart_2d.ipynb",
                {"LDSEG_FAST": "1", "LDSEG_DATA_DIR": str(missing),
                 "LDSEG_OUT_DIR": str(tmp_path / "out")}, timeout=120)


@pytest.mark.skipif(os.environ.get("LDSEG_NOTEBOOK_REAL_DATA") != "1",
                    reason="set LDSEG_NOTEBOOK_REAL_DATA=1 to run on ../shared/data")
@pytest.mark.parametrize("name, data", [("01_quickstart_2d", "glas_sample"),
                                        ("02_knee_3d", "knee_sample"),
                                        ("03_steps_uncertainty_noise", "glas_sample"),
                                        ("04_tuning", "glas_sample")])
def test_notebook_runs_on_real_data(name, data, tmp_path):
    if not (SHARED_DATA / data).is_dir():
        pytest.skip(f"{SHARED_DATA / data} is absent")
    nb = execute(NOTEBOOK_DIR / f"{name}.ipynb",
                 {"LDSEG_FAST": "1", "LDSEG_DATA_DIR": str(SHARED_DATA / data),
                  "LDSEG_TFDS_DIR": str(tmp_path / "tfds"),
                  "LDSEG_OUT_DIR": str(tmp_path / "out")})
    assert "data=synthetic" not in outputs_text(nb)
