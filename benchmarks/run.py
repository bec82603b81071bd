#!/usr/bin/env python
"""ketasim's benchmark suite (the same as ``ketasim bench``).

    python benchmarks/run.py                    # full run (several minutes on 2 cores)
    python benchmarks/run.py --quick            # smoke run, tiny sizes (seconds)
    python benchmarks/run.py --only iv-pk,trivial
    python benchmarks/run.py --only scaling --figure docs/perf/throughput.png

Prints a markdown table and writes ``benchmarks/results.json``. The scenarios, baselines and
reference are described in :mod:`ketasim.bench`.
"""

import sys
from pathlib import Path

try:
    import ketasim.bench as bench
except ImportError:   # a source checkout without ketasim installed: use ./src
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import ketasim.bench as bench

if __name__ == "__main__":
    sys.exit(bench.main(prog="benchmarks/run.py"))
