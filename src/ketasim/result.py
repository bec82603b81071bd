"""The frozen result of a simulation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import KetasimInputError, check_name

__all__ = ["Result", "PD_OUTPUTS", "MG_PER_L_TO_NG_PER_ML"]

PD_OUTPUTS = ("occupancy", "occupancy_low", "occupancy_high", "glutamate", "plasticity",
              "consolidation")
MG_PER_L_TO_NG_PER_ML = 1000.0


@dataclass(frozen=True, eq=False)
class Result:
    """Outputs of :func:`ketasim.simulate` on a time grid (frozen; ``result["plasma"]`` is
    ``result.output("plasma")``). Two results are equal only when they are the same object
    (they hold arrays: compare their ``data`` with numpy); a result can be a dict key.

    Attributes
    ----------
    times : float64 (T,)
        Output times, hours. At a dose time the value just after the dose is reported.
    names : tuple of str (R,)
        Output names: concentrations (compartments, effect sites, observe aliases),
        ``"amount:X"`` amounts, and ``occupancy``, ``glutamate``, ``plasticity``.
    data : float64 (N, R, T)
        Outputs in internal units: mg/L, mg, or dimensionless (PD outputs).
    population : bool
        True when parameters or weights were given as arrays: accessors then return (N, T).
    params : dict of name -> float64 (N,)
        Every resolved parameter per subject (after weight scaling and derivation).
    model : Model
    doses : Doses
    inputs : dict
        What the run was asked for (parameter overrides, weight, occupancy calibration,
        tolerance): exact metrics re-run the same subjects from it.
    """

    times: np.ndarray
    names: tuple
    data: np.ndarray
    population: bool
    params: dict
    model: object
    doses: object = None
    inputs: dict = None

    @property
    def n_subjects(self) -> int:
        return self.data.shape[0]

    def _row(self, name: str) -> int:
        check_name(name, self.names, "output")
        return self.names.index(name)

    def _shape(self, a: np.ndarray) -> np.ndarray:
        return a if self.population else a[0]

    def __getitem__(self, name: str) -> np.ndarray:
        """``result[name]``: :meth:`output` (internal units), as a population's table is read
        by column name."""
        return self.output(name)

    def __contains__(self, name) -> bool:
        """``name in result``: whether ``result[name]`` is an output of it (with
        ``__getitem__`` alone, ``in`` had tried ``result[0]`` and failed as "unknown name
        0")."""
        if not isinstance(name, str):
            return False
        try:
            self._row(name)
        except KetasimInputError:
            return False
        return True

    __iter__ = None     # not a sequence: iter(result) is a TypeError, not result[0]

    def output(self, name: str) -> np.ndarray:
        """Any output in internal units; (T,) or (N, T): concentrations mg/L, amounts mg,
        occupancy a fraction 0-1 (model-predicted), the SCHEMATIC glutamate signal relative
        to baseline 1, plasticity and consolidation indices 0-1 (dimensionless)."""
        return self._shape(self.data[:, self._row(name), :])

    def concentration(self, name: str, unit: str = "ng/mL") -> np.ndarray:
        """Concentration of a compartment, effect site or alias: (T,) or (N, T).

        ``unit``: ``"ng/mL"`` (default) or ``"mg/L"``. For µM divide ng/mL by the molar mass
        in g/mol (ketamine 237.73: 1 µM ≈ 238 ng/mL).
        """
        if not isinstance(name, str):
            self._row(name)       # (not a name: refused as output() refuses it)
        if name in PD_OUTPUTS or name.startswith("amount:"):
            raise KetasimInputError(f"concentration: {name!r} is not a concentration; use "
                                    "result.output(name)")
        c = self.output(name)
        if unit in ("ng/mL", "ng/ml", "ug/L"):
            return c * MG_PER_L_TO_NG_PER_ML
        if unit in ("mg/L", "mg/l", "ug/mL"):
            return c.copy()
        raise KetasimInputError(f"concentration: unit {unit!r}, expected 'ng/mL' or 'mg/L'")

    def amount(self, name: str) -> np.ndarray:
        """Amount (mg) in a state; needs ``simulate(..., amounts=True)``."""
        key = f"amount:{name}"
        if key not in self.names:
            raise KetasimInputError(f"amount: {name!r} not recorded; call simulate(..., "
                                    "amounts=True)")
        return self.output(key)

    @property
    def occupancy(self) -> np.ndarray:
        """Model-predicted NMDA-receptor occupancy (0-1)."""
        return self.output("occupancy")

    @property
    def glutamate(self) -> np.ndarray:
        """Schematic glutamate signal (baseline 1, dimensionless)."""
        return self.output("glutamate")

    @property
    def plasticity(self) -> np.ndarray:
        """Schematic plasticity index (0-1, dimensionless)."""
        return self.output("plasticity")

    def csv_scale(self) -> np.ndarray:
        """float64 (R,): each output's factor from internal to CSV units (concentrations mg/L
        to ng/mL; amounts and the PD outputs as they are)."""
        return np.array([1.0 if (n in PD_OUTPUTS or n.startswith("amount:"))
                         else MG_PER_L_TO_NG_PER_ML for n in self.names])

    def data_in_csv_units(self) -> np.ndarray:
        return self.data * self.csv_scale()[None, :, None]

    def to_dict(self) -> dict:
        """Columns as in the CSV (``time_h``, ``<name>_ng_ml``, …) -> 1-D arrays (long form)."""
        from .io import result_columns

        cols, table = result_columns(self)
        out = {c: table[:, j] for j, c in enumerate(cols)}
        sid = out.get("subject")
        if sid is not None and np.all(np.abs(sid) < 2.0 ** 53) and np.all(sid == np.round(sid)):
            out["subject"] = sid.astype(np.int64)      # whole-number IDs as integers
        return out

    def to_dataframe(self):
        """A tidy pandas DataFrame (one row per subject and time). Needs pandas."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - depends on the environment
            raise ImportError("to_dataframe() needs pandas: pip install 'ketasim[dataframe]'") \
                from None
        # (the columns of to_dict() are the table's own, contiguous: no copy of them)
        return pd.DataFrame(self.to_dict(), copy=False)
