"""The ``ketasim`` command line.

Exit status: 0 on success, 2 for usage errors (argparse), 1 for bad input (a model file, a dose
table, an option's value), 130 after Ctrl-C (SIGINT), 143 after SIGTERM, 129 after SIGHUP.
Errors are one line on stderr; ``--debug`` (before or after the command) shows the traceback.
A command writes all of its output files or none: a failure or an interrupt leaves existing
files as they were, and no temporary file or new folder behind (see
:class:`ketasim.io.OutputSet`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from ._numtext import g4, to_float, to_int
from ._plainout import plain_output
from .errors import KetasimInputError

DEFAULT_STEP_H = 0.1   # 6 minutes: smooth figures and metrics; the solution is exact at any step


class _Help(argparse.HelpFormatter):
    """argparse's help, wrapped only at spaces: a name such as esketamine-nasal@spravato in a
    description or an option's help is never split at its hyphen (a copied example works)."""

    def _split_lines(self, text, width):
        import textwrap

        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width,
                             break_on_hyphens=False)

    def _fill_text(self, text, width, indent):
        import textwrap

        return textwrap.fill(self._whitespace_matcher.sub(" ", text).strip(), width,
                             initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        # argparse reports words no parser took from the top-level parser ("ketasim: ...
        # see ketasim --help", whose help lists no command's options): they are reported by
        # the command's own parser, with the option meant where one is close
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self._chosen(ns)
            parser.error(f"unrecognized arguments: {' '.join(extras)}"
                         + parser._did_you_mean(extras))
        return ns

    def _chosen(self, ns) -> "_Parser":
        """The (sub)command's parser that ``ns`` was parsed by (``ketasim schedule custom``:
        the ``custom`` parser)."""
        p = self
        while True:
            acts = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
            sub = acts[0].choices.get(getattr(ns, acts[0].dest, None)) if acts else None
            if not isinstance(sub, _Parser):
                return p
            p = sub

    def _did_you_mean(self, words) -> str:
        """" (did you mean --weight?)" for the misspelt ``--options`` among ``words``."""
        import difflib

        known = [o for o in self._option_string_actions if o.startswith("--")]
        close = []
        for w in words:
            if w.startswith("--") and w != "--":
                name = w.split("=", 1)[0]
                m = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
                if m and m[0] not in close:
                    close.append(m[0])
        return f" (did you mean {' or '.join(close)}?)" if close else ""

    def _unknown_options(self) -> list[str]:
        """The ``--name`` words given to this parser that are none of its options (nor an
        abbreviation of one)."""
        known = [o for o in self._option_string_actions if o.startswith("--")]
        return [w for w in getattr(self, "_argv", ()) if w.startswith("--") and w != "--"
                and not any(o.startswith(w.split("=", 1)[0]) for o in known)]

    def _print_message(self, message, file=None):
        # argparse drops an error writing its help or version (``--help > /dev/full`` had
        # ended with status 0 and nothing said): named as any write to standard output is
        if not message or file is None or file is not sys.stdout:
            return super()._print_message(message, file)
        try:
            file.write(message)
            file.flush()
        except BrokenPipeError:        # the reader went away (| head): stop quietly
            _silence_stdout()
            self.exit(1)
        except OSError as exc:
            self.exit(1, f"ketasim: error: {exc.strerror or exc}: standard output\n")

    def error(self, message):  # one line + exit 2, as argparse, but without the usage dump
        if message.startswith("the following arguments are required"):
            unknown = self._unknown_options()     # (a misspelt option is the likelier cause)
            if unknown:
                message = (f"unrecognized arguments: {' '.join(unknown)}"
                           + self._did_you_mean(unknown))
        self.exit(2, f"{self.prog}: usage error: {message} (see {self.prog} --help)\n")


class _SubParser(_Parser):
    """A subcommand's parser: also takes ``--debug`` (``ketasim simulate --debug ...``).

    Every parser made by ``sub.add_parser`` is one (``parser_class``), so subcommands defined
    in other modules get the option too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # SUPPRESS: when not given here, the top-level --debug (default False) stands
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="show tracebacks on errors (default: off)")


def _whole(kind, lo=None, hi=None):
    """An argparse type: a plain whole number (ASCII digits), optionally within [lo, hi]."""
    def conv(s):
        try:
            v = to_int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a whole number ({kind})") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = (f"{lo}-{hi}" if lo is not None and hi is not None
                   else f">= {lo}" if lo is not None else f"<= {hi}")
            raise argparse.ArgumentTypeError(f"{s} is out of range: expected {kind} {rng}")
        return v
    return conv


def _finite(kind, lo=None, strict=False, hi=None):
    def conv(s):
        try:
            v = to_float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a number ({kind})") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{s!r} is not a finite number ({kind})")
        if lo is not None and (v < lo or (strict and v == lo)):
            raise argparse.ArgumentTypeError(f"{s} is out of range: expected {kind} "
                                             f"{'>' if strict else '>='} {lo:g}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"{s} is out of range: expected {kind} <= {hi:g}")
        return v
    return conv


class ParamAction(argparse.Action):
    """``--param NAME=VALUE`` (repeatable): a name given twice is refused (the docs promise a
    value comes from one place; the last one used to win silently)."""

    def __call__(self, parser, namespace, value, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        if any(k == value[0] for k, _ in items):
            parser.error(f"argument {option_string}: {value[0]} is given twice; give each "
                         "parameter once")
        items.append(value)
        setattr(namespace, self.dest, items)


def _param(s):
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"{s!r}: expected NAME=VALUE")
    k, v = s.split("=", 1)
    if not k.strip():       # (had been "unknown name ''", after the model was read)
        raise argparse.ArgumentTypeError(f"{s!r}: the name is empty; expected NAME=VALUE")
    try:
        return k.strip(), to_float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: value {v!r} is not a number") from None


def _thresholds(s):
    out = []
    for part in s.split(","):
        try:
            v = to_float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a number (an occupancy 0-1)") \
                from None
        if not 0.0 <= v <= 1.0:
            raise argparse.ArgumentTypeError(f"{part} is out of range: expected an occupancy "
                                             "between 0 and 1")
        out.append(v)
    return tuple(out)


def _name_start(name: str) -> str:
    """A name for a one-line message: whole up to 60 characters, else its first 57 and
    '...' (a name the system refuses as too long can be thousands of characters)."""
    return name if len(name) <= 60 else name[:57] + "..."


def _out_path(s, suffixes, option=None):
    if s.endswith(("/", os.sep)):       # (Path drops it: 'x.csv/' had written a file x.csv)
        raise argparse.ArgumentTypeError(f"{s!r} ends in {s[-1]!r}, a folder; expected a file "
                                         "name")
    if s == "-":        # (it had read as a misspelt name: "expected a file ending in .csv")
        raise argparse.ArgumentTypeError(f"'-': {option or 'this option'} writes a file, not "
                                         "standard output; expected a file ending in "
                                         + " or ".join(suffixes))
    p = Path(s)
    if p.suffix.lower() not in suffixes:
        raise argparse.ArgumentTypeError(f"{s!r}: expected a file ending in "
                                         + " or ".join(suffixes))
    try:
        is_dir = p.is_dir()
    except OSError as exc:         # a name too long for the file system, say
        # (its start and length: the whole name, thousands of characters, had been printed)
        shown = repr(s) if len(s) <= 60 else f"{_name_start(s)!r} ({len(s):,} characters)"
        raise argparse.ArgumentTypeError(f"{shown}: {exc.strerror or exc}; expected a file "
                                         "name this system can write") from None
    if is_dir:
        raise argparse.ArgumentTypeError(f"{s!r} is a folder, expected a file name")
    return p


_SCHEDULE_OUT_HELP = ("output CSV file (folders are created), or - for standard output "
                      "(default: print the table to the terminal)")


def _schedule_out(v):
    return v if v == "-" else _out_path(v, (".csv",))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ketasim", description="Exact pharmacokinetics of ketamine and esketamine "
                "courses, model-predicted NMDA occupancy and a schematic glutamate response. "
                "A teaching and research tool, never a dosing recommendation.",
                epilog="Ctrl-C or SIGTERM stops a command and leaves no partial file (exit "
                "130 / 143). A command started in the background by a script (cmd &) ignores "
                "Ctrl-C, as every such command does: stop it with kill (SIGTERM).")
    p.add_argument("--debug", action="store_true",
                   help="show tracebacks on errors (default: off)")
    from . import __version__
    p.add_argument("--version", action="version", version=f"ketasim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_SubParser)

    s = sub.add_parser("simulate", help="simulate a model and dose table; write CSV (+ PNG)")
    s.add_argument("--model", default="ketamine-iv",
                   help="preset name or TOML model file (default: ketamine-iv)")
    s.add_argument("--doses", default="standard-iv",
                   help="dose table CSV ('-' reads standard input; NONMEM column names "
                        "accepted), a course TOML file (as ketasim schedule custom reads), "
                        "or a course name: standard-iv, spravato (default: standard-iv)")
    s.add_argument("--until", type=_finite("hours", 0, True), default=None,
                   help="simulate up to this time, h (default: last dose + 4 weeks)")
    s.add_argument("--step", type=_finite("hours", 0, True), default=DEFAULT_STEP_H,
                   help=f"output grid step, h (default: {DEFAULT_STEP_H:g})")
    s.add_argument("--out", required=True, type=lambda v: v if v == "-" else _out_path(
                   v, (".csv",)), help="output CSV file (folders are created), or - for "
                   "standard output (required)")
    s.add_argument("--weight", type=_finite("kg", 0, True), default=None,
                   help="body weight, kg (default: the dose table's weight_kg column, else 70)")
    s.add_argument("--plot", type=lambda v: _out_path(v, (".png", ".pdf", ".svg"), "--plot"),
                   default=None, help="also write the course figure (PNG, PDF or SVG; "
                   "default: none)")
    s.add_argument("--summary", action="store_true",
                   help="print per-session metrics (Cmax, Tmax, AUC, trough, occupancy, "
                        "glutamate) and course metrics (default: off)")
    s.add_argument("--thresholds", type=_thresholds, default=None,
                   metavar="OCC[,OCC...]",
                   help="occupancy thresholds (0-1) for --summary's time above threshold "
                        "(default: 0.2,0.3,0.4)")
    s.add_argument("--param", type=_param, action=ParamAction, default=[], metavar="NAME=VALUE",
                   help="override a model parameter (repeatable; default: none)")
    s.add_argument("--occupancy-calibration", default=None, metavar="NAME",
                   help="Ki calibration reported as occupancy (presets: in-vivo, the default, "
                        "or in-vitro); the schematic response does not depend on it")
    s.add_argument("--amounts", action="store_true",
                   help="also write every compartment's amount and the amount eliminated, mg "
                        "(columns amount_<compartment>_mg, as NONMEM's A(i); default: off)")

    pr = sub.add_parser("presets", help="list the shipped models and their sources; "
                        "presets NAME: its parameters and routes")
    pr.add_argument("name", nargs="?", default=None, metavar="NAME",
                    help="a preset name or model file: list its parameters (value, unit, "
                         "source) and routes (default: list every preset)")
    pr.add_argument("--verbose", "-v", action="store_true",
                    help="also print descriptions (default: off)")

    sc = sub.add_parser("schedule", help="write a course as a dose table")
    ssub = sc.add_subparsers(dest="course", required=True, parser_class=_SubParser)
    a = ssub.add_parser("standard-iv", help="3 sessions in week 1, 2 in week 2, weekly in "
                        "weeks 3-5, then every 4 weeks; 0.5 mg/kg over 40 min")
    # (at most 10 mg/kg, as `course --dose`: anaesthetic induction is 1-4.5)
    a.add_argument("--dose-mg-per-kg", type=_finite("mg/kg", 0, True, hi=10.0), default=0.5,
                   help="dose per session, mg/kg, at most 10 (default: 0.5)")
    a.add_argument("--weight", type=_finite("kg", 0, True), default=None,
                   help="body weight, kg, for the mg/kg doses; when given, the table records "
                   "it in a weight_kg column, so the course is simulated at that weight "
                   "(default: 70, not recorded)")
    a.add_argument("--months", type=_finite("months", 0, True), default=6.0,
                   help="course length, months of 30.44 days (default: 6)")
    # (bounds of the course itself, named here in the options' units: they had been refused
    # as "duration_h: got 16666.7, expected hours ... at most 8784" and "phase: every_days")
    from .courses import MAX_SESSION_H, MIN_GAP_DAYS
    a.add_argument("--infusion-min", type=_finite("minutes", 0, True, hi=MAX_SESSION_H * 60),
                   default=40.0, help="infusion length, minutes, at most a year (default: 40)")
    a.add_argument("--maintenance-days", type=_finite(
                   "days (an hour at least: doses closer are one session)", MIN_GAP_DAYS),
                   default=28.0,
                   help="interval of maintenance sessions, days (default: 28, every 4 weeks)")
    a.add_argument("--out", default=None, type=_schedule_out, help=_SCHEDULE_OUT_HELP)
    b = ssub.add_parser("spravato", help="esketamine nasal-spray label course")
    b.add_argument("--dose", type=_whole("mg"), choices=(56, 84), default=56,
                   help="mg per session after day 1 (day 1 is 56 mg; default: 56)")
    b.add_argument("--maintenance", choices=("weekly", "biweekly"), default="biweekly",
                   help="from week 9 (default: biweekly)")
    b.add_argument("--months", type=_finite("months", 0, True), default=6.0,
                   help="course length, months of 30.44 days (default: 6)")
    b.add_argument("--out", default=None, type=_schedule_out, help=_SCHEDULE_OUT_HELP)
    c = ssub.add_parser("custom", help="a course from a phases TOML file")
    c.add_argument("phases", help="TOML file with amount_mg, route, duration_h and [[phase]] "
                   "(- reads it from standard input)")
    c.add_argument("--months", type=_finite("months", 0, True), default=None,
                   help="course length, months (default: the file's months)")
    c.add_argument("--out", default=None, type=_schedule_out, help=_SCHEDULE_OUT_HELP)
    from . import cli_teach
    cli_teach.add_parsers(sub)
    from . import cli_population
    cli_population.add_population_parser(sub)
    cli_population.add_sweep_parser(sub)
    from . import cli_bench
    cli_bench.add_parser(sub)
    return p


DEFAULT_WEIGHT_KG = 70.0     # kg: the body weight of a command without --weight


def weight_or_default(weight) -> float:
    """``--weight`` as given, or :data:`DEFAULT_WEIGHT_KG` when it was not."""
    return DEFAULT_WEIGHT_KG if weight is None else float(weight)


def table_weight(weight, doses) -> float:
    """The body weight of a command: ``--weight``, or else the dose table's ``weight_kg``
    column (its value when the table has one; a table of several subjects keeps its own per
    subject), or else 70 kg. Both ``--weight`` and the column is refused: neither may
    silently win over the other."""
    import numpy as np

    col = (doses.covariates or {}).get("weight_kg")
    if col is None:
        return weight_or_default(weight)
    v = col[~np.isnan(col)]
    one = float(v[0]) if v.size and np.all(v == v[0]) else None
    if weight is not None and float(weight) != one:
        raise KetasimInputError(f"--weight: {doses.source or 'the dose table'} has a weight column "
                                f"(weight_kg or WT{f', {one:g} kg' if one is not None else ''}); "
                                "give the weight in one place")
    return one if one is not None else DEFAULT_WEIGHT_KG


def note_skipped(doses) -> None:
    """Say on stderr how many observation rows a dose table had (skipped), and which subjects
    had nothing else: they have no dose, so they are not simulated."""
    k = doses.n_skipped
    if k:
        print(f"{doses.source}: skipped {k:,} observation row{'s' if k != 1 else ''} (evid 0 or "
              "2, MDV, or no dose item)", file=sys.stderr)
    ids = doses.observation_only_subjects
    if ids:
        from .io import id_label

        shown = ", ".join(str(id_label(v)) for v in ids[:10]) + (f" and {len(ids) - 10:,} more"
                                                         if len(ids) > 10 else "")
        print(f"{doses.source}: subject{'s' if len(ids) > 1 else ''} {shown} "
              f"{'have' if len(ids) > 1 else 'has'} only observation rows: no dose, so not "
              "simulated", file=sys.stderr)


def _doses_for(spec: str, weight: float):
    from .courses import resolve_doses

    try:
        return resolve_doses(spec, weight_kg=weight)
    except KetasimInputError as exc:
        msg = str(exc)
        raise KetasimInputError("--" + msg if msg.startswith("doses:") else msg) from None


def _write_all(outputs: list[tuple[Path, object]], inputs=()) -> None:
    """Write every output or none (see :class:`ketasim.io.OutputSet`).

    ``data`` is bytes, or a callable writing text to an open file (streamed: large tables are
    never held in memory as text). ``inputs`` are ``(option, path)`` pairs no output may be."""
    from .io import write_outputs

    write_outputs(outputs, inputs)


def _check_stdout_open(out) -> None:
    """``--out -`` is refused before any work when standard output is closed."""
    if out == "-" and sys.stdout is None:
        raise KetasimInputError("--out -: standard output is closed; expected it open, or a "
                                "file name")


def _check_stdout_is_no_input(args) -> None:
    """Refuse, before any work, standard output redirected to one of the command's input files
    (``ketasim course --doses d.csv >> d.csv``, ``presets m.toml >> m.toml``), as ``cat f >> f``
    is refused: what the command prints (a summary, a table) had been appended to the input it
    was made from. (``--out -`` is checked with the outputs, :func:`ketasim.io.check_outputs`.)"""
    if sys.stdout is None or getattr(args, "out", None) == "-":
        return
    from .io import _is_stdin, _stdout_is_stdin

    inputs = list(_input_files(args))
    if args.command == "presets" and getattr(args, "name", None):
        inputs.append(("presets NAME", args.name))
    if args.command == "compare":
        from .cli_teach import parse_spec

        for spec in getattr(args, "specs", ()):
            try:
                m, d, _ = parse_spec(spec)
            except KetasimInputError:       # (said by the command, in its turn)
                continue
            inputs += [(f"SPEC {spec}", m), (f"SPEC {spec}", d)]
    after = ("redirect it to another file (what the command prints would be written into "
             "the input)")
    for lab, p in inputs:
        if str(p) == "-":
            if _stdout_is_stdin():
                raise KetasimInputError(f"standard output is redirected to the file standard "
                                        f"input reads from (the {lab} input '-'); {after}")
            continue
        try:
            same = Path(p).is_file() and _is_stdin(Path(p), 1)
        except (OSError, ValueError):
            same = False
        if same:
            raise KetasimInputError(f"standard output is redirected to the {lab} input "
                                    f"{str(p)!r}; {after}")


def _check_prints_to_stdout(what: str, instead: str = "") -> None:
    """A command whose result is printed (``presets``, ``schedule`` without --out) is refused
    before any work when standard output is closed (``>&-``): it had ended with status 0,
    what it printed gone nowhere."""
    if sys.stdout is None:
        raise KetasimInputError(f"standard output is closed, where {what} would be printed; "
                                f"expected it open{instead}")


@contextlib.contextmanager
def _stdout_named():
    """An error writing standard output (a full disk) named "standard output", as a file's
    error names the file; a closed pipe (``| head``) goes on as BrokenPipeError."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise type(exc)(exc.errno, exc.strerror, "standard output") from exc


@contextlib.contextmanager
def _to_stdout():
    """Write a table to standard output (``--out -``), flushed here (see
    :func:`_stdout_named`)."""
    with _stdout_named():
        yield
        sys.stdout.flush()


def _summary_then_files(summary, write) -> None:
    """Print a command's ``summary`` (text, or None) to standard output, flushed, then
    ``write()`` its files: a summary that cannot be printed (a full disk) fails the command
    before a file is replaced, as a table for ``--out -`` does (the files had been written
    and the command had then failed, without a word that they were); a reader that went away
    (``| head``) still gets the files."""
    if summary is not None and sys.stdout is not None:
        try:
            with _to_stdout():
                print(summary)
        except BrokenPipeError:
            write()
            raise
    write()


class _NamedStdout:
    """``sys.stdout`` while a command runs: every write and flush as :func:`_stdout_named`
    says its errors, so a table or listing printed to a full disk (``ketasim presets >
    /dev/full``) is refused naming standard output, not with a bare "No space left on
    device". Everything else is the stream's own."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, s):
        with _stdout_named():
            return self._stream.write(s)

    def writelines(self, lines):
        with _stdout_named():
            return self._stream.writelines(lines)

    def flush(self):
        with _stdout_named():
            return self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _input_files(args) -> list[tuple[str, str]]:
    """The ``(option, path)`` inputs of a command that are files (for :func:`check_outputs`)."""
    # (schedule custom's phases file is a positional argument: there is no --phases option)
    return [(k if k == "phases" else f"--{k}", v) for k in ("model", "doses", "phases",
                                                             "covariates")
            if isinstance(v := getattr(args, k, None), (str, Path))]


def _say_reading_the_terminal(args) -> None:
    """An input given as ``-`` (standard input) while standard input is the terminal waits
    for the table to be typed: say so, once, on standard error (it had waited without a
    word, as if it hung)."""
    if sys.stderr is None:
        return
    try:
        at_terminal = sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):           # (closed)
        return
    if not at_terminal:
        return
    for lab, p in _input_files(args):
        if str(p) == "-":
            print(f"ketasim: reading the {lab} input from the terminal (standard input): type "
                  "it, then Ctrl-D on a line of its own; Ctrl-C stops", file=sys.stderr,
                  flush=True)
            return


def _check_output_paths(args, *names) -> None:
    """Refuse, before any work, an output that is an input file or another output."""
    from .io import check_outputs

    check_outputs([(f"--{n}", getattr(args, n, None)) for n in names], _input_files(args))


def _format_table(head, rows) -> str:
    def fmt(v):
        if isinstance(v, (int, str)):
            return str(v)
        return "–" if v != v else g4(v)
    cells = [head] + [[fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)


class _Background:
    """``with _Background(fn, *args) as job:`` runs ``fn(*args)`` in a thread;
    ``job.result()`` waits for it and returns its value or raises its exception. Without
    ``fn``, nothing runs and the result is None.

    The thread never outlives the block: on the way out (an error, Ctrl-C) the block waits for
    it to end, with signals held back meanwhile (an interpreter that ends under a thread inside
    compiled drawing code aborts instead of exiting)."""

    def __init__(self, fn=None, *args):
        self._call_args = (fn, args)
        self._value = self._error = None
        self._done = threading.Event()
        self._thread = None

    def _call(self, fn, args):
        try:
            self._value = fn(*args)
        except BaseException as exc:       # raised again in the waiting thread
            self._error = exc
        finally:
            self._done.set()

    def __enter__(self):
        from .io import signals_held

        if self._call_args[0] is None:
            self._done.set()
            return self
        try:
            with signals_held():       # started and known to __exit__ together
                self._thread = threading.Thread(target=self._call, args=self._call_args,
                                                name="ketasim-background")
                self._thread.start()
        except BaseException:          # an interrupt held back meanwhile
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        from .io import signals_held

        if self._thread is not None:
            with signals_held():
                self._thread.join()
        return False

    def result(self):
        # an Event, not join(): an interrupted join can take a running thread for ended
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


def cmd_simulate(args) -> int:
    import numpy as np

    from .cli_teach import _weight_given, route_warning, weight_unused
    from .modelfile import load_model
    from .simulate import time_grid

    _check_output_paths(args, "out", "plot")
    _check_stdout_open(args.out)
    if args.thresholds is not None and not args.summary:
        raise KetasimInputError("--thresholds: only with --summary (they set its time-above-"
                                "threshold columns)")
    model = load_model(args.model)
    if args.thresholds is not None and not model.has_occupancy:
        raise KetasimInputError(f"--thresholds: model {model.name!r} has no occupancy (no "
                                "[occupancy] section): there is no time above an occupancy "
                                "threshold to summarise")
    if args.summary and not model.concentration_names:
        raise KetasimInputError(
            f"--summary: model {model.name!r} has no concentration to summarise (no compartment "
            "with a volume, observe alias or effect site); give a compartment a volume in "
            "[compartments], or leave out --summary")
    doses = _doses_for(args.doses, weight_or_default(args.weight))
    weight = table_weight(args.weight, doses)
    for warn in (route_warning(model, doses), weight_unused(model, _weight_given(args))):
        if warn:
            print(f"ketasim: warning: {warn}", file=sys.stderr)
    note_skipped(doses)
    until = args.until
    if until is None:
        from .engine import default_horizon_h

        until = default_horizon_h(doses)
    from .engine import running_at_end_note
    note = running_at_end_note(doses, until)
    if note:
        print(f"ketasim: warning: {note}", file=sys.stderr)
    _check_until(args, model, until)
    if (args.summary or args.plot is not None) and args.until is not None:
        from .engine import session_starts

        starts = np.asarray(session_starts(doses), dtype=float)   # (subjects: NaN-padded)
        first = float(np.nanmin(starts)) if np.isfinite(starts).any() else None
        if first is not None and not first < until:
            opts = " and ".join(o for o, on in (("--summary", args.summary),
                                                ("--plot", args.plot is not None)) if on)
            raise KetasimInputError(
                f"--until: got {until:g} h, but the first session starts at {first:g} h: "
                f"{opts} need{'s' if ' and ' not in opts else ''} a session within the "
                f"simulated time; expected --until after {first:g}")
    params = dict(args.param)
    times = time_grid(until, args.step)
    cal = {}
    if args.occupancy_calibration is not None:
        model.resolve_calibration(args.occupancy_calibration)   # one-line error for an unknown name
        cal = {"occupancy_calibration": args.occupancy_calibration}
    from . import _offload

    # with a figure: a helper process on the second core, when there is one, imports
    # matplotlib while this one simulates, then draws while this one writes the table
    # (ketasim._offload)
    helper = _offload.start() if args.plot is not None else _offload.Helper()
    try:
        from . import _warm

        _warm.ahead(*kernels_needed(args))    # (a first run: see ketasim._warm)
        return _simulate_rest(args, model, doses, times, params, weight, cal, helper)
    finally:
        helper.close()


def _check_until(args, model, until: float) -> None:
    """Refuse, naming --until (or --doses, when the run's end comes from the doses), a run
    longer than the schematic response or the exact metrics of --summary and --plot can reach
    (the Python API's own check had named its arguments, "times" or "horizon_h")."""
    from .engine import DEFAULT_HORIZON_NOTE, PD_MAX_HORIZON_H

    if until <= PD_MAX_HORIZON_H:
        return
    parts = (["the schematic response (glutamate, plasticity, consolidation)"]
             if model.has_glutamate else [])
    opts = [o for o, on in (("--summary", args.summary), ("--plot", args.plot is not None)) if on]
    if opts:
        parts.append(f"the exact metrics of {' and '.join(opts)}")
    if not parts:
        return          # concentrations alone: exact at any time
    what = ("--until" if args.until is not None else
            f"--doses {args.doses} ({DEFAULT_HORIZON_NOTE})")
    raise KetasimInputError(
        f"{what}: the run ends at {until:g} h, beyond the {PD_MAX_HORIZON_H:g}-h limit (about "
        f"1,100 years) of {' and '.join(parts)}: their steps are at most 64 h; expected "
        + (f"--until at most {PD_MAX_HORIZON_H:g}" if args.until is not None
           else "a shorter course, or --until"))


def _plot_bytes(run, fmt: str) -> bytes:
    """``simulate --plot``'s figure of a Result or CourseRun, encoded (run by
    :mod:`ketasim._offload`)."""
    from .plotting import encode_figure, plot_course

    return encode_figure(plot_course(run), fmt, 120)


def _simulate_rest(args, model, doses, times, params, weight, cal, helper) -> int:
    import numpy as np

    from . import _offload
    from .io import column_name, write_result_table
    from .simulate import simulate

    result = simulate(model, doses, times, params=params, weight_kg=weight,
                      amounts=args.amounts, **cal)
    cols = [column_name(nm) for nm in result.names]
    to_stdout = args.out == "-"
    outputs = [] if to_stdout else [(args.out, lambda fh: write_result_table(result, fh))]
    job = ()
    if args.plot is not None:
        fmt = args.plot.suffix.lstrip(".").lower()
        if result.data.nbytes > _offload.MAX_PAYLOAD_BYTES:
            helper.close()      # a very large result is not copied to a helper
        if helper.pid is not None:
            from .plotting import _as_run

            # the figure's exact session metrics are computed here, where the kernels are
            # loaded already (a forked helper loading one more takes about 0.25 s)
            helper.submit(_plot_bytes, _as_run(result, 8.0), fmt)
        else:
            from .plotting import encode_figure, plot_course
            job = (encode_figure, plot_course(result), fmt, 120)
    # the figure is drawn and encoded (by the helper, else by a thread, while this thread
    # writes the table: its formatting releases the GIL); it is written after the table
    with _Background(*job) as figure:
        if args.plot is not None:
            ready = figure if job else helper
            outputs.append((args.plot, lambda fh: fh.write(ready.result()), True))
        summary = None
        if args.summary:
            from .metrics import course_metrics
            analyte = "plasma" if "plasma" in result.names else model.concentration_names[0]
            cm = course_metrics(result, analyte=analyte,
                                thresholds=args.thresholds or (0.2, 0.3, 0.4),
                                _warn_after_end=False)
            labels = None
            if result.population:        # a dose table with subjects: a row per subject
                from .io import id_label, subject_labels
                labels = [id_label(v) for v in subject_labels(result)]
            head, rows = cm.table(subjects=labels)
            kinds = ["concentrations ng/mL", "times h"]
            if "peak_occupancy" in head:
                kinds.append("occupancy model-predicted" + (
                    f", calibration {args.occupancy_calibration}"
                    if args.occupancy_calibration is not None else ""))
            if "peak_glutamate" in head:
                kinds.append("glutamate schematic")
            summary = (f"Per-session metrics ({analyte}; {'; '.join(kinds)}):\n"
                       + _format_table(head, rows))
            if "trough_ng_ml" in head and any(
                    r[head.index("trough_ng_ml")] != r[head.index("trough_ng_ml")] for r in rows):
                summary += ("\n– trough: the concentration just before the next session; the "
                            "last session has none in the simulated time")
            if labels is None:
                # sessions the grid does not reach: said, with what that does to the last one
                from .engine import session_starts

                end = float(result.times[-1])
                starts = session_starts(result.doses)
                later = int(np.sum(starts >= end))
                if later:
                    summary += (f"\n– {later} later session{'s' if later > 1 else ''} of the "
                                f"dose table start{'s' if later == 1 else ''} at or after the "
                                f"grid's end ({end:g} h) and {'is' if later == 1 else 'are'} "
                                "not shown; the last session shown "
                                # (one starting at the grid's end ends the one before it there)
                                + ("ends there, where the next one starts (whole, with its "
                                   "trough)"
                                   if np.any(starts == end) else
                                   "is cut there (its AUC and time above end at the grid's "
                                   "end)"))
            if labels is not None:
                # a dose table with subjects: their sessions the grid does not reach, said
                # too (a subject with none before it had been left out of the table silently)
                from .engine import session_starts

                end = float(result.times[-1])
                ids = result.doses.subject_ids
                later = [int(np.sum(session_starts(result.doses._take(
                    np.flatnonzero(result.doses.subject == sid))) >= end)) for sid in ids]
                if sum(later):
                    who = [lab for lab, k in zip(labels, later) if k]
                    summary += (f"\n– {sum(later)} later session{'s' if sum(later) > 1 else ''}"
                                f" of subject{'s' if len(who) > 1 else ''} "
                                f"{', '.join(str(w) for w in who)} start"
                                f"{'s' if sum(later) == 1 else ''} at or after the grid's end "
                                f"({end:g} h) and {'is' if sum(later) == 1 else 'are'} not "
                                "shown")
            if labels is not None and np.isfinite(cm.plasticity_end).any():
                ms = np.asarray(cm.maintenance_start_h, dtype=float)
                summary += ("\nCourse (schematic): plasticity index at the end, and its minimum "
                            "during maintenance (from the day shown):\n" + _format_table(
                                ["subject", "plasticity_end", "plasticity_min_maintenance",
                                 "maintenance_from_day"],
                                [[sid, float(cm.plasticity_end[i]),
                                  float(cm.plasticity_min_maintenance[i]), float(ms[i] / 24)]
                                 for i, sid in enumerate(labels)]))
            elif labels is None and np.isfinite(cm.plasticity_end):
                summary += f"\nCourse: plasticity index at end {cm.plasticity_end:.3g}; "
                if np.isfinite(cm.maintenance_start_h):
                    summary += ("minimum during maintenance (from day "
                                f"{cm.maintenance_start_h / 24:.4g}) "
                                f"{cm.plasticity_min_maintenance:.3g} (schematic)")
                else:
                    # (a course at one interval throughout has none: the words had
                    # described it, five weekly sessions "have no ... three or more
                    # sessions at one interval up to the end")
                    summary += ("no maintenance phase in the simulated time (three or more "
                                "sessions at one interval up to the end, after sessions at "
                                "another interval) (schematic)")
        if to_stdout:
            # the table first: one that cannot be written (a full disk) fails the command
            # before --plot replaces a file (it had been replaced, and the command failed)
            try:
                with _to_stdout():
                    write_result_table(result, sys.stdout)
            except BrokenPipeError:      # the reader stopped reading (| head): not a failure
                _write_all(outputs, _input_files(args))
                raise
        if to_stdout:
            _write_all(outputs, _input_files(args))
        else:
            _summary_then_files(summary or None,
                                lambda: _write_all(outputs, _input_files(args)))
    if summary and to_stdout:
        print(summary, file=sys.stderr)
    print(f"wrote {'standard output' if to_stdout else args.out} ({len(times):,} times, "
          f"{len(cols)} outputs)" + (f" and {args.plot}" if args.plot else ""), file=sys.stderr)
    return 0


def cmd_presets(args) -> int:
    from .modelfile import list_presets, load_model

    _check_prints_to_stdout("the list of presets" if args.name is None
                            else f"the parameters of {args.name}")
    if args.name is not None:
        from .cli_teach import print_preset
        return print_preset(args.name, verbose=args.verbose)

    for name in list_presets():
        m = load_model(name)
        print(f"{name}\n  {m.meta.get('title', '')}\n  source: {m.meta.get('citation', '')}\n"
              f"  sampling: {m.meta.get('sampling', 'n/a')}; routes: {', '.join(m.routes)}")
        if args.verbose:
            print("  " + " ".join(m.meta.get("description", "").split()))
    return 0


def cmd_schedule(args) -> int:
    from . import courses as dosing
    from .dosing import write_doses

    _check_output_paths(args, "out")
    _check_stdout_open(args.out)
    if args.out is None:
        _check_prints_to_stdout("the table", ", or --out FILE.csv")
    if args.course == "standard-iv":
        w = weight_or_default(args.weight)
        d = dosing.standard_iv_course(args.dose_mg_per_kg, w, args.months,
                                      infusion_min=args.infusion_min,
                                      maintenance_every_days=args.maintenance_days)
        if args.weight is not None:
            # a weight no person has (grams or pounds meant?) is said, as every command that
            # takes --weight says it: its mg amounts had been written without a word
            from .model import warn_implausible_weight

            warn_implausible_weight(w)
            # amounts in mg for this weight: the table says so, so that a simulation of it
            # runs at the same weight (not silently at 70 kg)
            import dataclasses

            import numpy as np
            d = dataclasses.replace(d, covariates={"weight_kg": np.full(len(d.time_h), w)})
    elif args.course == "spravato":
        d = dosing.spravato_course(args.dose, args.maintenance, args.months)
    else:
        d = dosing.read_course_toml(args.phases, months=args.months)
    if args.out is None:
        from .cli_teach import print_schedule
        print_schedule(d)
        return 0
    if args.out == "-":
        from .dosing import doses_csv_text
        with _to_stdout():      # (a full disk had been said without naming the output)
            sys.stdout.write(doses_csv_text(d))
        return 0
    write_doses(d, args.out)
    print(f"wrote {args.out} ({len(d)} session{'s' if len(d) != 1 else ''})", file=sys.stderr)
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, turned into the same clean-up path as Ctrl-C."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _warning_shower(args, python_shows):
    """A ``warnings.showwarning`` that shows a :class:`~ketasim.errors.KetasimWarning` as one
    line, ``ketasim: warning: ...``, naming options as the command's own (:func:`as_options`),
    and any other warning as ``python_shows`` does."""
    from .errors import KetasimWarning

    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, KetasimWarning):
            # each said once: a "once" filter forgets what it showed whenever the filters
            # change (any catch_warnings block), and a course's weight no person has had been
            # said twice, by the check of its size and by its run
            text = as_options(args, str(message))
            if text not in shown:
                shown.add(text)
                print(f"ketasim: warning: {text}", file=file or sys.stderr)
        else:
            python_shows(message, category, filename, lineno, file, line)
    return show


#: the command line's words for positional arguments (an option is ``--`` and its name)
POSITIONAL_WORDS = {"name": "NAME", "phases": "phases", "specs": "SPEC"}


def _name_too_long(args, name: str) -> str:
    """One line for a path the system refuses as too long: the argument that gave it, the
    start of the name and what a path may be (the whole name, thousands of characters, had
    been printed, and no argument named)."""
    shown = _name_start(name)
    field = None
    for dest, value in vars(args).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, (str, os.PathLike)) and name in str(v) for v in values):
            field = POSITIONAL_WORDS.get(dest, "--" + dest.replace("_", "-"))
            break
    return (f"{field + ': ' if field else ''}file name too long: {shown!r} ({len(name):,} "
            "characters); expected a path the system accepts (on most systems each folder or "
            "file name in it at most 255 bytes)")


#: what to ask for less of when a command runs out of memory, in its own options (a sweep
#: of 9 million grid points had been told to "use a coarser --step, a shorter --until",
#: options it does not have)
_MEMORY_ADVICE = {
    "simulate": "use a coarser --step, a shorter --until or a shorter course",
    "course": "use a shorter course (--months) or a shorter --closeup",
    "compare": "use shorter courses (--months), fewer SPECs or a shorter --closeup",
    "population": "use fewer subjects (--n), fewer --metrics, a smaller --chunk-size or, with "
                  "--bands or --plot, a larger --band-step",
    "sweep": "use fewer grid points (the N of each --vary), fewer --metrics, fewer subjects "
             "per point (--n) or a smaller --chunk-size",
    "schedule": "use a shorter course (--months)",
}


def _fail(args, message: str) -> int:
    print(f"ketasim: error: {message}", file=sys.stderr)
    return 1


#: Python argument names that head an input error (or its part after ``preset NAME: ``), as
#: the option of the command that set them: ``--param CLX=5`` is refused as ``--param: unknown
#: name 'CLX'``, not as ``params: ...``
OPTION_OF = {"params": "--param", "metrics": "--metrics", "vary": "--vary",
             "band_outputs": "--band-outputs", "occupancy_calibration": "--occupancy-calibration",
             "closeup_h": "--closeup", "scheduler": "--scheduler", "covariates['age_y']": "--age",
             "horizon_h": "--months", "weight_kg": "--weight", "model": "--model",
             "step": "--step", "doses": "--doses", "bands": "--band-step",
             "thresholds": "--thresholds"}


def as_options(args, message: str) -> str:
    """``message`` with the first Python argument name that heads it or one of its ``: ``
    parts (:data:`OPTION_OF`) given as the command's option, when the command has that option
    and the user gave it (the same name may come from a file: a ``--covariates`` table's
    age_y is left as it is)."""
    import re

    parser = build_parser()
    if getattr(args, "command", None) is None:
        return message
    # (the parser of the command as given: `schedule standard-iv`'s, whose --weight the
    # `schedule` parser does not have)
    cmd = parser._chosen(args)
    cov = re.match(r"covariates\['(\w+)'\] \((?:--age or )?--covariates\): ", message)
    if cov is not None:
        # a value out of the model's range, which the Python API names "covariates['age_y']
        # (--age or --covariates)": named as the option given, and the file
        col, rest = cov.group(1), message[cov.end():]
        if col == "age_y" and getattr(args, "age", None) is not None:
            # (one age for every subject: which subject is no news)
            return "--age: " + re.sub(r"^subject \d+ \([^)]*\): ", "", rest)
        if getattr(args, "covariates", None):
            return f"--covariates: {args.covariates}: {col}: {rest}"
        return message
    names = "|".join(re.escape(k) for k in OPTION_OF)
    # a name may carry what it is about: params['CL'] (--param CL=...), vary weight_kg
    m = re.search(rf"(?:^|(?<=: ))({names})(?:\['([^']*)'\]| ([^\s:(][^\s:]*))?: ", message)
    if m is None:
        return message
    opt = OPTION_OF[m.group(1)]
    about = m.group(2) if m.group(2) is not None else m.group(3)
    action = cmd._option_string_actions.get(opt)
    if action is None or getattr(args, action.dest, None) in (None, [], False):
        origin = _weight_origin(args) if opt == "--weight" and m.start(1) == 0 else None
        if origin is not None:
            # a weight from a file or a grid, not --weight: named where it comes from (a
            # --covariates weight of 900 kg had been warned about as "weight_kg: 900 kg ...")
            return origin + message[m.end(1):]
        return message
    if opt == "--age" and getattr(args, "covariates", None):
        return message
    return (message[:m.start(1)] + opt + (f" {about}" if about is not None else "") + ": "
            + message[m.end():])


def _weight_origin(args) -> str | None:
    """Where the body weights of a command without ``--weight`` come from, as a message names
    them in place of a bare ``weight_kg`` (a dose table's column, a ``--covariates`` file, a
    sweep's ``--vary weight_kg``), or None (70 kg: nothing to name). A command that knows
    better (compare, one SPEC at a time) sets ``args.weight_origin``."""
    origin = getattr(args, "weight_origin", None)
    if origin is not None:
        return origin
    cmd = getattr(args, "command", None)
    if cmd == "sweep" and any(str(v).split("=", 1)[0].strip() == "weight_kg"
                              for v in getattr(args, "vary", None) or ()):
        return "--vary weight_kg"
    if cmd == "population":
        cov = getattr(args, "covariates", None)
        return f"--covariates: {cov}: weight_kg" if cov else None
    doses = getattr(args, "doses", None)
    if isinstance(doses, str):
        from .courses import is_course_name

        if not is_course_name(doses):
            return ("--doses: standard input: weight_kg" if doses in ("-", "/dev/stdin")
                    else f"--doses: {doses}: weight_kg")
    return None


def _closed_stderr():
    """With standard error closed (``2>&-``: ``sys.stderr`` is None) messages are dropped:
    ``print(..., file=None)`` writes to standard output, and "wrote standard output (...)" had
    been appended to the table of ``--out -``. Returns a function that puts None back."""
    if sys.stderr is not None:
        return lambda: None
    sys.stderr = open(os.devnull, "w", encoding="utf-8")

    def restore():
        devnull, sys.stderr = sys.stderr, None
        devnull.close()
    return restore


def main(argv=None) -> int:
    restore_output = restore_stderr = lambda: None
    handled = []
    # an interrupt raised where Python can only report it ("Exception ignored on calling
    # ctypes callback": inside the JIT compiler's C code) is recorded by interrupt(), which
    # stops the command later (io.raise_swallowed): no report of it is printed meanwhile
    default_hook = sys.unraisablehook
    try:
        # (the setting up is inside too: a Ctrl-C before the handlers below are set is the
        # same one line and status 130, not a traceback)
        from .io import clear_raised, interrupt  # imported here, never inside a signal handler

        clear_raised()
        restore_output = plain_output()   # "–" as "-" on an ASCII terminal (ketasim._plainout)
        restore_stderr = _closed_stderr()

        def on_signal(signum, frame):
            # deferred while files are being created, moved or removed (io.signals_held)
            interrupt(KeyboardInterrupt() if signum == signal.SIGINT else _Terminated(signum))

        def unraisable(info):
            if not isinstance(info.exc_value, (KeyboardInterrupt, _Terminated)):
                default_hook(info)

        sys.unraisablehook = unraisable
        if threading.current_thread() is threading.main_thread():
            for name, default in (("SIGINT", signal.default_int_handler),
                                  ("SIGTERM", signal.SIG_DFL), ("SIGHUP", signal.SIG_DFL)):
                sig = getattr(signal, name, None)
                if sig is not None and signal.getsignal(sig) == default:
                    handled.append((sig, default))      # (first: put back whatever happens)
                    signal.signal(sig, on_signal)
        # (parsing is inside: an option's check may import a module, e.g. pyarrow for a
        # Parquet --out, and Ctrl-C there is an interrupt like any other)
        args = build_parser().parse_args(argv)
        return _run(args)
    except _Terminated as exc:
        name = signal.Signals(exc.signum).name
        print(f"ketasim: stopped by {name}", file=sys.stderr)
        return 128 + int(exc.signum)
    except KeyboardInterrupt:
        print("ketasim: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    finally:
        restore_output()
        restore_stderr()
        sys.unraisablehook = default_hook
        for sig, default in handled:
            signal.signal(sig, default)
        kio = sys.modules.get("ketasim.io")
        if kio is not None:
            kio.clear_raised()          # the record belongs to this command only
        warm = sys.modules.get("ketasim._warm")
        if warm is not None:      # a first-run helper still compiling: stop it now
            warm.stop()


def console(argv=None) -> int:
    """The ``ketasim`` program (``python -m ketasim`` and the installed command): :func:`main`,
    then a quick exit.

    Once a command has returned, every output file is written and closed, so the process ends
    without tearing the interpreter down (freeing every module and object of Numba, LLVM and
    matplotlib takes about 0.2 s, longer than some commands). Everything an ordinary exit does
    for the user still happens first: the exit handlers run and standard output and error are
    flushed. The exit is the ordinary one when ketasim is not the program itself (run under a
    profiler, ``runpy`` or ``python -i``), while another thread is alive, or when a stream
    cannot be flushed (the interpreter then reports the error, as always)."""
    # Numba highlights its error messages with colorama, which then writes a colour reset
    # (ESC [0m) to the terminal when the program exits, after ketasim's last line: Numba
    # builds one such message whenever it loads its list support, error or not
    os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")
    _matplotlib_folder()
    rc = main(argv)
    _quick_exit(rc)
    return rc


def _matplotlib_folder() -> None:
    """Matplotlib's folder for its settings and font cache, for the program, where its own
    (``~/.config/matplotlib``, ``~/.cache/matplotlib``) cannot be made or written (a read-only
    home, none at all: a container run as a user of its own): ``ketasim-<uid>/matplotlib`` in
    the temporary folder, this user's own (see :mod:`ketasim._numba_cache`). Matplotlib had
    made a new temporary folder in every process that drew, said so in two lines of warnings,
    built its font cache again each time, and the figure helper's folder (the helper ends
    without Python's clean-up) was left in the temporary folder by every run. A
    ``MPLCONFIGDIR`` set by the user is kept; only Linux, where matplotlib uses those two."""
    if os.environ.get("MPLCONFIGDIR") or "matplotlib" in sys.modules or \
            not sys.platform.startswith(("linux", "freebsd")):
        return
    from ._numba_cache import private_folder, writable

    def could_make(folder: Path) -> bool:
        for p in (folder, *folder.parents):
            if p.exists():
                return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
        return False

    try:
        home = Path.home()
    except (RuntimeError, KeyError, OSError):
        home = None
    for var, default in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache")):
        base = os.environ.get(var) or (str(home / default) if home is not None else None)
        if base is None or not could_make(Path(base) / "matplotlib"):
            break
    else:
        return
    own = private_folder("matplotlib")
    if own is not None and writable(own):
        os.environ["MPLCONFIGDIR"] = own


def _quick_exit(rc) -> None:
    import atexit

    # the program's own __main__ (python -m ketasim, the installed script) imported console
    if getattr(sys.modules.get("__main__"), "console", None) is not console:
        return
    eng = sys.modules.get("ketasim.engine")
    if eng is not None:
        eng.close_pools()          # idle: every call waits for its threads' work
    if threading.active_count() > 1 or sys.flags.inspect:
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except Exception:     # e.g. a closed pipe: the ordinary exit reports it, as it would
        return
    os._exit(rc if isinstance(rc, int) else 1)


def kernels_needed(args) -> tuple:
    """The compiled kernels a command runs (``"grid"``, ``"metrics"``): what
    :func:`ketasim._warm.ahead` prepares before the first of them."""
    return {"simulate": ("grid",) + (("metrics",) if getattr(args, "summary", False)
                                     or getattr(args, "plot", None) else ()),
            "course": ("grid", "metrics"), "compare": ("grid", "metrics"),
            "explore": ("grid", "metrics"), "population": ("metrics",),
            "sweep": ("metrics",)}.get(args.command, ())


@contextlib.contextmanager
def _stdout_wrapped():
    """``sys.stdout`` as a :class:`_NamedStdout` inside the block (when it is open), then as
    it was."""
    stream = sys.stdout
    if stream is None or isinstance(stream, _NamedStdout):
        yield
        return
    sys.stdout = _NamedStdout(stream)
    try:
        yield
    finally:
        if isinstance(sys.stdout, _NamedStdout):
            sys.stdout = stream


def _silence_stdout() -> None:
    """Standard output to the null device, after its reader went away: what is left in its
    buffer is then dropped at exit, not reported as an error."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def _run(args) -> int:
    try:
        from . import cli_bench
        from .cli_teach import COMMANDS
        handler = {"simulate": cmd_simulate, "presets": cmd_presets,
                   "schedule": cmd_schedule, "bench": cli_bench.run,
                   **COMMANDS}.get(args.command) or args._run
        _check_stdout_is_no_input(args)
        _say_reading_the_terminal(args)
        needs = kernels_needed(args)
        if needs and args.command not in ("simulate", "course", "compare"):
            from . import _warm

            _warm.ahead(*needs)     # (those three call it themselves, after forking a helper)
        with warnings.catch_warnings():
            # a hint Numba prints while compiling the kernels (first run only): not for users
            warnings.filterwarnings("ignore", message=r".*is faster on contiguous arrays")
            # what the Python API says as a KetasimWarning, the commands say their own way
            # ("ketasim: warning: ..."), once; a weight no person has only this way
            from .errors import KetasimWarning
            warnings.simplefilter("ignore", KetasimWarning)
            warnings.filterwarnings("once", message=r"weight_kg: ", category=KetasimWarning)
            warnings.showwarning = _warning_shower(args, warnings.showwarning)
            with _stdout_wrapped():
                rc = handler(args)
                if sys.stdout is not None:   # (None: started with standard output closed)
                    sys.stdout.flush()   # a closed pipe or a full disk shows here, not at exit
        return rc
    except KeyboardInterrupt:
        raise
    except KetasimInputError as exc:
        if args.debug:
            raise
        return _fail(args, as_options(args, str(exc)))
    except BrokenPipeError:
        # the reader went away (``ketasim presets | head -1``): stop quietly
        _silence_stdout()
        return 1
    except OSError as exc:
        if args.debug:
            raise
        from .errors import cwd_gone

        if exc.filename is None and isinstance(exc, FileNotFoundError) and cwd_gone():
            # (a file named by a relative path, or the JIT compiler naming its source
            # relative to the current folder: "No such file or directory" and no name)
            return _fail(args, "the current folder has been deleted; expected to be run in a "
                         "folder that exists (change to one)")
        if exc.errno == errno.ENAMETOOLONG and exc.filename:
            return _fail(args, _name_too_long(args, str(exc.filename)))
        return _fail(args, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except MemoryError:
        if args.debug:
            raise
        return _fail(args, "out of memory; " + _MEMORY_ADVICE.get(
            getattr(args, "command", None), _MEMORY_ADVICE["simulate"]))
    except RecursionError:
        if args.debug:
            raise
        return _fail(args, "an input is nested too deeply; expected a simpler model or table")
    except Exception as exc:
        from .io import raise_swallowed

        # an interrupt that compiled code's callback swallowed, and that then broke what it cut
        # short (a module half imported): the interrupt is what stopped the command
        raise_swallowed()
        if args.debug:
            raise
        if isinstance(exc, RuntimeError) and "no locator available" in str(exc):
            # Numba, loading a kernel, finds no folder to keep its compiled code in
            where = os.environ.get("NUMBA_CACHE_DIR")
            said = (f"NUMBA_CACHE_DIR (environment) {where!r} cannot be written" if where else
                    "neither the package's folder, the home folder nor the temporary folder "
                    "can be written")
            return _fail(args, f"no folder to keep the compiled kernels in: {said}; expected "
                         "NUMBA_CACHE_DIR set to a folder ketasim may write")
        backend = os.environ.get("MPLBACKEND")
        if backend and isinstance(exc, ValueError) and "backend" in str(exc):
            # matplotlib refuses the backend the environment names when it is first imported
            return _fail(args, f"MPLBACKEND (environment): got {backend!r}, which matplotlib "
                         "does not know; expected a backend such as Agg, or the variable unset")
        msg = " ".join(str(exc).split())[:200]
        return _fail(args, f"internal error ({type(exc).__name__}: {msg}); please report it "
                     "with the command that caused it (--debug shows the traceback)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console())
