"""Models: linear compartment networks read from TOML model files or built in Python.

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
``[effects]``
    ``name = {of = "central", ke0 = "KE0"}`` — an effect site (mg/L) lagging a compartment.
``[observe]``
    ``alias = "compartment"`` or ``alias = ["a", "b"]`` (sum of concentrations).
``[occupancy]``
    ``ligands = [{name, site, ki_um, fu, mw_g_mol}, ...]`` — competitive NMDA-site binding.
``[glutamate]``
    Maps the schematic response's roles (``kout``, ``emax``, ``ec50``, ``hill``,
    ``plasticity_kin``, ``plasticity_kout``) to expressions; see :mod:`ketasim.pd`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from . import _expr
from .errors import KetasimInputError, check_name, suggest

__all__ = ["Model", "load_model", "list_presets", "Flow", "RoutePart", "Effect", "Ligand"]

OUT = "out"
MAX_RATE_PER_H = 1e6   # fastest first-order rate accepted (1/h); the solver is exact below it
GLUTAMATE_ROLES = ("kout", "emax", "ec50", "hill", "plasticity_kin", "plasticity_kout")
RESERVED = {"WT", "AMT", OUT}


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

    ``duration_h`` None means "the dose table's duration_h, else a bolus".
    """

    to: str
    f: _expr.Expr
    lag_h: _expr.Expr
    duration_h: _expr.Expr | None


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
class Model:
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

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, spec: dict, *, source: str = "", name: str | None = None) -> "Model":
        """Build a model from the same structure a TOML model file has."""
        return _build(spec, source or "<model>", name)

    @classmethod
    def from_toml(cls, path) -> "Model":
        path = Path(path)
        return _build(_read_toml(path.read_bytes(), str(path)), str(path), path.stem)

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
        return "\n".join(lines)

    # ------------------------------------------------------------------ numbers
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
                check_name(k, self.parameters, "params", self.source)
            arr = _finite_array(v, f"params[{k!r}]", n)
            vals[k] = arr
        wt = _finite_array(wt, "weight_kg", n)
        if np.any(wt <= 0):
            raise KetasimInputError(
                f"weight_kg: got {wt[wt <= 0][0]:g}, expected a body weight > 0 kg")
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
                    f"{v[v <= 0][0]:g} L, expected > 0 (write 0 for an amount-only compartment)")
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
                        f"{cl[cl < 0][0]:g} L/h, expected >= 0")
                with np.errstate(all="ignore"):
                    k = cl / vols[fl.source]
                what = f"cl / V = {fl.cl.text} / {self.compartments[fl.source].text}"
            if np.any(k < 0):
                raise KetasimInputError(
                    f"{self.source}: {where}: {what} evaluated to {k[k < 0][0]:g} 1/h, "
                    "expected >= 0")
            if not np.all(k <= MAX_RATE_PER_H):
                bad = k[~(k <= MAX_RATE_PER_H)][0]
                raise KetasimInputError(
                    f"{self.source}: {where}: {what} gives a rate of {bad:g} 1/h, expected at "
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
                    f"{bad:g} 1/h, expected > 0 and at most {MAX_RATE_PER_H:g}")
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

    def occupancy_weights(self, vals: dict) -> np.ndarray:
        """Weights w (N, S) so that ``sum_i w_i x_i`` = Σ unbound conc./Ki (dimensionless)."""
        n = vals["WT"].shape[0]
        idx = {s: i for i, s in enumerate(self.state_names)}
        vols = self.volumes(vals)
        w = np.zeros((n, len(idx)))
        for lg in self.ligands:
            where = f"occupancy ligand {lg.name}"
            ki = self.value(lg.ki_um, vals, f"{where}: ki_um")
            fu = self.value(lg.fu, vals, f"{where}: fu")
            mw = self.value(lg.mw_g_mol, vals, f"{where}: mw_g_mol")
            for fld, ex, v, ok, expected in (
                    ("ki_um", lg.ki_um, ki, ki > 0, "> 0 (µM)"),
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

    def glutamate_parameters(self, vals: dict) -> np.ndarray:
        """Schematic response parameters (N, 6) in the order of ``GLUTAMATE_ROLES``."""
        n = vals["WT"].shape[0]
        out = np.zeros((n, len(GLUTAMATE_ROLES)))
        for j, role in enumerate(GLUTAMATE_ROLES):
            v = self.value(self.glutamate[role], vals, f"glutamate.{role}")
            if np.any(v < 0):
                raise KetasimInputError(
                    f"{self.source}: glutamate.{role} evaluated to {v[v < 0][0]:g}, "
                    "expected >= 0")
            out[:, j] = v
        if np.any(out[:, GLUTAMATE_ROLES.index("ec50")] <= 0):
            raise KetasimInputError(f"{self.source}: glutamate.ec50 must be > 0")
        return out


# ---------------------------------------------------------------------- helpers
def _finite_array(v, field_name: str, n: int) -> np.ndarray:
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
            f"{source}: {what} evaluated to {float(v[bad][0])!r} (subject {int(np.argmax(bad))}); "
            "expected a finite number — check the parameters it uses")


def _read_toml(data: bytes, where: str) -> dict:
    if b"\x00" in data:
        raise KetasimInputError(f"{where}: this is a binary file, expected a TOML model file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KetasimInputError(
            f"{where}: not UTF-8 text (bad byte at offset {exc.start}); expected a TOML model "
            "file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KetasimInputError(f"{where}: TOML syntax error: {exc}") from None


_TOP = {"model", "parameters", "schematic", "weight", "derived", "compartments", "flows",
        "routes", "effects", "observe", "occupancy", "glutamate"}


def _table(spec, key, where, kind=dict):
    v = spec.get(key, kind())
    if not isinstance(v, kind):
        raise KetasimInputError(
            f"{where}: [{key}] must be a {'table' if kind is dict else 'list of tables'}, "
            f"got {type(v).__name__}")
    for k in (v if kind is dict else ()):
        if not isinstance(k, str):
            raise KetasimInputError(f"{where}: [{key}] {k!r}: expected a name (a string)")
    return v


def _keys(d: dict, allowed, where):
    for k in d:
        if k not in allowed:
            raise KetasimInputError(
                f"{where}: unknown key {k!r}{suggest(k, allowed)}; expected one of "
                + ", ".join(sorted(allowed)))


def _build(spec: dict, where: str, name: str | None) -> Model:
    if not isinstance(spec, dict):
        raise KetasimInputError(f"{where}: expected a table of sections, got {type(spec).__name__}")
    _keys(spec, _TOP, where)
    meta = dict(_table(spec, "model", where))
    name = str(meta.get("name", name or "model"))

    params: dict[str, float] = {}
    schematic = set()
    for sect in ("parameters", "schematic"):
        for k, v in _table(spec, sect, where).items():
            if not k.isidentifier() or k in RESERVED:
                raise KetasimInputError(
                    f"{where}: [{sect}] {k!r}: not allowed as a parameter name (use letters, "
                    f"digits and _; reserved: {', '.join(sorted(RESERVED))})")
            if k in params:
                raise KetasimInputError(f"{where}: parameter {k!r} is defined twice")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise KetasimInputError(
                    f"{where}: [{sect}] {k}: got {v!r}, expected a number (use [derived] for "
                    "expressions)")
            if not _is_finite(v):
                raise KetasimInputError(f"{where}: [{sect}] {k}: got {v!r}, expected a finite "
                                        "number")
            params[k] = float(v)
            if sect == "schematic":
                schematic.add(k)

    weight = _table(spec, "weight", where)
    _keys(weight, {"reference_kg", "allometric", "per_kg"}, f"{where}: [weight]")
    ref = weight.get("reference_kg", 70.0)
    if isinstance(ref, bool) or not isinstance(ref, (int, float)) or not (
            _is_finite(ref) and ref > 0):
        raise KetasimInputError(f"{where}: [weight] reference_kg: got {ref!r}, expected > 0")
    allo = weight.get("allometric", {})
    if not isinstance(allo, dict):
        raise KetasimInputError(f"{where}: [weight] allometric must be a table name = exponent")
    for k, e in allo.items():
        check_name(k, params, "[weight] allometric", where)
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not _is_finite(e):
            raise KetasimInputError(
                f"{where}: [weight] allometric.{k}: got {e!r}, expected an exponent (number)")
    per_kg = weight.get("per_kg", [])
    if not isinstance(per_kg, list):
        raise KetasimInputError(f"{where}: [weight] per_kg must be a list of parameter names")
    for k in per_kg:
        check_name(k, params, "[weight] per_kg", where)
        if k in allo:
            raise KetasimInputError(f"{where}: [weight] {k!r} is both allometric and per_kg")

    known = set(params) | {"WT"}
    derived = {}
    for k, v in _table(spec, "derived", where).items():
        if not k.isidentifier() or k in RESERVED or k in params:
            raise KetasimInputError(f"{where}: [derived] {k!r}: name clashes with a parameter "
                                    "or reserved name")
        ex = _expr.parse(v, f"[derived] {k}", where)
        _names(ex, known, f"[derived] {k}", where)
        derived[k] = ex
        known.add(k)

    def val(v, fld, extra=()):
        ex = _expr.parse(v, fld, where)
        _names(ex, known | set(extra), fld, where)
        return ex

    comps_spec = _table(spec, "compartments", where)
    if not comps_spec:
        raise KetasimInputError(f"{where}: [compartments] is empty; expected at least one "
                                "compartment, e.g. central = \"V1\"")
    comps = {}
    for c, v in comps_spec.items():
        if c in RESERVED or not c.isidentifier():
            raise KetasimInputError(f"{where}: [compartments] {c!r}: not a valid compartment "
                                    "name (letters, digits, _; 'out' is reserved)")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not _is_finite(v) or v < 0:
                raise KetasimInputError(
                    f"{where}: compartments.{c}: volume {v!r} L, expected > 0 or 0 "
                    "(amount-only)")
            comps[c] = None if v == 0 else val(v, f"compartments.{c}")
        else:
            comps[c] = val(v, f"compartments.{c}")

    flows = []
    for i, fl in enumerate(_table(spec, "flows", where, list)):
        w = f"{where}: flows[{i}]"
        if not isinstance(fl, dict):
            raise KetasimInputError(f"{w}: expected a table with from, to and k or cl")
        _keys(fl, {"from", "to", "k", "cl", "yield"}, w)
        for req in ("from", "to"):
            if req not in fl:
                raise KetasimInputError(f"{w}: missing '{req}'")
        src, dst = str(fl["from"]), str(fl["to"])
        check_name(src, comps, f"flows[{i}].from", where)
        check_name(dst, list(comps) + [OUT], f"flows[{i}].to", where)
        if src == dst:
            raise KetasimInputError(f"{w}: from and to are both {src!r}")
        if ("k" in fl) == ("cl" in fl):
            raise KetasimInputError(
                f"{w} ({src} -> {dst}): give exactly one of k (1/h) or cl (L/h), got "
                + ("both" if "k" in fl else "neither"))
        if "cl" in fl and comps[src] is None:
            raise KetasimInputError(
                f"{w} ({src} -> {dst}): cl needs a volume, but {src!r} is amount-only; "
                "use k (1/h)")
        if dst == OUT and "yield" in fl:
            raise KetasimInputError(f"{w}: yield applies to a flow into a compartment, not 'out'")
        flows.append(Flow(src, dst,
                          k=val(fl["k"], f"flows[{i}].k") if "k" in fl else None,
                          cl=val(fl["cl"], f"flows[{i}].cl") if "cl" in fl else None,
                          yield_=val(fl["yield"], f"flows[{i}].yield") if "yield" in fl else None))
        for key in ("k", "cl", "yield"):
            if isinstance(fl.get(key), (int, float)) and not isinstance(fl.get(key), bool) and (
                    not _is_finite(fl[key]) or fl[key] < 0):
                raise KetasimInputError(f"{w}: {key} = {fl[key]!r}, expected a finite number >= 0")

    effects = []
    eff_spec = _table(spec, "effects", where)
    for e, d in eff_spec.items():
        w = f"{where}: effects.{e}"
        if not isinstance(d, dict):
            raise KetasimInputError(f"{w}: expected {{of = \"central\", ke0 = ...}}")
        _keys(d, {"of", "ke0"}, w)
        if e in comps or not e.isidentifier() or e in RESERVED:
            raise KetasimInputError(f"{w}: name clashes with a compartment or is not valid")
        if "of" not in d or "ke0" not in d:
            raise KetasimInputError(f"{w}: needs 'of' (a compartment) and 'ke0' (1/h)")
        check_name(str(d["of"]), comps, f"effects.{e}.of", where)
        if comps[str(d["of"])] is None:
            raise KetasimInputError(f"{w}: 'of' = {d['of']!r} is amount-only; an effect site "
                                    "needs a compartment with a volume")
        effects.append(Effect(e, str(d["of"]), val(d["ke0"], f"effects.{e}.ke0")))
    conc_names = [c for c, v in comps.items() if v is not None] + [e.name for e in effects]

    routes = {}
    for r, d in _table(spec, "routes", where).items():
        w = f"{where}: routes.{r}"
        if not isinstance(d, dict):
            raise KetasimInputError(f"{w}: expected a table")
        parts_spec = d.get("parts")
        if parts_spec is None:
            parts_spec = [d]
        else:
            _keys(d, {"parts"}, w)
            if not isinstance(parts_spec, list) or not parts_spec:
                raise KetasimInputError(f"{w}: parts must be a non-empty list of tables")
        parts = []
        for j, p in enumerate(parts_spec):
            pw = f"routes.{r}" + (f".parts[{j}]" if "parts" in d else "")
            if not isinstance(p, dict):
                raise KetasimInputError(f"{where}: {pw}: expected a table")
            _keys(p, {"to", "f", "lag_h", "duration_h"}, f"{where}: {pw}")
            if "to" not in p:
                raise KetasimInputError(f"{where}: {pw}: missing 'to' (a compartment)")
            check_name(str(p["to"]), comps, f"{pw}.to", where)
            for key, lo, hi in (("f", 0, 1), ("lag_h", 0, None), ("duration_h", 0, None)):
                x = p.get(key)
                if isinstance(x, (int, float)) and not isinstance(x, bool) and (
                        not _is_finite(x) or x < lo or (hi is not None and x > hi)):
                    rng = "a fraction in [0, 1]" if hi else "a finite number >= 0 (hours)"
                    raise KetasimInputError(f"{where}: {pw}.{key}: got {x!r}, expected {rng}")
            parts.append(RoutePart(
                to=str(p["to"]),
                f=val(p.get("f", 1.0), f"{pw}.f", ("AMT",)),
                lag_h=val(p.get("lag_h", 0.0), f"{pw}.lag_h", ("AMT",)),
                duration_h=(val(p["duration_h"], f"{pw}.duration_h", ("AMT",))
                            if "duration_h" in p else None)))
        routes[r] = tuple(parts)

    observe = {}
    for a, v in _table(spec, "observe", where).items():
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
            raise KetasimInputError(f"{where}: observe.{a}: expected a compartment name or a "
                                    "list of names")
        if a in comps or a in [e.name for e in effects]:
            raise KetasimInputError(f"{where}: observe.{a}: alias clashes with a compartment")
        for x in items:
            check_name(x, conc_names, f"observe.{a}", where)
        observe[a] = tuple(items)

    occ = _table(spec, "occupancy", where)
    _keys(occ, {"ligands", "receptor"}, f"{where}: [occupancy]")
    ligands = []
    if not isinstance(occ.get("ligands", []), list):
        raise KetasimInputError(f"{where}: [occupancy] ligands must be a list of tables, got "
                                f"{type(occ['ligands']).__name__}")
    for j, lg in enumerate(occ.get("ligands", [])):
        w = f"occupancy.ligands[{j}]"
        if not isinstance(lg, dict):
            raise KetasimInputError(f"{where}: {w}: expected a table")
        _keys(lg, {"name", "site", "ki_um", "fu", "mw_g_mol"}, f"{where}: {w}")
        for req in ("site", "ki_um", "mw_g_mol"):
            if req not in lg:
                raise KetasimInputError(f"{where}: {w}: missing '{req}'")
        check_name(str(lg["site"]), conc_names, f"{w}.site", where)
        for key, ok, expected in (("ki_um", lambda x: x > 0, "> 0 (µM)"),
                                  ("mw_g_mol", lambda x: x > 0, "> 0 (g/mol)"),
                                  ("fu", lambda x: 0 <= x <= 1, "a fraction in [0, 1]")):
            x = lg.get(key)
            if isinstance(x, (int, float)) and not isinstance(x, bool) and not (
                    _is_finite(x) and ok(x)):
                raise KetasimInputError(f"{where}: {w}.{key}: got {x!r}, expected {expected}")
        ligands.append(Ligand(str(lg.get("name", lg["site"])), str(lg["site"]),
                              val(lg["ki_um"], f"{w}.ki_um"), val(lg.get("fu", 1.0), f"{w}.fu"),
                              val(lg["mw_g_mol"], f"{w}.mw_g_mol")))

    glu_spec = _table(spec, "glutamate", where)
    glutamate = {}
    if glu_spec:
        _keys(glu_spec, set(GLUTAMATE_ROLES), f"{where}: [glutamate]")
        if not ligands:
            raise KetasimInputError(f"{where}: [glutamate] needs [occupancy] ligands to drive it")
        for role in GLUTAMATE_ROLES:
            if role not in glu_spec:
                raise KetasimInputError(f"{where}: [glutamate] missing '{role}'")
            glutamate[role] = val(glu_spec[role], f"glutamate.{role}")

    return Model(name=name, parameters=params, compartments=comps, flows=tuple(flows),
                 routes=routes, effects=tuple(effects), observe=observe, ligands=tuple(ligands),
                 glutamate=glutamate, derived=derived, allometric=dict(allo),
                 per_kg=tuple(per_kg), reference_weight_kg=float(ref),
                 schematic=frozenset(schematic), meta=meta, source=where)


def _names(ex: _expr.Expr, known, fld, where):
    for nm in ex.names:
        if nm not in known:
            raise KetasimInputError(
                f"{where}: {fld}: unknown parameter {nm!r} in {ex.text!r}"
                f"{suggest(nm, known)}")


# ---------------------------------------------------------------------- presets
def list_presets() -> list[str]:
    """Names of the models shipped with ketasim."""
    files = resources.files("ketasim") / "presets"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_model(name_or_path) -> Model:
    """Load a preset by name (see :func:`list_presets`) or a TOML model file by path."""
    if isinstance(name_or_path, Model):
        return name_or_path
    s = str(name_or_path)
    p = Path(s)
    if p.suffix == ".toml" or p.exists() or "/" in s or "\\" in s:
        if not p.is_file():
            raise KetasimInputError(f"model: {s!r} is a folder, expected a TOML model file"
                                    if p.is_dir() else f"model: file {s!r} not found")
        return Model.from_toml(p)
    presets = list_presets()
    if s not in presets:
        raise KetasimInputError(
            f"model: {s!r} is neither a file nor a preset{suggest(s, presets)}; presets: "
            + ", ".join(presets))
    data = (resources.files("ketasim") / "presets" / f"{s}.toml").read_bytes()
    return _build(_read_toml(data, f"preset {s}"), f"preset {s}", s)
