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

# the checkout's own code, whatever ketasim is installed: this script measures the code next to
# it (an installed copy from an earlier `pip install .` would otherwise be measured instead)
_SRC = Path(__file__).resolve().parent.parent / "src"
if (_SRC / "ketasim" / "__init__.py").is_file():
    sys.path.insert(0, str(_SRC))
import ketasim.bench as bench  # noqa: E402

if __name__ == "__main__":
    sys.exit(bench.main(prog="benchmarks/run.py"))
