import sys

try:
    from .cli import console
except KeyboardInterrupt:          # (Ctrl-C before the command's handler is set)
    sys.stderr.write("ketasim: interrupted (Ctrl-C)\n")
    raise SystemExit(130) from None

sys.exit(console())
