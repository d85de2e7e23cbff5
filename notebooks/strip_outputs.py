#!/usr/bin/env python
"""Strips outputs from notebooks, so that they are committed without them.

    python notebooks/strip_outputs.py                 # every notebooks/*.ipynb
    python notebooks/strip_outputs.py a.ipynb b.ipynb # these
    python notebooks/strip_outputs.py --check         # exit 1 if any has outputs

Removes code-cell outputs and execution counts, the per-cell execution metadata
(timings) and the notebook-level widget state; the cells' sources and the
kernelspec are kept. Files are rewritten only when something changed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")
NOTEBOOK_METADATA = ("widgets", "varInspector", "toc")


def problems(nb) -> list:
    """What is not stripped in `nb` (an `nbformat.NotebookNode`); empty if clean."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {i}: {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i}: execution_count {cell.execution_count}")
        for key in CELL_METADATA:
            if key in cell.get("metadata", {}):
                found.append(f"cell {i}: metadata {key!r}")
    for key in NOTEBOOK_METADATA:
        if key in nb.metadata:
            found.append(f"notebook metadata {key!r}")
    return found


def strip(nb):
    """Strips `nb` in place and returns it."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
    for key in NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    return nb


def notebooks(paths=None) -> list:
    if paths:
        return [pathlib.Path(p) for p in paths]
    return sorted(HERE.glob("*.ipynb"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true",
                        help="only report notebooks with outputs; exit 1 if there are any")
    args = parser.parse_args(argv)
    dirty = 0
    for path in notebooks(args.paths):
        nb = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
        found = problems(nb)
        if not found:
            continue
        dirty += 1
        if args.check:
            print(f"{path}: not stripped ({'; '.join(found[:3])}"
                  f"{' ...' if len(found) > 3 else ''})")
        else:
            nbformat.write(strip(nb), str(path))
            print(f"stripped {path}")
    if args.check and dirty:
        print(f"{dirty} notebook(s) have outputs; run python notebooks/strip_outputs.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
