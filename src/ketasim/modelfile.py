"""Model files: TOML (or the same structure as a dict) -> :class:`~ketasim.model.Model`.

The format is documented in :mod:`ketasim.model` and the README; one parser function per
section keeps a new section a local change.
"""

from __future__ import annotations

import codecs
import math
import os
import re
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np

from . import _expr
from .errors import KetasimInputError, check_input_file, check_name, suggest, where_gone
from .model import (
    GLUTAMATE_ROLES,
    OPTIONAL_GLUTAMATE_ROLES,
    OUT,
    RESERVED,
    Band,
    Effect,
    Flow,
    Ligand,
    Model,
    RoutePart,
    _is_finite,
)

__all__ = ["read_model_file", "model_from_dict", "load_model", "list_presets", "MAX_STATES",
           "MAX_MODEL_BYTES", "RESERVED_NAMES"]

# ---------------------------------------------------------------------- limits and names
MAX_STATES = 200            # compartments + effect sites: K is states x states per subject
MAX_MODEL_BYTES = 1_000_000  # a model file; the shipped ones are under 20 kB
MAX_FLOWS = 10_000
MAX_ENTRIES = 1_000         # routes, parts of one route, observe aliases, ligands
MAX_PARAMETERS = 10_000     # [parameters] + [schematic] + [derived]
MAX_NAME_CHARS = 100
MIN_VOLUME_L = 1e-300       # below it 1/V overflows a float
NAME_RULE = "an ASCII identifier: a letter or _, then letters, digits or _ ([A-Za-z_][A-Za-z0-9_]*)"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ROUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# names of result columns and built-ins: a compartment, alias, effect site or parameter with
# one of these names would be confused with them (compared exactly, no case folding)
RESERVED_OUTPUTS = frozenset({"occupancy", "occupancy_low", "occupancy_high", "glutamate",
                              "plasticity", "consolidation", "time_h", "subject", "eliminated",
                              # the body weight's name in dose tables, sweeps and populations
                              "weight_kg"})
RESERVED_NAMES = frozenset(RESERVED) | RESERVED_OUTPUTS


def _check_ident(name, what: str, where: str, pattern=_NAME, rule: str = NAME_RULE) -> str:
    """A name that becomes a column, a key or an expression symbol: ASCII identifier, not
    reserved. Non-ASCII look-alikes (full-width letters, ...) are refused, never normalised."""
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS \
            or not pattern.fullmatch(name):
        too_long = isinstance(name, str) and len(name) > MAX_NAME_CHARS
        shown = repr(name[:40]) + "..." if too_long else repr(name)
        extra = f" of at most {MAX_NAME_CHARS} characters" if too_long else ""
        raise KetasimInputError(f"{where}: {what} {shown}: not allowed as a name; expected "
                                f"{rule}{extra}")
    if name in RESERVED_NAMES:
        raise KetasimInputError(
            f"{where}: {what} {name!r}: the name is reserved (outputs and built-ins: "
            f"{', '.join(sorted(RESERVED_NAMES))}); choose another name")
    return name


def _limit(n: int, limit: int, what: str, where: str, hint: str) -> None:
    if n > limit:
        raise KetasimInputError(f"{where}: {n:,} {what}; at most {limit:,} are supported "
                                f"({hint})")


def model_from_dict(spec: dict, *, source: str = "", name: str | None = None) -> Model:
    """Build a model from the same structure a TOML model file has (NumPy numbers are taken
    as the Python numbers they hold)."""
    return _build(_plain(spec), source or "<model>", name)


def _plain(v, depth: int = 0):
    """``v`` with NumPy scalars (``np.float32(50)``, ``np.int64(1)``, ``np.str_``) inside its
    dicts, lists and tuples as Python's, as a TOML file would give them; anything else, and
    anything nested deeper than a model file goes, as it is (the checks name it)."""
    if isinstance(v, np.generic):
        return v.item()
    if depth > 16:
        return v
    if type(v) is dict:
        return {_plain(k, depth + 1): _plain(x, depth + 1) for k, x in v.items()}
    if type(v) in (list, tuple):
        return type(v)(_plain(x, depth + 1) for x in v)
    return v


def read_model_file(path) -> Model:
    """Read a TOML model file (UTF-8, with or without a byte-order mark; UTF-16 or UTF-32 with
    one), at most ``MAX_MODEL_BYTES`` bytes."""
    path = Path(path)
    check_input_file("model", str(path), path, "a TOML model file")   # (not an OSError)
    return _build(_read_toml(_model_bytes(path), str(path)), str(path), path.stem)


def _model_bytes(path) -> bytes:
    """A model file's bytes, at most ``MAX_MODEL_BYTES``."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_MODEL_BYTES + 1)
    if len(data) > MAX_MODEL_BYTES:
        raise KetasimInputError(
            f"{path}: model file larger than {MAX_MODEL_BYTES:,} bytes (the limit for a model "
            "file); expected a TOML model file")
    return data


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
         (codecs.BOM_UTF8, "utf-8", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
         (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"))


def decode_text(data: bytes, where: str, expected: str) -> str:
    """Text of a file: UTF-8 (a byte-order mark is skipped), or UTF-16/UTF-32 marked by one.

    Anything else is a one-line error naming what the bytes look like."""
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(codec)
            except UnicodeDecodeError as exc:
                raise KetasimInputError(
                    f"{where}: starts with a {label} byte-order mark but is not valid {label} "
                    f"text (bad bytes at offset {exc.start + len(bom)}); expected {expected}, "
                    "best saved as UTF-8") from None
    if b"\x00" in data:
        half = data[: 4096 - 4096 % 2]
        if half and (half[1::2].count(0) >= 0.9 * len(half) // 2
                     or half[0::2].count(0) >= 0.9 * len(half) // 2):
            raise KetasimInputError(f"{where}: looks like UTF-16 text without a byte-order mark; "
                                    f"save it as UTF-8 (expected {expected})")
        raise KetasimInputError(f"{where}: this is a binary file, expected {expected}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KetasimInputError(
            f"{where}: not UTF-8 text (bad byte at offset {exc.start}); expected {expected}"
        ) from None


def _read_toml(data: bytes, where: str) -> dict:
    text = decode_text(data, where, "a TOML model file")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise KetasimInputError(f"{where}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise KetasimInputError(f"{where}: arrays or tables nested too deeply; expected a TOML "
                                "model file") from None


_TOP = {"model", "parameters", "schematic", "weight", "derived", "compartments", "flows",
        "routes", "effects", "observe", "occupancy", "glutamate", "bands",
        "variability"}


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


# [model]: the name and the texts shown with a model (``drug`` and ``labels`` name what the
# figures say; see ketasim.plotting)
MODEL_KEYS = ("name", "title", "citation", "sampling", "description", "dose_note", "caveats",
              "drug", "labels")


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
    _keys(meta, MODEL_KEYS, f"{where}: [model]")      # a misspelt key would be lost silently
    # (drawn and printed as text: a number or a list had been an internal error in the
    # figures, or drawn as it was written)
    _require_text(meta, [k for k in MODEL_KEYS if k not in ("name", "labels")],
                  f"{where}: [model] ", blank=True)
    labels = meta.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise KetasimInputError(f"{where}: [model] labels: got {labels!r}, expected a table of "
                                "analyte = \"name in figures\", e.g. labels = { plasma = "
                                "\"ketamine\" }")
    name = meta.get("name", name or "model")
    if not isinstance(name, str) or not name.strip():
        # (it titles figures, names the model in messages and heads compare's columns)
        raise KetasimInputError(f"{where}: [model] name: got {name!r}, expected a name (text "
                                "that is not blank)")

    params: dict[str, float] = {}
    schematic = set()
    for sect in ("parameters", "schematic"):
        for k, v in _table(spec, sect, where).items():
            _check_ident(k, f"[{sect}] parameter", where)
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

    n_derived = len(spec["derived"]) if isinstance(spec.get("derived"), dict) else 0
    _limit(len(params) + n_derived, MAX_PARAMETERS, "parameters", where, "merge parameters")
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
    for i, k in enumerate(per_kg):
        check_name(k, params, "[weight] per_kg", where)
        if k in per_kg[:i]:      # (it had been multiplied by the weight once per listing)
            raise KetasimInputError(f"{where}: [weight] per_kg: {k!r} is listed twice (each "
                                    "listing multiplies it by the weight); expected each name "
                                    "once")
        if k in allo:
            raise KetasimInputError(f"{where}: [weight] {k!r} is both allometric and per_kg")

    known = set(params) | {"WT"}
    derived = {}
    dtable = _table(spec, "derived", where)
    for k, v in dtable.items():
        _check_ident(k, "[derived]", where)
        if k in params:
            raise KetasimInputError(f"{where}: [derived] {k!r}: name clashes with a parameter; "
                                    "expected a new name")
        ex = _expr.parse(v, f"[derived] {k}", where)
        _constant(ex, f"[derived] {k}", where)
        for nm in ex.names:
            if nm not in known and nm in dtable:
                raise KetasimInputError(
                    f"{where}: [derived] {k}: {ex.text!r} uses {nm!r}, which [derived] "
                    f"defines {'as itself' if nm == k else 'after it'}; expected each value "
                    "defined from parameters and the values above it (no cycles)")
        _names(ex, known, f"[derived] {k}", where)
        derived[k] = ex
        known.add(k)

    def val(v, fld, extra=(), lo=0.0, hi=None, what="a finite number >= 0"):
        ex = _expr.parse(v, fld, where)
        _names(ex, known | set(extra), fld, where)
        if isinstance(v, str):      # plain numbers have their own checks, where they are read
            _constant(ex, fld, where, lo, hi, what)
        return ex

    comps_spec = _table(spec, "compartments", where)
    if not comps_spec:
        raise KetasimInputError(f"{where}: [compartments] is empty; expected at least one "
                                "compartment, e.g. central = \"V1\"")
    n_effects = len(spec["effects"]) if isinstance(spec.get("effects"), dict) else 0
    _limit(len(comps_spec) + n_effects, MAX_STATES, "compartments and effect sites", where,
           "merge compartments, or split the model")
    comps = {}
    for c, v in comps_spec.items():
        _check_ident(c, "[compartments]", where)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not _is_finite(v) or v < 0:
                raise KetasimInputError(
                    f"{where}: compartments.{c}: volume {v!r} L, expected > 0 or 0 "
                    "(amount-only)")
            if 0 < v < MIN_VOLUME_L:
                raise KetasimInputError(
                    f"{where}: compartments.{c}: volume {v!r} L is too small (1/V overflows); "
                    f"expected >= {MIN_VOLUME_L:g} L, or 0 (amount-only)")
            comps[c] = None if v == 0 else val(v, f"compartments.{c}")
        else:
            comps[c] = val(v, f"compartments.{c}", lo=MIN_VOLUME_L,
                           what=f"a volume >= {MIN_VOLUME_L:g} L")

    flows = []
    flows_spec = _table(spec, "flows", where, list)
    _limit(len(flows_spec), MAX_FLOWS, "flows", where, "merge parallel flows")
    for i, fl in enumerate(flows_spec):
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
        _check_ident(e, "[effects] effect site", where)
        if e in comps:
            raise KetasimInputError(f"{w}: name clashes with a compartment; expected a new name")
        if "of" not in d or "ke0" not in d:
            raise KetasimInputError(f"{w}: needs 'of' (a compartment) and 'ke0' (1/h)")
        check_name(str(d["of"]), comps, f"effects.{e}.of", where)
        if comps[str(d["of"])] is None:
            raise KetasimInputError(f"{w}: 'of' = {d['of']!r} is amount-only; an effect site "
                                    "needs a compartment with a volume")
        effects.append(Effect(e, str(d["of"]), val(d["ke0"], f"effects.{e}.ke0")))
    conc_names = [c for c, v in comps.items() if v is not None] + [e.name for e in effects]

    routes = {}
    routes_spec = _table(spec, "routes", where)
    _limit(len(routes_spec), MAX_ENTRIES, "routes", where, "one route per way of dosing")
    for r, d in routes_spec.items():
        w = f"{where}: routes.{r}"
        _check_ident(r, "[routes]", where, _ROUTE,
                     "an ASCII name: a letter or _, then letters, digits, _ or - "
                     "([A-Za-z_][A-Za-z0-9_-]*)")
        if r in comps:
            # a dose row's route may name a compartment directly: the same name for a route
            # would leave the row's meaning to a rule nobody reads
            raise KetasimInputError(f"{w}: name clashes with a compartment (a dose row's route "
                                    f"{r!r} could mean either); expected a new name")
        if not isinstance(d, dict):
            raise KetasimInputError(f"{w}: expected a table")
        parts_spec = d.get("parts")
        rel = d.get("relative_f", False)
        if not isinstance(rel, bool):
            raise KetasimInputError(f"{w}.relative_f: got {rel!r}, expected true or false")
        if parts_spec is None:
            parts_spec = [d]
        else:
            _keys(d, {"parts", "relative_f"}, w)
            if not isinstance(parts_spec, list) or not parts_spec:
                raise KetasimInputError(f"{w}: parts must be a non-empty list of tables")
            _limit(len(parts_spec), MAX_ENTRIES, "parts", w, "merge parts")
        parts = []
        for j, p in enumerate(parts_spec):
            pw = f"routes.{r}" + (f".parts[{j}]" if "parts" in d else "")
            if not isinstance(p, dict):
                raise KetasimInputError(f"{where}: {pw}: expected a table")
            _keys(p, {"to", "f", "lag_h", "duration_h", "relative_f"}, f"{where}: {pw}")
            prel = p.get("relative_f", rel)
            if not isinstance(prel, bool):
                raise KetasimInputError(f"{where}: {pw}.relative_f: got {prel!r}, expected true "
                                        "or false")
            if "to" not in p:
                raise KetasimInputError(f"{where}: {pw}: missing 'to' (a compartment)")
            check_name(str(p["to"]), comps, f"{pw}.to", where)
            for key, lo, hi in (("f", 0, None if prel else 1), ("lag_h", 0, None),
                                ("duration_h", 0, None)):
                x = p.get(key)
                if isinstance(x, (int, float)) and not isinstance(x, bool) and (
                        not _is_finite(x) or x < lo or (hi is not None and x > hi)):
                    rng = ("a fraction in [0, 1] (or relative_f = true)" if hi else
                           "a finite number >= 0" + ("" if key == "f" else " (hours)"))
                    raise KetasimInputError(f"{where}: {pw}.{key}: got {x!r}, expected {rng}")
            parts.append(RoutePart(
                to=str(p["to"]),
                f=val(p.get("f", 1.0), f"{pw}.f", ("AMT",), hi=None if prel else 1.0,
                      what="a number >= 0" if prel else "a fraction in [0, 1]"),
                lag_h=val(p.get("lag_h", 0.0), f"{pw}.lag_h", ("AMT",)),
                duration_h=(val(p["duration_h"], f"{pw}.duration_h", ("AMT",))
                            if "duration_h" in p else None),
                relative_f=prel))
        fixed = [part.f.evaluate({}) for part in parts
                 if not part.f.names and not part.relative_f]
        total = float(sum(fixed)) if fixed else 0.0
        if total > 1.0 + 1e-12:
            raise KetasimInputError(
                f"{w}: the parts' fractions f add up to {total:.6g}, so a dose would deliver "
                f"{total:.6g} times its amount; expected a sum <= 1 (mass is conserved), or "
                "relative_f = true for a relative bioavailability")
        routes[r] = tuple(parts)

    observe = {}
    observe_spec = _table(spec, "observe", where)
    _limit(len(observe_spec), MAX_ENTRIES, "observe aliases", where, "fewer aliases")
    for a, v in observe_spec.items():
        _check_ident(a, "[observe] alias", where)
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
            raise KetasimInputError(f"{where}: observe.{a}: expected a compartment name or a "
                                    "list of names")
        if a in comps or a in [e.name for e in effects]:
            raise KetasimInputError(f"{where}: observe.{a}: alias clashes with a compartment "
                                    "or effect site; expected a new name")
        _limit(len(items), MAX_STATES, "names in one alias", f"{where}: observe.{a}",
               "each name once")
        for x in items:
            check_name(x, conc_names, f"observe.{a}", where)
        twice = next((x for x in items if items.count(x) > 1), None)
        if twice is not None:
            raise KetasimInputError(f"{where}: observe.{a}: {twice!r} is listed twice (the alias "
                                    "is the sum of its concentrations: it would be counted "
                                    "twice); expected each name once")
        observe[a] = tuple(items)
    for a in labels:        # (a misspelt analyte's label had been left out without a word)
        check_name(a, list(observe) + conc_names, "[model] labels", where)

    occ = _table(spec, "occupancy", where)
    _keys(occ, {"ligands", "receptor", "calibrations", "default", "drive"},
          f"{where}: [occupancy]")
    has_cal = bool(occ.get("calibrations"))
    _require_text(occ, ("receptor",), f"{where}: [occupancy] ")
    ligands = []
    if not isinstance(occ.get("ligands", []), list):
        raise KetasimInputError(f"{where}: [occupancy] ligands must be a list of tables, got "
                                f"{type(occ['ligands']).__name__}")
    _limit(len(occ.get("ligands", [])), MAX_ENTRIES, "ligands", where, "fewer ligands")
    for j, lg in enumerate(occ.get("ligands", [])):
        w = f"occupancy.ligands[{j}]"
        if not isinstance(lg, dict):
            raise KetasimInputError(f"{where}: {w}: expected a table")
        _keys(lg, {"name", "site", "ki_um", "fu", "mw_g_mol"}, f"{where}: {w}")
        for req in ("site", "mw_g_mol") + (() if has_cal else ("ki_um",)):
            if req not in lg:
                raise KetasimInputError(f"{where}: {w}: missing '{req}'")
        # (a calibration names its ligands by text: a number had been taken as "5")
        _require_text(lg, ("name", "site"), f"{where}: {w}.")
        check_name(str(lg["site"]), conc_names, f"{w}.site", where)
        for key, ok, expected in (("ki_um", lambda x: x > 0, "> 0 (µM)"),
                                  ("mw_g_mol", lambda x: x > 0, "> 0 (g/mol)"),
                                  ("fu", lambda x: 0 <= x <= 1, "a fraction in [0, 1]")):
            x = lg.get(key)
            if isinstance(x, (int, float)) and not isinstance(x, bool) and not (
                    _is_finite(x) and ok(x)):
                raise KetasimInputError(f"{where}: {w}.{key}: got {x!r}, expected {expected}")
        ki = val(lg["ki_um"], f"{w}.ki_um") if "ki_um" in lg else None
        lig = str(lg.get("name", lg["site"]))
        if any(x.name == lig for x in ligands):
            # (it had been counted twice in the occupancy sum, and a calibration names it)
            raise KetasimInputError(
                f"{where}: {w}: ligand {lig!r} is listed twice (its binding would be counted "
                "twice, and calibrations name ligands); expected each ligand once"
                + ("" if "name" in lg else " (a ligand without a name is named by its site)"))
        ligands.append(Ligand(lig, str(lg["site"]),
                              ki, val(lg.get("fu", 1.0), f"{w}.fu"),
                              val(lg["mw_g_mol"], f"{w}.mw_g_mol")))
    calibrations, default_cal, drive_cal = _parse_calibrations(occ, ligands, val, where)
    bands = _parse_bands(_table(spec, "bands", where, list), list(observe) + conc_names, where)

    glu_spec = _table(spec, "glutamate", where)
    glutamate = {}
    if glu_spec:
        _keys(glu_spec, set(GLUTAMATE_ROLES), f"{where}: [glutamate]")
        if not ligands:
            raise KetasimInputError(f"{where}: [glutamate] needs [occupancy] ligands to drive it")
        for role in GLUTAMATE_ROLES:
            if role not in glu_spec:
                if role in OPTIONAL_GLUTAMATE_ROLES:
                    continue
                raise KetasimInputError(f"{where}: [glutamate] missing '{role}'")
            glutamate[role] = val(glu_spec[role], f"glutamate.{role}")

    from .variability import parse_variability
    variability = parse_variability(spec.get("variability"), params, where)

    return Model(name=name, parameters=params, compartments=comps, flows=tuple(flows),
                 routes=routes, effects=tuple(effects), observe=observe, ligands=tuple(ligands),
                 glutamate=glutamate, derived=derived, allometric=dict(allo),
                 per_kg=tuple(per_kg), reference_weight_kg=float(ref),
                 schematic=frozenset(schematic), meta=meta, source=where,
                 calibrations=calibrations, default_calibration=default_cal,
                 drive_calibration=drive_cal, bands=bands,
                 variability=variability or None)


def _parse_calibrations(occ: dict, ligands: list, val, where: str):
    """``[occupancy.calibrations.NAME]`` tables (ligand name -> Ki expression, µM) and the
    ``default`` / ``drive`` calibration names. Returns (calibrations, default, drive)."""
    cal_spec = occ.get("calibrations", {})
    if not isinstance(cal_spec, dict):
        raise KetasimInputError(f"{where}: [occupancy.calibrations] must be a table of "
                                f"calibrations, got {type(cal_spec).__name__}")
    names = [lg.name for lg in ligands]
    if cal_spec:
        for lg in ligands:
            if lg.ki_um is not None:
                raise KetasimInputError(
                    f"{where}: occupancy ligand {lg.name!r}: ki_um is given and so are "
                    "[occupancy.calibrations]; give its Ki in each calibration instead")
    calibrations = {}
    for cal, table in cal_spec.items():
        w = f"occupancy.calibrations.{cal}"
        if not isinstance(table, dict) or not table:
            raise KetasimInputError(f"{where}: {w}: expected a table of ligand name = Ki (µM)")
        for lg_name in table:
            check_name(str(lg_name), names, w, where)
        kis = []
        for lg in ligands:
            if lg.name not in table:
                raise KetasimInputError(f"{where}: {w}: missing a Ki for ligand {lg.name!r}")
            x = table[lg.name]
            if isinstance(x, (int, float)) and not isinstance(x, bool) and not (
                    _is_finite(x) and x > 0):
                raise KetasimInputError(f"{where}: {w}.{lg.name}: got {x!r}, expected > 0 (µM)")
            kis.append(val(x, f"{w}.{lg.name}"))
        calibrations[str(cal)] = tuple(kis)
    chosen = {}
    for key in ("default", "drive"):
        if key not in occ:
            chosen[key] = ""
            continue
        if not calibrations:
            raise KetasimInputError(f"{where}: [occupancy] {key} = {occ[key]!r} needs "
                                    "[occupancy.calibrations]")
        chosen[key] = check_name(str(occ[key]), calibrations, f"[occupancy] {key}", where)
    return calibrations, chosen["default"], chosen["drive"]


def _require_text(table: dict, keys, prefix: str, blank: bool = False) -> None:
    """Each of ``keys`` that ``table`` has must be text (not blank, unless ``blank``), else a
    KetasimInputError naming it as ``prefix`` + key, with the value given."""
    for k in keys:
        v = table.get(k)
        if k in table and not (isinstance(v, str) and (blank or v.strip())):
            raise KetasimInputError(f"{prefix}{k}: got {v!r}, expected text (a quoted string)")


def _parse_bands(spec: list, analytes: list, where: str) -> tuple:
    """``[[bands]]``: published concentration windows (ng/mL) of an analyte, with a source."""
    bands = []
    for i, b in enumerate(spec):
        w = f"{where}: bands[{i}]"
        if not isinstance(b, dict):
            raise KetasimInputError(f"{w}: expected a table with name, analyte, lo_ng_ml, "
                                    "hi_ng_ml and source")
        _keys(b, {"name", "analyte", "lo_ng_ml", "hi_ng_ml", "source"}, w)
        for req in ("name", "lo_ng_ml", "source"):
            if req not in b:
                raise KetasimInputError(f"{w}: missing '{req}'")
        # (drawn and printed as text: a number had been taken and drawn as it was written)
        _require_text(b, ("name", "analyte", "source"), f"{w}.")
        analyte = str(b.get("analyte", "plasma"))
        check_name(analyte, analytes, f"bands[{i}].analyte", where)
        lo, hi = b["lo_ng_ml"], b.get("hi_ng_ml", float("inf"))
        for key, x in (("lo_ng_ml", lo), ("hi_ng_ml", hi)):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x or x < 0 or (
                    key == "lo_ng_ml" and not _is_finite(x)):
                raise KetasimInputError(f"{w}.{key}: got {x!r}, expected a concentration "
                                        ">= 0 ng/mL")
        if not hi > lo:
            raise KetasimInputError(f"{w}: hi_ng_ml = {hi!r} must be above lo_ng_ml = {lo!r}")
        bands.append(Band(str(b["name"]), analyte, float(lo), float(hi), str(b["source"])))
    return tuple(bands)


def _constant(ex: _expr.Expr, fld, where, lo=None, hi=None, what="a finite number") -> None:
    """An expression without names is checked once, here: finite, and within [lo, hi]."""
    if ex.names:
        return
    x = float(ex.evaluate({}))
    if not math.isfinite(x):
        raise KetasimInputError(f"{where}: {fld}: {ex.text!r} evaluates to {x!r} (overflow or "
                                f"an undefined operation); expected {what}")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise KetasimInputError(f"{where}: {fld}: {ex.text!r} evaluates to {x:g}; expected "
                                f"{what}")


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
    if not isinstance(name_or_path, (str, os.PathLike)):
        # (None or a number had been read as the text 'None' or '3', "neither a file nor a
        # preset"; a dict as its text)
        shown = repr(name_or_path)
        shown = shown if len(shown) < 60 else shown[:57] + "..."
        raise KetasimInputError(
            f"model: got {shown}, expected a Model, a preset "
            "name (" + ", ".join(list_presets()) + ") or the path of a TOML model file"
            + (" (a dict: Model.from_dict)" if isinstance(name_or_path, dict) else ""))
    s = str(name_or_path)
    if not s.strip():
        raise KetasimInputError(f"model: got {s!r}, expected a preset name ("
                                + ", ".join(list_presets()) + ") or a TOML model file")
    p = Path(s)
    presets = list_presets()
    # (a folder named like a preset is no model file: ``ketasim course --out-dir
    # ketamine-iv`` had made every later command with the default model fail, "'ketamine-iv'
    # is a folder"; a file of that name still wins)
    if p.suffix == ".toml" or (p.exists() and not (s in presets and p.is_dir())) \
            or "/" in s or "\\" in s:
        check_input_file("model", s, p, "a TOML model file")
        return Model.from_toml(p)
    if s not in presets:
        raise KetasimInputError(
            f"model: {s!r} is neither a file nor a preset{suggest(s, presets)}; presets: "
            + ", ".join(presets) + where_gone(p))
    data = (resources.files("ketasim") / "presets" / f"{s}.toml").read_bytes()
    return _build(_read_toml(data, f"preset {s}"), f"preset {s}", s)


# ------------------------------------------------------------------ parameter notes
_UNIT_RE = None


def parameter_notes(text: str) -> dict:
    """``NAME -> (unit, source)`` from the trailing comments of ``NAME = value  # comment``
    lines in the [parameters] and [schematic] sections of a model file.

    The comment convention of the presets: a unit first (``L/h``, ``1/h``, ``uM``, ``g/mol``
    ...), then the source after a comma or semicolon, e.g. ``# L/h, S-ketamine clearance
    (Fanta 2015)``. A comment without a unit is all source. An indented comment line just
    below such a line continues its comment."""
    import re

    global _UNIT_RE
    if _UNIT_RE is None:
        _UNIT_RE = re.compile(r"^\s*((?:1/h|L/h|L|mL|h|min|mg|kg|uM|µM|g/mol|ng/mL|mg/L|%|"
                              r"fraction|mg/kg|years)(?: per [A-Za-z ]+)?)\s*(?:[,;:]\s*|\(|$)")
    raw = {}        # name -> [comment, heading, section]
    section = None
    heading = ""
    last = None     # the parameter whose trailing comment an indented comment line continues
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s.split("#", 1)[0].strip().strip("[]").strip()
            heading = ""
            last = None
            continue
        if s.startswith("#"):
            if last is not None and line[:1].isspace():
                raw[last][0] += " " + s.lstrip("# ").strip()
            else:
                heading = s.lstrip("# ").strip()
                last = None
            continue
        last = None
        if section not in ("parameters", "schematic") or "=" not in s:
            continue
        name, rest = s.split("=", 1)
        name = name.strip()
        if len(name) > 1 and name[0] == name[-1] and name[0] in "\"'":
            name = name[1:-1]       # a quoted key, "V" = 50.0, is V (its note had been lost)
        comment = rest.split("#", 1)[1].strip() if "#" in rest else ""
        raw[name] = [comment, heading, section]
        if comment:
            last = name
    out = {}
    for name, (comment, heading, section) in raw.items():
        m = _UNIT_RE.match(comment)
        if m:
            unit = m.group(1)
            src = comment[m.end():].strip()
            if comment[m.end() - 1:m.end()] == "(":
                src = "(" + src
        else:
            unit, src = "", comment
        if heading and not re.search(r"(19|20)\d\d|Table", src) and section == "parameters":
            # the block's heading comment names the source: keep its parenthesis
            par = re.search(r"\(([^()]*(?:19|20)\d\d[^()]*|Table[^()]*)\)", heading)
            if par:
                src = f"{src} ({par.group(1).split(';')[0]})" if src else par.group(1)
        out[name] = (unit.replace("uM", "µM"), src, section)
    return out


def model_text(name: str) -> str:
    """The TOML text of a preset (by name) or of a model file (by path), decoded as the model
    is read (:func:`read_model_file`: UTF-8, or UTF-16/UTF-32 with a byte-order mark)."""
    from importlib import resources

    if name in list_presets():
        return (resources.files("ketasim") / "presets" / f"{name}.toml").read_text("utf-8")
    return decode_text(_model_bytes(name), str(name), "a TOML model file")


def parameter_units(model) -> dict:
    """``NAME -> unit`` of a model's parameters from its file's comments (see
    :func:`parameter_notes`): a preset, or a model read from a file that is still there; {}
    otherwise (a model built in Python) or where a comment gives no unit."""
    src = str(getattr(model, "source", "") or "")
    name = src[7:] if src.startswith("preset ") else src
    if not (name in list_presets() or (name and Path(name).is_file())):
        return {}
    try:
        text = model_text(name)
    except (OSError, KetasimInputError):
        return {}
    return {k: u for k, (u, _, sec) in parameter_notes(text).items()
            if sec == "parameters" and u}
