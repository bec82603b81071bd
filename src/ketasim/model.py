"""Models: linear compartment networks (the math: resolve parameters, rate and observation
matrices, occupancy weights). Reading model files lives in :mod:`ketasim.modelfile`.

A model file (see ``docs`` in the README) has these sections; values are numbers, parameter names
or expressions (see :mod:`ketasim._expr`). Internal units: hours, litres, milligrams, mg/L.

``[model]``
    ``name``, ``title``, ``citation``, ``sampling`` (arterial/venous), ``description``, ``caveats``.
``[parameters]``
    ``NAME = number`` — typical values for a subject of ``[weight].reference_kg``.
``[schematic]``
    Parameters of the schematic glutamate/plasticity response (illustrative, not fitted to data).
``[weight]``
    ``reference_kg`` (default 70), ``allometric = {CL = 0.75, V1 = 1}`` (value × (WT/ref)^e) and
    ``per_kg = ["V1"]`` (value given per kg, × WT). Applied before ``[derived]``.
``[derived]``
    ``NAME = "expression"`` evaluated in order after weight scaling; may use ``WT``.
``[compartments]``
    ``name = volume`` (L); ``0`` marks an amount-only compartment (depot, gut).
``[[flows]]``
    ``from``, ``to`` (compartment or ``"out"``), exactly one of ``k`` (1/h) or ``cl`` (L/h, so
    k = cl / V_from; every rate at most ``MAX_RATE_PER_H`` = 1e6 1/h), optional ``yield`` (mass
    factor, e.g. a molecular-weight ratio).
``[routes.NAME]``
    Either ``to``, ``f``, ``lag_h``, ``duration_h`` for a single input, or ``parts = [{...}, ...]``
    to split one dose into several inputs. Route expressions may use ``AMT`` (the dose, mg).
    ``relative_f = true`` allows ``f`` above 1 (relative bioavailability).
``[effects]``
    ``name = {of = "central", ke0 = "KE0"}`` — an effect site (mg/L) lagging a compartment.
``[observe]``
    ``alias = "compartment"`` or ``alias = ["a", "b"]`` (sum of concentrations).
``[occupancy]``
    ``ligands = [{name, site, ki_um, fu, mw_g_mol}, ...]`` — competitive NMDA-site binding.
    Optional ``default`` and ``drive`` (calibration names) and ``[occupancy.calibrations.NAME]``
    tables ``"ligand name" = Ki expression (µM)``: one Ki per ligand per calibration (e.g.
    ``in-vitro`` and ``in-vivo``). ``default`` is the calibration reported as ``occupancy``;
    ``drive`` the one whose occupancy drives the schematic response, whatever calibration is
    selected (so the surge never silently depends on that choice).
``[[bands]]``
    ``name``, ``analyte`` (an observe alias or concentration name), ``lo_ng_ml``, ``hi_ng_ml``,
    ``source``: published concentration windows (effects, side effects) — see :class:`Band`.
``[glutamate]``
    Maps the SCHEMATIC response's roles to expressions: ``kout`` (1/h), ``emax``, ``ec50``
    (an occupancy, 0-1, of the ``drive`` calibration), ``hill``, ``plasticity_kin`` (1/h per
    unit of G - 1), ``plasticity_kout`` (1/h) and, optionally, ``consolidation_kin`` (1/h per
    unit of P) and ``consolidation_kout`` (1/h). With occ the drive occupancy, the glutamate
    signal G (baseline 1), the fast plasticity index P and the consolidated index Q start at
    1, 0, 0 and follow (integrated by the kernels in :mod:`ketasim._kernels`)::

        S     = emax occ^hill / (ec50^hill + occ^hill)
        dG/dt = kout (1 + S) - kout G
        dP/dt = plasticity_kin max(G - 1, 0) (1 - P) - plasticity_kout P
        dQ/dt = consolidation_kin P (1 - Q) - consolidation_kout Q
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import _expr
from ._memo import Derived, kept
from .errors import KetasimInputError, check_name, suggest, which_subject

__all__ = ["Model", "Flow", "RoutePart", "Effect", "Ligand", "Band"]


def __getattr__(name):
    # the file reader lives in modelfile.py; these names stay importable from here
    if name in ("load_model", "list_presets"):
        from . import modelfile
        return getattr(modelfile, name)
    raise AttributeError(name)

OUT = "out"
MIN_VOLUME_L = 1e-300  # smallest volume accepted: its reciprocal (a concentration) stays finite
MAX_RATE_PER_H = 1e6   # fastest first-order rate accepted (1/h); the solver is exact below it
# the schematic response's limits (Model.glutamate_parameters): its P and Q rates at most
# 100 1/h (about 500 times the presets'), the surge at most 1e6 times baseline, Hill <= 100
MAX_PD_RATE_PER_H = 100.0
MAX_PD_EMAX = 1e6
MAX_PD_HILL = 100.0
GLUTAMATE_ROLES = ("kout", "emax", "ec50", "hill", "plasticity_kin", "plasticity_kout",
                   "consolidation_kin", "consolidation_kout")
OPTIONAL_GLUTAMATE_ROLES = ("consolidation_kin", "consolidation_kout")   # default 0: absent
RESERVED = {"WT", "AMT", OUT}



def _copy_values(vals: dict) -> dict:
    """A copy of a dict of arrays (what a caller may write into)."""
    return {k: v.copy() for k, v in vals.items()}

#: Body weights (kg) outside this range are no person's: the heaviest person on record
#: weighed about 635 kg (Jon Brower Minnoch, 1978; Guinness World Records), the lightest
#: newborns known to survive about 0.25 kg (the University of Iowa's Tiniest Babies
#: Registry; a term newborn weighs about 3.5 kg). The presets (human models) run a weight
#: outside it as given, with a warning: most likely grams, pounds or tonnes were meant.
#: (A model file may be of any species: no warning.)
PLAUSIBLE_WEIGHT_KG = (0.2, 650.0)


def warn_implausible_weight(wt) -> None:
    """A :class:`~ketasim.errors.KetasimWarning` for body weights (kg) that no person has
    (:data:`PLAUSIBLE_WEIGHT_KG`), naming the first."""
    lo, hi = PLAUSIBLE_WEIGHT_KG
    wt = np.asarray(wt, dtype=float)
    odd = wt[(wt < lo) | (wt > hi)]
    if odd.size:
        from .errors import warn

        w = float(odd[0])
        # (how many, among weights that differ: a sweep's one weight is one per grid point)
        more = f"; {odd.size} of {wt.size} weights" if np.unique(wt).size > 1 else ""
        guess = " (grams or pounds?)" if w > hi else ""
        warn(f"weight_kg: {w:g} kg is {'more' if w > hi else 'less'} than any person weighs "
             f"(expected {lo:g} to {hi:g} kg{more}); run as given{guess}")


@dataclass(frozen=True)
class Flow:
    """A first-order flow ``source -> target`` (target ``"out"`` = elimination)."""

    source: str
    target: str
    k: _expr.Expr | None = None        # 1/h
    cl: _expr.Expr | None = None       # L/h
    yield_: _expr.Expr | None = None   # mass factor (dimensionless)


@dataclass(frozen=True)
class RoutePart:
    """One input of a route: ``f`` of the dose goes to ``to`` after ``lag_h``, over ``duration_h``.

    ``duration_h`` None means "the dose table's duration_h (or rate_mg_h), else a bolus".
    ``relative_f`` True allows ``f`` above 1 (relative bioavailability); otherwise ``f`` is a
    fraction and the parts of a route add up to at most 1.
    """

    to: str
    f: _expr.Expr
    lag_h: _expr.Expr
    duration_h: _expr.Expr | None
    relative_f: bool = False


@dataclass(frozen=True)
class Effect:
    """An effect site (state in mg/L) following the concentration in compartment ``of``."""

    name: str
    of: str
    ke0: _expr.Expr                    # 1/h


@dataclass(frozen=True)
class Ligand:
    """A ligand competing for the NMDA site: unbound concentration at ``site`` over ``ki_um``."""

    name: str
    site: str
    ki_um: _expr.Expr                  # µM
    fu: _expr.Expr                     # unbound fraction, 0-1
    mw_g_mol: _expr.Expr               # g/mol


@dataclass(frozen=True)
class Band:
    """A published plasma-concentration window (ng/mL) of ``analyte`` in which an effect or a
    side effect is reported, with its ``source``. ``hi_ng_ml`` may be ``inf`` (open above)."""

    name: str
    analyte: str                       # an observe alias (e.g. "plasma") or concentration name
    lo_ng_ml: float
    hi_ng_ml: float
    source: str


@dataclass(frozen=True)
class Model(Derived):
    """A linear compartment network with named parameters (frozen; vary with ``replace``).

    Build one with :func:`load_model` (preset name or TOML path) or :meth:`Model.from_dict`.
    """

    name: str
    parameters: dict
    compartments: dict                  # name -> volume Expr or None (amount-only)
    flows: tuple = ()
    routes: dict = field(default_factory=dict)   # name -> tuple[RoutePart]
    effects: tuple = ()
    observe: dict = field(default_factory=dict)  # alias -> tuple of names
    ligands: tuple = ()
    glutamate: dict = field(default_factory=dict)  # role -> Expr
    derived: dict = field(default_factory=dict)    # name -> Expr
    allometric: dict = field(default_factory=dict)  # name -> exponent
    per_kg: tuple = ()
    reference_weight_kg: float = 70.0
    schematic: frozenset = frozenset()
    meta: dict = field(default_factory=dict)
    source: str = ""
    # occupancy calibrations: name -> tuple of Ki expressions (µM), one per ligand, in order
    calibrations: dict = field(default_factory=dict)
    default_calibration: str = ""       # reported as "occupancy" (first calibration if empty)
    drive_calibration: str = ""         # drives the schematic response (default if empty)
    bands: tuple = ()                   # Band, ...
    variability: object = None          # ketasim.variability.Variability, or None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, spec: dict, *, source: str = "", name: str | None = None) -> "Model":
        """Build a model from the same structure a TOML model file has (see
        :mod:`ketasim.modelfile`, which owns the file format)."""
        from .modelfile import model_from_dict
        return model_from_dict(spec, source=source, name=name)

    @classmethod
    def from_toml(cls, path) -> "Model":
        """Read a TOML model file (see :mod:`ketasim.modelfile`)."""
        from .modelfile import read_model_file
        return read_model_file(path)

    # ------------------------------------------------------------------ structure
    @property
    def state_names(self) -> tuple:
        """Compartments in file order, then effect sites."""
        return tuple(self.compartments) + tuple(e.name for e in self.effects)

    @property
    def concentration_names(self) -> tuple:
        """Names whose concentration can be reported: compartments with a volume, observe
        aliases, effect sites (in that order)."""
        comps = tuple(c for c, v in self.compartments.items() if v is not None)
        return comps + tuple(self.observe) + tuple(e.name for e in self.effects)

    @property
    def has_occupancy(self) -> bool:
        return bool(self.ligands)

    @property
    def has_glutamate(self) -> bool:
        return bool(self.glutamate)

    def describe(self) -> str:
        m = self.meta
        lines = [f"{self.name}: {m.get('title', '')}".rstrip(": ")]
        if m.get("citation"):
            lines.append(f"  source: {m['citation']}")
        if m.get("sampling"):
            lines.append(f"  sampling: {m['sampling']}")
        if self.calibrations:
            default = self.resolve_calibration(None)
            drive = self.drive_calibration or default
            lines.append("  occupancy calibrations: " + ", ".join(
                c + (" (default)" if c == default else "") for c in self.calibrations)
                + (f"; the schematic response is driven by {drive}" if self.glutamate else ""))
        for b in self.bands:
            hi = "" if b.hi_ng_ml == float("inf") else f"-{b.hi_ng_ml:g}"
            lines.append(f"  band: {b.name} {b.lo_ng_ml:g}{hi} ng/mL {b.analyte}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ numbers
    def check_weight(self, wt) -> None:
        """Warn of body weights (kg) no person has (:func:`warn_implausible_weight`) when this
        is a preset, a human model; a model file may be of any species (not checked)."""
        if self.source.startswith("preset "):
            warn_implausible_weight(wt)

    def resolve(self, params: dict | None = None, weight_kg=70.0, n: int | None = None) -> dict:
        """Evaluate every parameter and derived value for ``n`` subjects.

        Parameters
        ----------
        params : dict, optional
            Parameter name -> scalar or array of length N (typical values at the reference
            weight; weight scaling is applied afterwards).
        weight_kg : float or array (N,)
            Body weight in kg.

        Returns
        -------
        dict of name -> float64 array (N,), including ``WT``.
        """
        if params is not None and not isinstance(params, Mapping):
            raise KetasimInputError(f"params: got {type(params).__name__}, expected a dict of "
                                    "parameter name -> value (or array of values)")
        if not params and n in (None, 1) and type(weight_kg) in (int, float):
            # the typical subject at a scalar weight: kept with the model, keyed by everything
            # the values depend on (dict contents included, so an edited dict is seen)
            return kept(self, "resolve",
                        lambda: (float(weight_kg), tuple(self.parameters.items()),
                                 tuple(self.derived.items()), tuple(self.allometric.items()),
                                 tuple(self.per_kg), self.reference_weight_kg),
                        lambda: self._resolve_values(params, weight_kg, n), _copy_values)
        return self._resolve_values(params, weight_kg, n)

    def _resolve_values(self, params, weight_kg, n) -> dict:
        """:meth:`resolve` itself (``params`` already checked to be a mapping or None)."""
        params = dict(params or {})
        sizes = {k: np.size(v) for k, v in params.items() if np.ndim(v) > 0}
        try:
            wt = np.asarray(weight_kg, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise KetasimInputError(f"weight_kg: got {weight_kg!r}, expected a body weight in kg "
                                    "(a number, or an array with one per subject)") from None
        if wt.ndim > 0:
            sizes["weight_kg"] = wt.size
        lens = set(sizes.values())
        if len(lens) > 1:
            raise KetasimInputError(
                "params: arrays must all have the same length N (one value per subject); got "
                + ", ".join(f"{k}: {v}" for k, v in sizes.items()))
        if n is None:
            n = lens.pop() if lens else 1
        if n < 1:
            raise KetasimInputError("params: arrays are empty; expected at least one subject")
        vals = {k: np.full(n, float(v)) for k, v in self.parameters.items()}
        for k, v in params.items():
            if k not in self.parameters:
                if k in self.derived:
                    raise KetasimInputError(
                        f"params: {k!r} is derived ({self.derived[k].text}); set its inputs")
                if k in ("WT", "weight_kg"):       # (not a parameter: the weight argument)
                    raise KetasimInputError(
                        f"params: {k!r} is the body weight; give it as weight_kg= (--weight), "
                        "a number or one per subject")
                check_name(k, self.parameters, "params", self.source)
            arr = _finite_array(v, f"params[{k!r}]", n)
            vals[k] = arr
        wt = _finite_array(wt, "weight_kg", n)
        if np.any(wt <= 0):
            raise KetasimInputError(
                f"weight_kg: got {wt[wt <= 0][0]:g}{which_subject(wt <= 0)}, expected a body "
                "weight > 0 kg")
        self.check_weight(wt)
        with np.errstate(all="ignore"):
            for k, e in self.allometric.items():
                vals[k] = vals[k] * (wt / self.reference_weight_kg) ** e
            for k in self.per_kg:
                vals[k] = vals[k] * wt
        for k in (*self.allometric, *self.per_kg):
            _check_values(vals[k], f"{k} scaled to weight_kg", self.source)
        vals["WT"] = wt
        for k, ex in self.derived.items():
            vals[k] = np.broadcast_to(ex.evaluate(vals), (n,)).astype(np.float64)
            _check_values(vals[k], f"derived {k} = {ex.text}", self.source)
        return vals

    def value(self, ex: _expr.Expr, vals: dict, what: str) -> np.ndarray:
        n = vals["WT"].shape[0]
        out = np.broadcast_to(ex.evaluate(vals), (n,)).astype(np.float64)
        _check_values(out, f"{what} = {ex.text}", self.source)
        return out

    def _from(self, ex: _expr.Expr, vals: dict, bad) -> str:
        """`` (from CL = -1)``: the model parameters an expression reads through [derived],
        with their values for the first subject in ``bad``; empty when the expression is one
        parameter, named already."""
        if ex.text.strip() in self.parameters:
            return ""
        i = int(np.argmax(bad)) if np.ndim(bad) else 0
        seen, base, todo = set(), [], sorted(ex.names)
        while todo:
            k = todo.pop(0)
            if k in seen:
                continue
            seen.add(k)
            if k in self.derived:
                todo.extend(sorted(self.derived[k].names))
            elif k in self.parameters and k in vals:
                base.append(k)
        if not base:
            return ""
        return " (from " + ", ".join(
            f"{k} = {float(np.ravel(vals[k])[min(i, np.size(vals[k]) - 1)]):g}"
            for k in sorted(base)) + ")"

    def volumes(self, vals: dict) -> dict:
        """Compartment name -> volume array (N,) in L, or None for amount-only."""
        out = {}
        for c, ex in self.compartments.items():
            if ex is None:
                out[c] = None
                continue
            v = self.value(ex, vals, f"compartments.{c} (volume, L)")
            if np.any(v <= 0):
                raise KetasimInputError(
                    f"{self.source}: compartments.{c}: volume {ex.text} evaluated to "
                    f"{v[v <= 0][0]:g} L{which_subject(v <= 0)}{self._from(ex, vals, v <= 0)}"
                    ", expected > 0 (write 0 for an amount-only compartment)")
            if np.any(v < MIN_VOLUME_L):      # 1/V would overflow: not a volume in litres
                raise KetasimInputError(
                    f"{self.source}: compartments.{c}: volume {ex.text} evaluated to "
                    f"{v[v < MIN_VOLUME_L][0]:g} L{which_subject(v < MIN_VOLUME_L)}, expected "
                    f"at least {MIN_VOLUME_L:g} L "
                    "(check the units)")
            out[c] = v
        return out

    def matrices(self, vals: dict, sink: bool = False) -> np.ndarray:
        """Rate matrices ``K`` of shape (N, S, S) with ``dA/dt = K A + u`` (1/h).

        States are :attr:`state_names`, plus a final ``eliminated`` sink when ``sink``.
        """
        n = vals["WT"].shape[0]
        names = self.state_names
        idx = {s: i for i, s in enumerate(names)}
        ns = len(names) + (1 if sink else 0)
        K = np.zeros((n, ns, ns))
        vols = self.volumes(vals)
        for fl in self.flows:
            where = f"flow {fl.source} -> {fl.target}"
            if fl.k is not None:
                k = self.value(fl.k, vals, f"{where}: k (1/h)")
                what = f"k = {fl.k.text}"
            else:
                cl = self.value(fl.cl, vals, f"{where}: cl (L/h)")
                if np.any(cl < 0):
                    raise KetasimInputError(
                        f"{self.source}: {where}: cl = {fl.cl.text} evaluated to "
                        f"{cl[cl < 0][0]:g} L/h{which_subject(cl < 0)}"
                        f"{self._from(fl.cl, vals, cl < 0)}, expected >= 0")
                with np.errstate(all="ignore"):
                    k = cl / vols[fl.source]
                what = f"cl / V = {fl.cl.text} / {self.compartments[fl.source].text}"
            if np.any(k < 0):
                raise KetasimInputError(
                    f"{self.source}: {where}: {what} evaluated to {k[k < 0][0]:g} 1/h"
                    f"{which_subject(k < 0)}"
                    f"{self._from(fl.k, vals, k < 0) if fl.k is not None else ''}, expected >= 0")
            if not np.all(k <= MAX_RATE_PER_H):
                bad = k[~(k <= MAX_RATE_PER_H)][0]
                raise KetasimInputError(
                    f"{self.source}: {where}: {what} gives a rate of {bad:g} 1/h"
                    f"{which_subject(~(k <= MAX_RATE_PER_H))}, expected at "
                    f"most {MAX_RATE_PER_H:g} 1/h (a half-life of 2.5 ms): check the units, "
                    "or merge the compartments")
            i = idx[fl.source]
            K[:, i, i] -= k
            if fl.target == OUT:
                if sink:
                    K[:, ns - 1, i] += k
            else:
                y = self.value(fl.yield_, vals, f"{where}: yield") if fl.yield_ else 1.0
                if np.any(np.asarray(y) < 0):
                    raise KetasimInputError(
                        f"{self.source}: {where}: yield = {fl.yield_.text} evaluated to "
                        f"{np.asarray(y)[np.asarray(y) < 0][0]:g}, expected >= 0")
                K[:, idx[fl.target], i] += y * k
        for ef in self.effects:
            ke0 = self.value(ef.ke0, vals, f"effects.{ef.name}: ke0 (1/h)")
            if not np.all((ke0 > 0) & (ke0 <= MAX_RATE_PER_H)):
                bad = ke0[~((ke0 > 0) & (ke0 <= MAX_RATE_PER_H))][0]
                raise KetasimInputError(
                    f"{self.source}: effects.{ef.name}: ke0 = {ef.ke0.text} evaluated to "
                    f"{bad:g} 1/h{which_subject(~((ke0 > 0) & (ke0 <= MAX_RATE_PER_H)))}, "
                    f"expected > 0 and at most {MAX_RATE_PER_H:g}")
            e, c = idx[ef.name], idx[ef.of]
            K[:, e, c] += ke0 / vols[ef.of]
            K[:, e, e] -= ke0
        return K

    def observation(self, vals: dict, names, sink: bool = False) -> np.ndarray:
        """Matrix (N, len(names), S): concentration (mg/L) of each name as a combination of
        states. A name ``"amount:X"`` gives the amount (mg) in state X (or ``eliminated``)."""
        n = vals["WT"].shape[0]
        states = self.state_names + (("eliminated",) if sink else ())
        idx = {s: i for i, s in enumerate(states)}
        vols = self.volumes(vals)
        C = np.zeros((n, len(names), len(states)))

        def add_conc(row, nm):
            if nm in self.compartments:
                C[:, row, idx[nm]] += 1.0 / vols[nm]
            else:  # effect site: state is a concentration already
                C[:, row, idx[nm]] += 1.0

        for r, nm in enumerate(names):
            if nm.startswith("amount:"):
                amount_states = list(self.compartments) + (["eliminated"] if sink else [])
                C[:, r, idx[check_name(nm[7:], amount_states, "outputs (amount)")]] = 1.0
            elif nm in self.observe:
                for part in self.observe[nm]:
                    add_conc(r, part)
            else:
                check_name(nm, self.concentration_names, "outputs")
                add_conc(r, nm)
        return C

    @property
    def calibration_names(self) -> tuple:
        """Names of the occupancy calibrations (empty when the ligands carry one Ki each)."""
        return tuple(self.calibrations)

    def resolve_calibration(self, calibration: str | None) -> str | None:
        """The calibration name to use (``None`` = the default), checked."""
        if not self.calibrations:
            if calibration is None:
                return None
            raise KetasimInputError(
                f"occupancy_calibration: model {self.name!r} has no occupancy calibrations "
                f"(got {calibration!r}); leave it unset")
        if calibration is None:
            return self.default_calibration or next(iter(self.calibrations))
        if not isinstance(calibration, str) or calibration not in self.calibrations:
            names = ", ".join(self.calibrations)
            raise KetasimInputError(
                f"occupancy_calibration: unknown calibration {calibration!r} for model "
                f"{self.name!r}{suggest(str(calibration), self.calibrations)}; expected one of "
                f"{names}")
        return calibration

    def occupancy_weights(self, vals: dict, calibration: str | None = None) -> np.ndarray:
        """Weights w (N, S) so that ``sum_i w_i x_i`` = Σ unbound conc./Ki (dimensionless).

        ``calibration`` names the Ki set (see :attr:`calibration_names`); ``None`` = the
        model's default calibration, or the ligands' own ``ki_um`` when it has none."""
        cal = self.resolve_calibration(calibration)
        n = vals["WT"].shape[0]
        idx = {s: i for i, s in enumerate(self.state_names)}
        vols = self.volumes(vals)
        w = np.zeros((n, len(idx)))
        for j, lg in enumerate(self.ligands):
            where = f"occupancy ligand {lg.name}"
            ki_ex = lg.ki_um if cal is None else self.calibrations[cal][j]
            what = "ki_um" if cal is None else f"ki_um ({cal} calibration)"
            ki = self.value(ki_ex, vals, f"{where}: {what}")
            fu = self.value(lg.fu, vals, f"{where}: fu")
            mw = self.value(lg.mw_g_mol, vals, f"{where}: mw_g_mol")
            for fld, ex, v, ok, expected in (
                    (what, ki_ex, ki, ki > 0, "> 0 (µM)"),
                    ("mw_g_mol", lg.mw_g_mol, mw, mw > 0, "> 0 (g/mol)"),
                    ("fu", lg.fu, fu, (fu >= 0) & (fu <= 1), "a fraction in [0, 1]")):
                if not np.all(ok):
                    raise KetasimInputError(
                        f"{self.source}: {where}: {fld} = {ex.text} evaluated to "
                        f"{v[~ok][0]:g}, expected {expected}")
            scale = fu * 1000.0 / (mw * ki)  # mg/L -> µM unbound, over Ki
            if lg.site in self.compartments:
                scale = scale / vols[lg.site]
            w[:, idx[lg.site]] += scale
        return w

    def occupancy_weight_sets(self, vals: dict, calibration: str | None = None) -> dict:
        """Occupancy outputs and their weights: output name -> (N, S) weights ``w`` such that
        ``sum_i w_i x_i`` = Σ unbound conc./Ki, and occupancy = that sum / (1 + that sum).

        Keys
        ----
        ``"occupancy"``
            The selected calibration (``None`` = the model's default).
        ``"occupancy_low"``, ``"occupancy_high"``
            Present when the model has two or more calibrations: the element-wise minimum and
            maximum of the weights over all calibrations. Occupancy rises with every weight, so
            these bound the occupancy of every calibration at every instant; when one
            calibration has every Ki at or below another's (the usual case: in-vitro Ki below
            in-vivo half-occupancy concentrations), the bounds *are* those two calibrations.
        ``"drive"``
            The weights whose occupancy drives the schematic glutamate response: always the
            model's ``drive`` calibration (default: its default calibration), whatever
            ``calibration`` is selected, so that the same concentrations give the same surge.
        """
        cal = self.resolve_calibration(calibration)
        if cal is None:
            w = self.occupancy_weights(vals)
            return {"occupancy": w, "drive": w}
        sets = {c: self.occupancy_weights(vals, c) for c in self.calibrations}
        out = {"occupancy": sets[cal]}
        if len(sets) > 1:
            stack = np.stack(list(sets.values()))
            out["occupancy_low"] = stack.min(axis=0)
            out["occupancy_high"] = stack.max(axis=0)
        out["drive"] = sets[self.drive_calibration or self.resolve_calibration(None)]
        return out

    @property
    def has_consolidation(self) -> bool:
        """True when the schematic response has a slow consolidated plasticity index."""
        return "consolidation_kin" in self.glutamate

    def glutamate_parameters(self, vals: dict) -> np.ndarray:
        """Schematic response parameters (N, 8) in the order of ``GLUTAMATE_ROLES`` (optional
        roles that the model leaves out are 0)."""
        n = vals["WT"].shape[0]
        out = np.zeros((n, len(GLUTAMATE_ROLES)))
        for j, role in enumerate(GLUTAMATE_ROLES):
            if role not in self.glutamate:      # an optional role left out
                continue
            v = self.value(self.glutamate[role], vals, f"glutamate.{role}")
            if np.any(v < 0):
                raise KetasimInputError(
                    f"{self.source}: glutamate.{role} evaluated to {v[v < 0][0]:g}, "
                    "expected >= 0")
            out[:, j] = v
        if np.any(out[:, GLUTAMATE_ROLES.index("ec50")] <= 0):
            raise KetasimInputError(f"{self.source}: glutamate.ec50 must be > 0")
        col = {r: out[:, j] for j, r in enumerate(GLUTAMATE_ROLES)}
        # the schematic integrator's range (its steps are explicit for P and Q): beyond these
        # rates its results had been NaN, or its steps had shrunk without end
        checks = (("kout", col["kout"], MAX_RATE_PER_H, "1/h"),
                  ("emax", col["emax"], MAX_PD_EMAX, ""),
                  ("hill", col["hill"], MAX_PD_HILL, ""),
                  ("plasticity_kin x (1 + emax) + plasticity_kout",
                   col["plasticity_kin"] * (1.0 + col["emax"]) + col["plasticity_kout"],
                   MAX_PD_RATE_PER_H, "1/h"),
                  ("consolidation_kin + consolidation_kout",
                   col["consolidation_kin"] + col["consolidation_kout"], MAX_PD_RATE_PER_H,
                   "1/h"))
        for what, v, hi, unit in checks:
            bad = ~(v <= hi)
            if np.any(bad):
                raise KetasimInputError(
                    f"{self.source}: glutamate.{what} evaluated to {v[bad][0]:.6g}"
                    f"{' ' + unit if unit else ''}{which_subject(bad)}, expected at most "
                    f"{hi:g} (the schematic response's range; its parameters are illustrative)")
        return out


# ---------------------------------------------------------------------- helpers
def _finite_array(v, field_name: str, n: int) -> np.ndarray:
    if isinstance(v, (bool, np.bool_)) or (isinstance(v, np.ndarray) and v.dtype == bool) or (
            isinstance(v, (list, tuple)) and any(isinstance(x, (bool, np.bool_)) for x in v)):
        raise KetasimInputError(f"{field_name}: got {v!r}, expected numbers (not True/False)")
    if v is None or isinstance(v, (str, bytes)) or (
            isinstance(v, np.ndarray) and v.dtype.kind in "OUSV") or (
            isinstance(v, (list, tuple)) and any(x is None or isinstance(x, (str, bytes))
                                                 for x in v)):
        raise KetasimInputError(f"{field_name}: got {v!r}, expected numbers (not text or None)")
    _no_number_inside(v, field_name)
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise KetasimInputError(f"{field_name}: got {v!r}, expected numbers") from None
    if arr.ndim > 1:
        raise KetasimInputError(f"{field_name}: expected a scalar or a 1-D array, got shape "
                                f"{arr.shape}")
    arr = np.broadcast_to(arr, (n,)).astype(np.float64) if arr.ndim == 0 else arr.copy()
    if arr.shape != (n,):
        raise KetasimInputError(f"{field_name}: expected length {n}, got {arr.shape[0]}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise KetasimInputError(
            f"{field_name}: got {float(arr[bad][0])!r} at index {int(np.argmax(bad))}, "
            "expected finite numbers")
    return arr


def _no_number_inside(v, field_name: str) -> None:
    """Refuse what NumPy would turn into numbers though it holds none: dates and durations
    (a date is read as days since 1970), and, inside an array-like that is not a list (a
    pandas Series, say), True/False or text ('90' had been read as 90, True as 1); and masked
    values, which NumPy drops the mask of."""
    import datetime

    if isinstance(v, np.ma.MaskedArray) and np.ma.getmaskarray(v).any():
        raise KetasimInputError(f"{field_name}: got {v!r} with masked values, expected numbers "
                                "(fill them, or leave those subjects out)")
    try:
        raw = np.asarray(v)
    except (TypeError, ValueError):
        return                                   # (refused by the conversion after this)
    kind = raw.dtype.kind
    dates = (np.datetime64, np.timedelta64, datetime.date, datetime.time, datetime.timedelta)
    items = raw.ravel().tolist() if kind == "O" else ()
    if kind in "mM" or any(isinstance(x, dates) for x in items):
        raise KetasimInputError(f"{field_name}: got {v!r}, expected numbers (not dates or "
                                "durations)")
    if kind == "b" or any(isinstance(x, (bool, np.bool_)) for x in items):
        raise KetasimInputError(f"{field_name}: got {v!r}, expected numbers (not True/False)")
    if kind in "USV" or any(isinstance(x, (str, bytes)) for x in items):
        raise KetasimInputError(f"{field_name}: got {v!r}, expected numbers (not text or None)")


def _is_finite(x) -> bool:
    """A finite number (also False for integers too large for a float)."""
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _check_values(v: np.ndarray, what: str, source: str) -> None:
    bad = ~np.isfinite(v)
    if bad.any():
        raise KetasimInputError(
            f"{source}: {what} evaluated to {float(v[bad][0])!r}{which_subject(bad)}; "
            "expected a finite number — check the parameters it uses")


