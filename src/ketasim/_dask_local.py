"""Preloaded by each worker of the cluster ``scheduler="local"`` starts (``--scheduler local``).

A terminal's Ctrl-C reaches every process of the command's process group, the workers too.
The workers ignore it: the command alone is interrupted and then closes the cluster, which
stops them, instead of each worker printing its own tracebacks. (A worker of a cluster the
user started is left as it is.) Until then, from its first instruction, a worker has Ctrl-C
blocked: the command holds it back while the cluster starts (``population._ctrl_c_held``).
"""

import signal
import threading


def dask_setup(worker) -> None:       # noqa: ARG001 - Dask's preload hook
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
