"""Benchmark: a virtual population over the six-month standard IV course, metrics only.

The scenario of the README's scale claim: 1,000,000 subjects with the ``ketamine-iv`` preset and
its variability (13 % IIV on clearance, Fanta 2015), the standard IV course (0.5 mg/kg over
40 min; 3 + 2 + 3 weekly sessions, then every 28 days; six months), per-session and course
metrics (Cmax, Tmax, AUC, trough, peak occupancy, time above 30 % occupancy). Reports the wall
time (JIT compilation excluded: a two-subject warm-up runs first), the peak of traced Python/numpy
memory (tracemalloc) and the process's peak resident memory (ru_maxrss, which also counts Numba's
own allocations and the interpreter).

    python benchmarks/bench_population.py              # the full 1,000,000 subjects
    python benchmarks/bench_population.py --n 2000     # a quick run
    python benchmarks/bench_population.py --n 100000 --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ketasim  # noqa: E402
from ketasim.population import DEFAULT_METRICS, population  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="subjects (default 1,000,000)")
    p.add_argument("--months", type=float, default=6.0, help="course length (default 6)")
    p.add_argument("--chunk-size", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--scheduler", default=None, help="Dask scheduler address or 'local'")
    p.add_argument("--no-tracemalloc", action="store_true",
                   help="skip tracemalloc (it adds a little overhead to numpy allocations)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    doses = ketasim.resolve_doses("standard-iv", months=args.months)
    population("ketamine-iv", doses, 2, 0, metrics=DEFAULT_METRICS, progress=False)  # compile
    if not args.no_tracemalloc:
        tracemalloc.start()
    t0 = time.perf_counter()
    res = population("ketamine-iv", doses, args.n, args.seed, metrics=DEFAULT_METRICS,
                     chunk_size=args.chunk_size, threads=args.threads,
                     scheduler=args.scheduler, progress=None)
    wall = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] if not args.no_tracemalloc else float("nan")
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss     # KiB on Linux
    cols = len(res.columns)
    print(f"scenario: ketamine-iv + variability, standard-iv {args.months:g} months "
          f"({len(res.session_start_h)} sessions), metrics only")
    print(f"subjects            {args.n:,}")
    print(f"table               {args.n:,} rows x {cols} columns "
          f"({args.n * cols * 8 / 2**20:,.0f} MiB)")
    print(f"wall time           {wall:,.2f} s ({args.n / wall:,.0f} subjects/s)")
    print(f"peak traced memory  {traced / 2**20:,.0f} MiB (tracemalloc)")
    print(f"peak resident       {rss_kib / 2**10:,.0f} MiB (ru_maxrss)")
    print(f"cmax median         {float(sorted(res['cmax'])[args.n // 2]):.4g} ng/mL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
