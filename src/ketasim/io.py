"""Files: atomic writes and the CSV layout of results (ng/mL at the edge)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "result_columns", "write_result_csv", "write_result_table"]


def atomic_write(path, data, mode: str = "w") -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    A failure leaves no partial file behind (and no temporary one).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if "b" not in mode
                                    else {})) as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def column_name(name: str) -> str:
    """CSV column of an output: ``<name>_ng_ml`` for concentrations, ``amount_<X>_mg`` for
    amounts, the bare name for dimensionless PD outputs."""
    from .result import PD_OUTPUTS

    if name.startswith("amount:"):
        return f"amount_{name[7:]}_mg"
    if name in PD_OUTPUTS:
        return name
    return f"{name}_ng_ml"


def result_columns(result) -> tuple[list[str], np.ndarray]:
    """Column names and a 2-D table (rows: subject-major, then time) in CSV units."""
    names = list(result.names)
    data = result.data_in_csv_units()            # (N, R, T)
    N, R, T = data.shape
    cols = ["time_h"] + [column_name(nm) for nm in names]
    table = np.empty((N * T, 1 + R))
    table[:, 0] = np.tile(result.times, N)
    table[:, 1:] = data.transpose(0, 2, 1).reshape(N * T, R)
    if result.population:
        cols = ["subject"] + cols
        table = np.column_stack([np.repeat(subject_labels(result), T), table])
    return cols, table


def subject_labels(result) -> np.ndarray:
    """Subject column values: the dose table's IDs when it has a ``subject`` column, else
    0..N-1."""
    N = result.data.shape[0]
    ids = getattr(getattr(result, "doses", None), "subject_ids", None)
    if ids is not None and len(ids) == N:
        return np.asarray(ids, dtype=np.float64)
    return np.arange(N)


def write_result_table(result, fh, rows_per_block: int = 65536) -> None:
    """Write a Result as CSV text to an open file, a block of rows at a time.

    Same layout as :func:`result_columns`, without building the whole table in memory.
    """
    from .result import MG_PER_L_TO_NG_PER_ML, PD_OUTPUTS

    names = list(result.names)
    cols = ["time_h"] + [column_name(nm) for nm in names]
    if result.population:
        cols = ["subject"] + cols
    labels = subject_labels(result)
    fmt = (["%d" if np.all(labels == np.round(labels)) and np.all(np.abs(labels) < 2**53)
            else "%.10g"] if result.population else []) + ["%.10g"] * (1 + len(names))
    scale = np.array([1.0 if (n in PD_OUTPUTS or n.startswith("amount:"))
                      else MG_PER_L_TO_NG_PER_ML for n in names])
    fh.write(",".join(cols) + "\n")
    N, R, T = result.data.shape
    p = int(result.population)
    for s in range(N):
        for a in range(0, T, rows_per_block):
            b = min(T, a + rows_per_block)
            block = np.empty((b - a, p + 1 + R))
            if p:
                block[:, 0] = labels[s]
            block[:, p] = result.times[a:b]
            block[:, p + 1:] = (result.data[s, :, a:b] * scale[:, None]).T
            np.savetxt(fh, block, delimiter=",", fmt=fmt)


def write_result_csv(result, path) -> None:
    """Write a Result as CSV (``time_h`` then one column per output), atomically."""
    atomic_write(path, lambda fh: write_result_table(result, fh))
