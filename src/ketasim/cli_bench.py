"""``ketasim bench``: the benchmark suite (:mod:`ketasim.bench`) from the command line.

Kept apart from :mod:`ketasim.bench` so that building the command-line parser imports nothing
heavy; the suite (and SciPy) load only when the command runs.
"""

from __future__ import annotations

# the scenarios of ketasim.bench.SCENARIOS, in order (a test keeps the two in step)
SCENARIO_NAMES = ("iv-pk", "iv-default", "spravato", "pop-10k", "throughput-5", "metrics-1m",
                  "network-12", "trivial", "compile", "cli", "scaling")


DEFAULT_JSON = "benchmarks/results.json"     # the full suite's results (the README's table)


def add_arguments(p) -> None:
    """The options of ``ketasim bench`` (also used by ``benchmarks/run.py``)."""
    p.add_argument("--quick", action="store_true",
                   help="smoke run with tiny sizes (seconds; skips compile, cli and scaling "
                        "unless they are named with --only; default: off)")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help="run only these scenarios (repeatable or comma-separated; default: "
                        "all): " + ", ".join(SCENARIO_NAMES))
    from .cli import _out_path

    # (a .json name: any name had been written, a dose table "--json d.csv" replaced by JSON)
    p.add_argument("--json", default=None, metavar="PATH",
                   type=lambda v: v if v == "-" or not v.strip() else _out_path(v, (".json",)),
                   help="write the results as JSON here ('-' for none; default: "
                        f"{DEFAULT_JSON} for the full suite, none for --quick or --only, "
                        "which never replace the full suite's results unless told to)")
    from .cli import _whole

    p.add_argument("--repeats", type=_whole("repeats", 1), default=None,
                   help="timed repeats of each ketasim call, the best kept (default 3, and 10 "
                        "for a one-subject scenario; quick 2; the trivial call is always the "
                        "median of many calls)")
    p.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                   help="run each scenario in its own process, to report its peak memory "
                        "(default for the full run)")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run every scenario in this process (default with --quick)")
    p.add_argument("--figure", default=None, metavar="PNG",
                   type=lambda v: _out_path(v, (".png", ".pdf", ".svg")),
                   help="also draw throughput against the number of subjects: a .png, .pdf "
                        "or .svg file (runs with the scaling scenario; default: none)")


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="benchmark the solver against scipy (speed ratios and "
                       "errors, machine limits, compile time)",
                       description="Named scenarios, each timing scipy's solve_ivp baselines "
                       "in the same run and scoring every solver against a Radau rtol 1e-12 "
                       "reference. Prints a markdown table; writes JSON.")
    add_arguments(b)


def run(args) -> int:
    from .bench import run_args
    return run_args(args)
