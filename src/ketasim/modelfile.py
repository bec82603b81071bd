"""Model files: TOML (or the same structure as a dict) -> :class:`~ketasim.model.Model`.

The format is documented in :mod:`ketasim.model` and the README; one parser function per
section keeps a new section a local change.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from . import _expr
from .errors import KetasimInputError, check_name, suggest
from .model import (
    GLUTAMATE_ROLES,
    OPTIONAL_GLUTAMATE_ROLES,
    OUT,
    RESERVED,
    Effect,
    Flow,
    Ligand,
    Model,
    RoutePart,
    _is_finite,
)

__all__ = ["read_model_file", "model_from_dict", "load_model", "list_presets"]


def model_from_dict(spec: dict, *, source: str = "", name: str | None = None) -> Model:
    """Build a model from the same structure a TOML model file has."""
    return _build(spec, source or "<model>", name)


def read_model_file(path) -> Model:
    """Read a TOML model file."""
    path = Path(path)
    return _build(_read_toml(path.read_bytes(), str(path)), str(path), path.stem)


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
        "routes", "effects", "observe", "occupancy", "glutamate", "variability"}


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
                 variability=variability or None)


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
