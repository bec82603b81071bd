import sys

try:
    from .cli import console
except BaseException as exc:       # (Ctrl-C before the command's handler is set)
    from . import _stopped_while_starting

    _stopped_while_starting(exc)    # (this is the program: one line, status 130)
    raise

sys.exit(console())
