"""Between-subject variability: the ``[variability]`` section of model files and the draws.

A parameter ``P`` with variability takes, for subject ``i``, the value ``P x exp(eta_i)``
(log-normal), ``eta ~ N(0, omega^2)``; correlated parameters share a block of the covariance
matrix ``Omega`` (NONMEM's ``$OMEGA BLOCK``). The draw is applied to the typical value *before*
weight scaling and ``[derived]``, like an ETA on a THETA.

Section format::

    [variability]
    source = "Fanta 2015 (abstract): 13 % IIV on CL"   # where the numbers come from
    cv_pct = { CL = 13.0 }          # CV in %; omega^2 = ln(1 + (CV/100)^2)
    omega2 = { V1 = 0.09 }          # or the variance of eta directly
    block = [                       # optional correlated blocks
      { names = ["CL", "V1"], correlation = [[1, 0.4], [0.4, 1]] },   # variances from above
      # { names = [...], omega = [[...]] }   a full covariance block of the etas
    ]
    covariates = { age_y = "AGE" }  # per-subject covariate column -> model parameter
    covariate_range = { age_y = [18, 86] }   # optional: the values the model was fitted to

Reproducibility: subject ``i``'s etas depend only on ``(seed, i)`` — never on the chunk size,
thread count or number of Dask workers. They come from a counter-based generator
(:class:`numpy.random.Philox`, keyed by the seed, counter from the subject index): subject ``i``
uses Philox blocks ``i*c .. i*c + c - 1`` (``c = ceil(k / 4)`` for ``k`` random parameters, 4
numbers per block); each 64-bit number becomes a uniform in (0, 1) (53 bits, never 0 or 1) and a
standard normal through the inverse normal CDF (:func:`scipy.special.ndtri`), and the etas are
``L z`` with ``L`` the Cholesky factor of ``Omega``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import KetasimInputError, is_whole, suggest

__all__ = ["Variability", "parse_variability", "draw", "draw_eta", "check_seed",
           "COVARIATE_NAMES"]

# covariate columns a population may carry per subject (besides weight_kg, which every model
# understands through its [weight] section)
COVARIATE_NAMES = ("age_y",)
# the ages any age_y may take, years (a model's own fitted range is its covariate_range)
AGE_LIMITS_Y = (0.0, 130.0)
AGE_WORDS = f"an age in years ({AGE_LIMITS_Y[0]:g}-{AGE_LIMITS_Y[1]:g})"
# Upper limits of a variance: a CV of 1000 % (omega² = ln(1 + 10²) = 4.6) is far beyond any
# published between-subject variability, and omega² = 10 already spreads a parameter over a
# factor of about 500 either side (95 %); larger values only overflow (exp of a huge eta)
MAX_CV_PCT = 1000.0
MAX_OMEGA2 = 10.0
_MAX_SEED = 2**128   # Philox4x64 key: 128 bits


@dataclass(frozen=True)
class Variability:
    """Parsed ``[variability]``: parameter names (order of the etas), their covariance
    ``omega`` (k, k) on the log scale, its Cholesky factor, covariate mapping and source."""

    names: tuple = ()
    omega: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    chol: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    covariates: dict = field(default_factory=dict)   # covariate column -> parameter name
    source: str = ""
    covariate_range: dict = field(default_factory=dict)   # column -> (lo, hi) of the data

    @property
    def cv_pct(self) -> dict:
        """Parameter -> CV (%) of the log-normal distribution, sqrt(exp(omega^2) - 1)."""
        return {n: 100.0 * math.sqrt(math.expm1(self.omega[i, i]))
                for i, n in enumerate(self.names)}

    def __bool__(self) -> bool:
        return bool(self.names)

    def __eq__(self, other):
        # (the generated comparison would ask an array for one truth value and raise)
        if not isinstance(other, Variability):
            return NotImplemented
        return (self.names == other.names and self.covariates == other.covariates
                and self.source == other.source and self.covariate_range == other.covariate_range
                and np.array_equal(self.omega, other.omega)
                and np.array_equal(self.chol, other.chol))

    __hash__ = None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_variability(spec, params, where: str) -> Variability:
    """Parse a ``[variability]`` table (see the module docstring) for a model whose parameters
    are ``params`` (names). Raises :class:`KetasimInputError` naming the field."""
    w = f"{where}: [variability]"
    if not spec:
        return Variability()
    if not isinstance(spec, dict):
        raise KetasimInputError(f"{w} must be a table, got {type(spec).__name__}")
    allowed = {"source", "cv_pct", "omega2", "block", "covariates", "covariate_range"}
    for k in spec:
        if k not in allowed:
            raise KetasimInputError(f"{w}: unknown key {k!r}{suggest(str(k), allowed)}; "
                                    "expected one of " + ", ".join(sorted(allowed)))
    var: dict[str, float] = {}
    for key in ("cv_pct", "omega2"):
        tab = spec.get(key, {})
        if not isinstance(tab, dict):
            raise KetasimInputError(f"{w} {key} must be a table NAME = number, got "
                                    f"{type(tab).__name__}")
        for name, v in tab.items():
            _check_param(name, params, f"{w} {key}")
            hi = MAX_CV_PCT if key == "cv_pct" else MAX_OMEGA2
            if not _number(v) or not 0 <= v <= hi:
                raise KetasimInputError(f"{w} {key}.{name}: got {v!r}, expected a number from 0 "
                                        f"to {hi:g}" + (" (a CV in %)" if key == "cv_pct" else
                                                        " (variance of eta)"))
            if name in var:
                raise KetasimInputError(f"{w}: {name!r} is given in both cv_pct and omega2")
            var[name] = math.log1p((v / 100.0) ** 2) if key == "cv_pct" else float(v)

    blocks = spec.get("block", [])
    if not isinstance(blocks, list):
        raise KetasimInputError(f"{w} block must be a list of tables {{names, correlation}} or "
                                "{names, omega}")
    covs: dict[tuple, float] = {}
    in_block: set = set()
    for j, b in enumerate(blocks):
        bw = f"{w} block[{j}]"
        if not isinstance(b, dict):
            raise KetasimInputError(f"{bw}: expected a table with names and correlation or omega")
        for k in b:
            if k not in ("names", "correlation", "omega"):
                raise KetasimInputError(f"{bw}: unknown key {k!r}; expected names and "
                                        "correlation or omega")
        names = b.get("names")
        if not isinstance(names, list) or len(names) < 2 or not all(
                isinstance(x, str) for x in names):
            raise KetasimInputError(f"{bw}: names: expected a list of two or more parameter "
                                    "names")
        if len(set(names)) != len(names):
            raise KetasimInputError(f"{bw}: names: {names!r} repeats a parameter")
        for x in names:
            _check_param(x, params, f"{bw} names")
            if x in in_block:
                raise KetasimInputError(f"{bw}: {x!r} is already in another block")
        if ("correlation" in b) == ("omega" in b):
            raise KetasimInputError(f"{bw}: give exactly one of correlation (with variances in "
                                    "cv_pct/omega2) or omega (the full covariance block)")
        key = "correlation" if "correlation" in b else "omega"
        m = _matrix(b[key], len(names), f"{bw} {key}")
        if key == "correlation":
            if not np.allclose(np.diag(m), 1.0):
                raise KetasimInputError(f"{bw} correlation: the diagonal must be 1, got "
                                        f"{np.diag(m).tolist()}")
            if np.any(np.abs(m) > 1):
                raise KetasimInputError(f"{bw} correlation: entries must lie in [-1, 1]")
            for x in names:
                if x not in var:
                    raise KetasimInputError(f"{bw}: {x!r} has a correlation but no variance; "
                                            "give it in cv_pct or omega2")
            sd = np.sqrt([var[x] for x in names])
            m = m * np.outer(sd, sd)
        else:
            for i, x in enumerate(names):
                if x in var and not math.isclose(var[x], m[i, i], rel_tol=1e-9):
                    raise KetasimInputError(f"{bw}: {x!r} has variance {var[x]:g} in cv_pct/"
                                            f"omega2 but {m[i, i]:g} in omega")
                if not 0 <= m[i, i] <= MAX_OMEGA2:
                    raise KetasimInputError(f"{bw} omega: variance of {x!r} is {m[i, i]:g}, "
                                            f"expected from 0 to {MAX_OMEGA2:g}")
                var[x] = float(m[i, i])
        for a in range(len(names)):
            for c in range(a + 1, len(names)):
                if m[a, c] != 0.0:
                    covs[(names[a], names[c])] = float(m[a, c])
        in_block.update(names)

    order = tuple(n for n in var if var[n] > 0 or n in in_block)
    k = len(order)
    omega = np.zeros((k, k))
    idx = {n: i for i, n in enumerate(order)}
    for n in order:
        omega[idx[n], idx[n]] = var[n]
    for (a, c), v in covs.items():
        omega[idx[a], idx[c]] = omega[idx[c], idx[a]] = v
    chol = np.zeros((k, k))
    if k:
        try:
            ev = np.linalg.eigvalsh(omega)
            if ev[0] <= 1e-12 * ev[-1]:
                raise np.linalg.LinAlgError
            chol = np.linalg.cholesky(omega)
        except np.linalg.LinAlgError:
            raise KetasimInputError(f"{w}: the covariance of the etas is not positive definite; "
                                    "check the correlations (|r| < 1) and that every parameter "
                                    "in a block has a variance > 0") from None

    cov_spec = spec.get("covariates", {})
    if not isinstance(cov_spec, dict):
        raise KetasimInputError(f"{w} covariates must be a table column = \"PARAMETER\"")
    covariates = {}
    for col, p in cov_spec.items():
        if col not in COVARIATE_NAMES:
            raise KetasimInputError(f"{w} covariates: unknown column {col!r}"
                                    f"{suggest(col, COVARIATE_NAMES)}; expected one of "
                                    + ", ".join(COVARIATE_NAMES))
        if not isinstance(p, str):
            raise KetasimInputError(f"{w} covariates.{col}: got {p!r}, expected a parameter name")
        _check_param(p, params, f"{w} covariates.{col}")
        covariates[col] = p
    ranges = {}
    rng_spec = spec.get("covariate_range", {})
    if not isinstance(rng_spec, dict):
        raise KetasimInputError(f"{w} covariate_range must be a table column = [LO, HI]")
    for col, lohi in rng_spec.items():
        if col not in covariates:
            raise KetasimInputError(f"{w} covariate_range.{col}: not a covariate of this model "
                                    f"(covariates: {', '.join(covariates) or 'none'})")
        if (not isinstance(lohi, list) or len(lohi) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in lohi) or not lohi[0] <= lohi[1]):
            raise KetasimInputError(f"{w} covariate_range.{col}: got {lohi!r}, expected [LO, HI] "
                                    "with LO <= HI")
        ranges[col] = (float(lohi[0]), float(lohi[1]))
    source = spec.get("source", "")
    if not isinstance(source, str):
        raise KetasimInputError(f"{w} source: expected text (a citation)")
    omega.setflags(write=False)
    chol.setflags(write=False)
    return Variability(names=order, omega=omega, chol=chol, covariates=covariates,
                       source=source, covariate_range=ranges)


def _check_param(name, params, where):
    if name not in params:
        raise KetasimInputError(f"{where}: unknown parameter {name!r}{suggest(str(name), params)}"
                                "; expected a name from [parameters]")


def _matrix(v, k, where) -> np.ndarray:
    if not (isinstance(v, list) and len(v) == k and all(
            isinstance(r, list) and len(r) == k and all(_number(x) for x in r) for r in v)):
        raise KetasimInputError(f"{where}: expected a {k} x {k} matrix of numbers (a list of "
                                f"{k} rows)")
    m = np.asarray(v, dtype=np.float64)
    if not np.allclose(m, m.T, rtol=0, atol=1e-12):
        raise KetasimInputError(f"{where}: the matrix must be symmetric")
    return m


def check_seed(seed) -> int:
    """A seed: a whole number 0 <= seed < 2**128."""
    if not is_whole(seed) or not (
            0 <= int(seed) < _MAX_SEED):
        raise KetasimInputError(f"seed: got {seed!r}, expected a whole number from 0 to 2**128 "
                                "- 1 (the generator's 128-bit key)")
    return int(seed)


def _check_range(n, start):
    for name, v, lo in (("n", n, 0), ("start", start, 0)):
        if not is_whole(v) or v < lo:
            raise KetasimInputError(f"{name}: got {v!r}, expected a whole number >= {lo}")
    return int(n), int(start)


def standard_normals(seed: int, start: int, n: int, k: int) -> np.ndarray:
    """(n, k) standard normals for subjects ``start .. start + n - 1``; row ``i`` depends only on
    ``(seed, start + i)``."""
    from scipy.special import ndtri

    if n == 0 or k == 0:
        return np.zeros((n, k))
    c = -(-k // 4)                    # Philox blocks per subject (4 x 64 bits each)
    bg = np.random.Philox(key=seed, counter=start * c)
    raw = bg.random_raw(n * c * 4).reshape(n, c * 4)[:, :k]
    u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return ndtri(u)


def draw_eta(model, n: int, seed, start: int = 0) -> np.ndarray:
    """Etas (n, k) of subjects ``start .. start + n - 1``, columns in
    ``model.variability.names`` order."""
    seed = check_seed(seed)
    n, start = _check_range(n, start)
    v = getattr(model, "variability", None) or Variability()
    z = standard_normals(seed, start, n, len(v.names))
    return z @ v.chol.T


def draw(model, n: int, seed, start: int = 0, params: dict | None = None) -> dict:
    """Parameter values of subjects ``start .. start + n - 1``: name -> (n,) array.

    Each parameter with variability is ``typical x exp(eta)``; ``typical`` is the model's value
    or ``params[name]`` (a scalar, or an (n,) array of per-subject typical values). Subject
    ``i``'s values depend only on ``(seed, i)``.

    Examples
    --------
    >>> import ketasim
    >>> from ketasim.variability import draw
    >>> m = ketasim.load_model("esketamine-nasal")
    >>> a = draw(m, 10, seed=1)
    >>> b = draw(m, 5, seed=1, start=5)
    >>> bool((a["V1"][5:] == b["V1"]).all())
    True
    """
    from .modelfile import load_model

    model = load_model(model)
    eta = draw_eta(model, n, seed, start)
    params = params or {}
    out = {}
    for j, name in enumerate(model.variability.names if model.variability else ()):
        typ = np.asarray(params.get(name, model.parameters[name]), dtype=np.float64)
        out[name] = typ * np.exp(eta[:, j])
    return out
