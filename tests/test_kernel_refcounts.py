"""The kernels' helpers compiled without reference counting (``_nrt=False``) must neither
allocate nor return an array, and every other compiled function must say ``_nrt=True``
(a callee without the option inherits its first caller's setting): checked on the source, so
a new helper that breaks the rule fails here rather than corrupting memory at run time."""

import ast
import inspect

import ketasim._kernels as kernels

ALLOCATING = {"zeros", "empty", "full", "ones", "arange", "array", "copy", "empty_like",
              "zeros_like", "full_like", "ascontiguousarray", "concatenate", "stack"}


def _decorated(tree):
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "njit":
                opts = {k.arg: k.value.value for k in dec.keywords
                        if isinstance(k.value, ast.Constant)}
                yield node, opts


def _violations(tree):
    """What breaks the rule in a module's source tree."""
    funcs = dict(_decorated(tree))
    inline = {fn.name: fn for fn, opts in funcs.items() if opts.get("inline") == "always"}
    bad = [f"{fn.name}: no _nrt option" for fn, opts in funcs.items()
           if "_nrt" not in opts and fn.name not in inline]
    for fn, opts in funcs.items():
        if opts.get("_nrt") is not False:
            continue
        # an inlined helper's body becomes part of the function that calls it
        bodies = [fn] + [inline[n.func.id] for n in ast.walk(fn)
                         if isinstance(n, ast.Call) and getattr(n.func, "id", None) in inline]
        for body in bodies:
            for node in ast.walk(body):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                    if name in ALLOCATING:
                        bad.append(f"{fn.name}: allocates ({name})")
        # arrays: the arguments it indexes
        arrays = {n.value.id for n in ast.walk(fn)
                  if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)}
        for node in ast.walk(fn):
            if isinstance(node, ast.Return) and node.value is not None:
                vals = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for v in vals:
                    if isinstance(v, ast.Name) and v.id in arrays:
                        bad.append(f"{fn.name}: returns the array {v.id}")
                    if isinstance(v, ast.Subscript) and isinstance(v.slice, ast.Slice):
                        bad.append(f"{fn.name}: returns a slice of {ast.unparse(v.value)}")
    return bad


def test_the_kernels_keep_the_rule():
    tree = ast.parse(inspect.getsource(kernels))
    assert _violations(tree) == []
    no_rc = {fn.name for fn, opts in _decorated(tree) if opts.get("_nrt") is False}
    inlined = {fn.name for fn, opts in _decorated(tree) if opts.get("inline") == "always"}
    # the helpers called per step or per block are the point of it (or are no call at all:
    # the block writer is inlined into the grid kernel, the cache lookup and the occupancy
    # sum into the schematic integrator's step)
    assert {"_propagate", "_pd_advance", "_rk43", "_etd_step", "_apply_events",
            "_pd_ladder", "_monitor"} <= no_rc
    assert {"_blk_run", "_mid_sum", "_slot_find"} <= inlined


def test_the_check_catches_each_kind_of_break():
    src = '''
@njit(cache=True)
def no_option(a):
    return 0

@njit(cache=True, _nrt=False)
def allocates(a):
    b = np.zeros(3)
    return a[0]

@njit(cache=True, inline="always")
def inl(a):
    return a.copy()

@njit(cache=True, _nrt=False)
def through_inline(a):
    return inl(a)[0]

@njit(cache=True, _nrt=False)
def returns_array(a, k):
    a[0] = k
    return a

@njit(cache=True, _nrt=False)
def returns_slice(a):
    return a[1:]

@njit(cache=True, _nrt=False)
def fine(a, k):
    return a[k], k
'''
    assert sorted(_violations(ast.parse(src))) == sorted([
        "no_option: no _nrt option", "allocates: allocates (zeros)",
        "through_inline: allocates (copy)", "returns_array: returns the array a",
        "returns_slice: returns a slice of a"])


def test_every_array_the_kernels_allocate_is_freed_once(tmp_path):
    """Run a population on a grid and its exact metrics (schematic response on) with Numba's
    allocation statistics: as many frees as allocations (a helper without reference counting
    that kept or dropped a reference wrongly would leak or free twice)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "stats.py"
    script.write_text(
        "import numpy as np, ketasim\n"
        "from numba.core.runtime import rtsys\n"
        "from ketasim.engine import session_metrics\n"
        "m = ketasim.load_model('ketamine-iv')\n"
        "d = ketasim.standard_iv_course(months=1)\n"
        "t = ketasim.time_grid(24 * 30, 0.25)\n"
        "p = {'CL': np.linspace(60.0, 120.0, 6)}\n"
        "mets = ('cmax', 'peak_glutamate', 'plasticity_end', 'time_above_occ_0.2')\n"
        "def run():\n"
        "    ketasim.simulate(m, d, t, params=p, threads=2)\n"
        "    ketasim.simulate(m, d, t)\n"
        "    session_metrics(m, d, params=p, metrics=mets)\n"
        "run()\n"
        "s0 = rtsys.get_allocation_stats()\n"
        "run()\n"
        "s1 = rtsys.get_allocation_stats()\n"
        "print(s1.alloc - s0.alloc, s1.free - s0.free, s1.mi_alloc - s0.mi_alloc, "
        "s1.mi_free - s0.mi_free)\n")
    env = dict(os.environ, NUMBA_NRT_STATS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src") + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    alloc, free, mi_alloc, mi_free = map(int, out.stdout.split())
    assert alloc > 100 and alloc == free and mi_alloc == mi_free


# the compiled functions ketasim's Python code (or its tests) calls directly: they need the
# wrapper Python calls through; every other compiled function is a helper of these
CALLED_FROM_PYTHON = {"expm", "propagator", "structure", "grid_range", "metrics_range",
                      "first_out_of_range", "uniform_within", "times_fault", "_fill_slot",
                      "_matmul", "_matmul_loop", "band_add", "band_bins"}


def test_helpers_have_no_python_wrappers_and_kernels_do():
    tree = ast.parse(inspect.getsource(kernels))
    funcs = dict(_decorated(tree))
    names = {fn.name for fn in funcs}
    assert CALLED_FROM_PYTHON <= names
    for fn, opts in funcs.items():
        if opts.get("inline") == "always":
            continue              # (typed into its callers: never compiled on its own)
        inner = opts.get("no_cpython_wrapper") is True and opts.get("no_cfunc_wrapper") is True
        assert inner == (fn.name not in CALLED_FROM_PYTHON), fn.name


def test_python_calls_only_functions_with_wrappers():
    """Every ``_kernels.<name>`` that ketasim's modules, tests and benchmarks use is either
    plain Python or a compiled function with its wrapper."""
    import pathlib
    import re

    root = pathlib.Path(kernels.__file__).resolve().parents[2]
    used = set()
    for folder in ("src/ketasim", "tests", "benchmarks"):
        for path in (root / folder).glob("*.py"):
            if path.name == "_kernels.py":
                continue
            used |= set(re.findall(r"_kernels\.([A-Za-z_]\w*)\(", path.read_text()))
    tree = ast.parse(inspect.getsource(kernels))
    compiled = {fn.name for fn, _ in _decorated(tree)}
    assert used & compiled <= CALLED_FROM_PYTHON, used & compiled - CALLED_FROM_PYTHON
