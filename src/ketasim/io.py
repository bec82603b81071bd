"""Files: atomic writes and the CSV layout of results (ng/mL at the edge)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "result_columns", "write_result_csv"]


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
        table = np.column_stack([np.repeat(np.arange(N), T), table])
    return cols, table


def write_result_csv(result, path) -> None:
    """Write a Result as CSV (``time_h`` then one column per output), atomically."""
    cols, table = result_columns(result)
    fmt = (["%d"] if result.population else []) + ["%.10g"] * (len(cols) - int(result.population))

    def write(fh):
        fh.write(",".join(cols) + "\n")
        np.savetxt(fh, table, delimiter=",", fmt=fmt)

    atomic_write(path, write)
