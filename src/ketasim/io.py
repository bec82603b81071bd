"""Files: all-or-nothing writes of a command's outputs, and the CSV layout of results (ng/mL at
the edge).

Every file a command writes goes through :class:`OutputSet` (or :func:`write_outputs`): each
output is written to a temporary sibling first, and only when every one of them was written
completely are they moved into place. A failure, Ctrl-C (SIGINT) or SIGTERM at any point before
that leaves every existing file as it was and removes the temporaries and any folder the command
created; the moves themselves run with those signals held back, and an earlier move is undone
if a later one fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path

import numpy as np

from .errors import KetasimInputError, cwd_gone

__all__ = ["OutputSet", "write_outputs", "check_outputs", "atomic_write", "result_columns",
           "write_result_csv", "write_result_table", "signals_held", "interrupt"]

# the stop signals the command line handles (ketasim.cli.main): held back together
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                 if hasattr(signal, n))


_held = 0            # depth of signals_held() blocks
_pending: list = []  # an interrupt that arrived inside one, raised when the last one ends


@contextlib.contextmanager
def signals_held():
    """A critical section: SIGINT, SIGTERM and SIGHUP wait until it ends.

    At the operating-system level the signals are blocked where the platform can; at the
    Python level a handler that calls :func:`interrupt` (the command line installs such
    handlers) defers its exception to the end of the outermost block. So a temporary file is
    never created without being recorded for clean-up, and a clean-up is never cut short."""
    global _held
    mask = None
    if hasattr(signal, "pthread_sigmask") and \
            threading.current_thread() is threading.main_thread():
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if _held == 0 and _pending:
            exc = _pending.pop()
            _pending.clear()
            raise exc


def interrupt(exc: BaseException) -> None:
    """Raise ``exc`` (a KeyboardInterrupt) now, or at the end of the current
    :func:`signals_held` block. For signal handlers."""
    if _held:
        if not _pending:
            _pending.append(exc)
        return
    _raised[:] = [exc]
    raise exc


_raised: list = []   # the last interrupt raised by interrupt() (see raise_swallowed)


def raise_swallowed() -> None:
    """Raise again an interrupt that :func:`interrupt` raised where exceptions are swallowed
    and so never stopped the command: a signal handled inside a callback from the JIT
    compiler's C code (Python prints "Exception ignored" and goes on). A command that
    reaches its outputs after one stops there instead, before any file is written. The
    command line clears the record when it starts (:func:`clear_raised`)."""
    if _raised:
        exc = _raised.pop()
        _raised.clear()
        raise exc


def clear_raised() -> None:
    _raised.clear()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        try:
            return a.resolve() == b.resolve()
        except (OSError, RuntimeError):
            return False


def _is_stdin(p: Path, fd: int = 0) -> bool:
    """Whether ``p`` is the regular file this process's standard input reads from (``fd`` 1:
    the one its standard output writes to)."""
    try:
        st0 = os.fstat(fd)
        st = os.stat(p)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st0.st_mode) and (st.st_dev, st.st_ino) == (st0.st_dev, st0.st_ino)


def _stdout_is_stdin() -> bool:
    """Whether standard output writes to the regular file standard input reads from."""
    try:
        st0, st1 = os.fstat(0), os.fstat(1)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st0.st_mode) and (st0.st_dev, st0.st_ino) == (st1.st_dev, st1.st_ino)


def _in_package(p: Path) -> str | None:
    """The file of ketasim's own package (a preset, a module) that the output ``p`` would
    replace, following links (an output linked to ``presets/ketamine-iv.toml``), or None."""
    pkg = Path(__file__).resolve().parent
    try:
        target = p.resolve()
    except (OSError, RuntimeError):       # (a loop of links: found when writing)
        return None
    return str(target) if pkg in target.parents else None


def _write_protected(p: Path) -> bool:
    """Whether ``p`` is an existing file its owner has protected from writing: one this user
    may not write, or with no write permission for anyone (also when run as root, who may
    write anything). Such a file is not replaced, as a shell's ``>`` would not replace it
    (ketasim writes a new file and renames it over the old one, which needs only the
    folder's permission)."""
    try:
        st = p.stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (not st.st_mode & 0o222 or not os.access(p, os.W_OK))


def _protected_words(lab: str, p: Path) -> str:
    return (f"{lab}: {str(p)!r} is write-protected; expected a file ketasim may replace "
            "(make it writable, or choose another name)")


def check_outputs(outputs, inputs=()) -> None:
    """Refuse outputs that would overwrite an input, or each other (one-line errors).

    ``outputs`` and ``inputs`` are ``(label, path)`` pairs, e.g. ``("--out", Path("o.csv"))`` and
    ``("--doses", "d.csv")``; inputs that are not files (preset or course names) are skipped.
    An output ``-`` is standard output: refused when it is redirected to an input file
    (``--out - >> d.csv``), as ``cat`` refuses to write its input.
    """
    outs = [(lab, Path(p)) for lab, p in outputs if p is not None and str(p) != "-"]
    ins = [(lab, Path(p)) for lab, p in inputs
           if p is not None and str(p) != "-" and Path(p).is_file()]
    stdin = [lab for lab, p in inputs if p is not None and str(p) == "-"]
    for lab in [lab for lab, p in outputs if p is not None and str(p) == "-"]:
        for ilab, q in ins:
            if _is_stdin(q, 1):
                raise KetasimInputError(
                    f"{lab} -: standard output is redirected to the {ilab} input {str(q)!r}; "
                    "redirect it to another file (the results would be written into the input)")
        for lab2, q in outs:
            if _is_stdin(q, 1):        # (the file's data would go to the replaced file)
                raise KetasimInputError(
                    f"{lab} - and {lab2}: standard output is redirected to {str(q)!r}, which "
                    f"{lab2} writes; expected different output files")
        for ilab in stdin:
            if _stdout_is_stdin():
                raise KetasimInputError(
                    f"{lab} -: standard output is redirected to the file standard input reads "
                    f"from (the {ilab} input '-'); redirect it to another file (the results "
                    "would be written into the input)")
    for i, (lab, p) in enumerate(outs):
        if not p.is_absolute() and cwd_gone():
            # found before any work (it had been found only when writing, after the run, as
            # "No such file or directory")
            raise KetasimInputError(f"{lab}: {str(p)!r} is in the current folder, which has "
                                    "been deleted; expected an output in a folder that "
                                    "exists (change to one, or give a full path)")
        # a loop of links: found before any work (it had been found only when writing,
        # after a population had run)
        _check_link(p, f"{lab}: ")
        # an output that is a link is written where it leads (OutputSet.add): its folders
        # are checked there (a link to a file yet to be written in a read-only folder had
        # been found only when writing, after the run)
        at = Path(os.path.realpath(p)) if p.is_symlink() else p
        shown = str(p) if at is p else f"{str(p)} (a link to {str(at)})"
        blocker = _first_file(at.parent) if str(at.parent) else None
        if blocker is not None and blocker.exists() and not blocker.is_dir():
            # found before any work (it had been found only when writing, after the run)
            raise KetasimInputError(f"{lab}: {shown!r}: Not a folder (a file has its name): "
                                    f"{str(blocker)!r}; expected a path whose folders are "
                                    "folders or do not exist yet")
        link = _broken_link(at.parent) if str(at.parent) else None
        if link is not None:
            raise KetasimInputError(f"{lab}: {shown!r}: {_broken_link_words(link)}")
        if p.exists() and not p.is_file() and not p.is_dir():
            # found before any work (it had been found only when writing, after the run)
            raise KetasimInputError(f"{lab}: {str(p)!r} exists and is not a regular file (a "
                                    "device or a pipe); expected a file name")
        folder = _nearest_folder(at.parent)
        if folder is not None and not os.access(folder, os.W_OK | os.X_OK):
            # a read-only file system or folder: found before any work (it had been found
            # only when writing, after a population or sweep had run)
            raise KetasimInputError(f"{lab}: {shown!r}: the folder {str(folder)!r} cannot be "
                                    "written (a read-only file system, or no write "
                                    "permission); expected an output in a folder ketasim may "
                                    "write")
        if _write_protected(p):
            raise KetasimInputError(_protected_words(lab, p))
        own = _in_package(p)
        if own is not None:         # (a preset named by name is an input no option names)
            raise KetasimInputError(f"{lab}: {str(p)!r} leads to ketasim's own file {own}; "
                                    "expected an output outside the installed package")
        for ilab in stdin:
            if _is_stdin(p):           # ``--doses - < f`` and ``--out f``
                raise KetasimInputError(
                    f"{lab}: {str(p)!r} is the file standard input reads from (the {ilab} "
                    "input '-'); choose another output file name (the input would be "
                    "overwritten)")
        for ilab, q in ins:
            if _same_file(p, q):
                raise KetasimInputError(
                    f"{lab}: {str(p)!r} is the same file as the {ilab} input {str(q)!r}; "
                    "choose another output file name (the input would be overwritten)")
        for lab2, q in outs[i + 1:]:
            if _same_file(p, q):
                raise KetasimInputError(f"{lab} and {lab2}: both write {str(p)!r}; "
                                        "expected different output files")
            for (la, a), (lb, b) in (((lab, p), (lab2, q)), ((lab2, q), (lab, p))):
                if _inside(b, a):
                    # found before any work: it had been found only when writing, after
                    # the run, as "Is a directory"
                    raise KetasimInputError(
                        f"{la} {str(a)!r} and {lb} {str(b)!r}: {lb} would be written inside "
                        f"the file {la} writes, as if it were a folder; expected different "
                        "output files, neither inside the other")
            if _case_twins(p, q):
                # found before any work: it had been found only when the files were moved
                # into place, after the whole run
                raise KetasimInputError(
                    f"{lab} {str(p)!r} and {lab2} {str(q)!r} are one file on this file system "
                    "(it does not tell letter case apart); expected different output files")


def _inside(inner: Path, outer: Path) -> bool:
    """Whether ``inner`` lies inside ``outer`` taken as a folder (``o.csv/fig.png`` inside
    ``o.csv``), links followed where they exist."""
    try:
        a = Path(os.path.realpath(inner))
        b = Path(os.path.realpath(outer))
    except (OSError, ValueError):
        return False
    return a != b and a.is_relative_to(b)


def _check_link(path: Path, lead: str) -> None:
    """Refuse an output that is a symbolic link that cannot be followed (a loop of links,
    ELOOP, say), the message starting with ``lead``; a link to a file yet to be written is
    fine, and so is anything that is no link."""
    if not path.is_symlink():
        return
    try:
        os.stat(path)
    except FileNotFoundError:
        pass                # a link to a file yet to be written
    except OSError as exc:
        raise KetasimInputError(f"{lead}{str(path)!r} is a symbolic link that cannot be "
                                f"followed ({exc.strerror}); expected a file name") from None


def _case_twins(p: Path, q: Path) -> bool:
    """Whether ``p`` and ``q``, which differ only in letter case, name one file: on a file
    system that does not tell case apart (macOS, Windows, a FAT-formatted USB stick), as
    :func:`_ignores_case` finds by trying it. On one that does (Linux, mostly) they are two
    files, and both are written."""
    try:
        a, b = p.resolve(), q.resolve()
    except (OSError, RuntimeError):
        return False
    if a == b or len(a.parts) != len(b.parts) or str(a).lower() != str(b).lower():
        return False
    # the folder that holds the first name that differs (or the nearest one that exists,
    # where the rest would be made): its file system decides
    k = next(i for i, (x, y) in enumerate(zip(a.parts, b.parts)) if x != y)
    folder = _nearest_folder(Path(*a.parts[:k]))
    return folder is not None and _ignores_case(folder)


def _ignores_case(folder: Path) -> bool:
    """Whether the file system of ``folder`` takes names differing only in letter case for
    one: a new empty file is made there, looked for under its name in capitals, and removed
    (with stop signals held, so it is never left behind)."""
    with signals_held():
        try:
            fd, tmp = tempfile.mkstemp(prefix=".ketasim-case-", suffix=".tmp", dir=folder)
        except OSError:
            return False
        try:
            os.close(fd)
            upper = os.path.join(os.path.dirname(tmp), os.path.basename(tmp).upper())
            return os.path.exists(upper) and os.path.samefile(tmp, upper)
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


_commits = 0     # how many OutputSet.commit calls have moved their files into place


def commits() -> int:
    """How many sets of files this process has written (moved into place) so far: a command
    compares the count before and after a step to tell whether it wrote anything."""
    return _commits


class OutputSet:
    """Write several files all-or-nothing.

    Add each output with :meth:`add`, then call :meth:`commit`. ``data`` is ``bytes``, ``str``
    or a callable that writes to an open file (text, UTF-8, unless ``binary=True``); a callable
    streams, so a large table is never held in memory as text.

    Examples
    --------
    >>> outs = OutputSet()                                        # doctest: +SKIP
    >>> outs.add("run/out.csv", lambda fh: fh.write("time_h\\n0\\n"))
    >>> outs.add("run/fig.png", png_bytes)
    >>> outs.commit()        # both files appear, or neither (and no folder "run")
    """

    def __init__(self):
        self._items: list[tuple[Path, object, bool]] = []

    def add(self, path, data, *, binary: bool | None = None) -> OutputSet:
        path = Path(path)
        if path.is_symlink():      # write the file the link points to; keep the link
            _check_link(path, "output ")
            path = Path(os.path.realpath(path))     # (its folders are made, as for a file)
        if path.exists() and not path.is_dir() and not path.is_file():
            raise KetasimInputError(f"output {str(path)!r} exists and is not a regular file "
                                    "(a device or a pipe); expected a file name")
        if _write_protected(path):
            raise KetasimInputError(_protected_words("output", path))
        if binary is None:
            binary = isinstance(data, (bytes, bytearray, memoryview))
        if any(_same_file(path, p) for p, _, _ in self._items):
            raise KetasimInputError(f"output {str(path)!r} is given twice; expected different "
                                    "output files")
        self._items.append((path, data, binary))
        return self

    def __len__(self):
        return len(self._items)

    @property
    def paths(self) -> list[Path]:
        return [p for p, _, _ in self._items]

    def commit(self) -> None:
        """Write every temporary, then move them all into place; on any failure (or
        KeyboardInterrupt) remove the temporaries and created folders and re-raise."""
        global _commits
        raise_swallowed()       # a Ctrl-C that never stopped the command stops it here
        temps: list[tuple[str, Path]] = []   # (temporary, destination)
        made: list[Path] = []                # folders created here, outermost first
        try:
            for path, data, binary in self._items:
                if path.is_dir():
                    raise KetasimInputError(f"output {str(path)!r} is a folder, expected a "
                                            "file name")
                folder = path.parent if str(path.parent) else Path(".")
                _make_folders(folder, made)
                if not folder.is_dir():
                    raise NotADirectoryError(20, "Not a folder (a file has its name)",
                                             str(_first_file(folder)))
                try:
                    with signals_held():
                        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:32]}.",
                                                   suffix=".tmp", dir=folder)
                        temps.append((tmp, path))
                    _write(fd, data, binary)
                except OSError as exc:      # name the user's file, not the temporary one
                    if exc.filename is None or str(exc.filename).startswith(str(folder)):
                        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
                    raise
                owner = None
                try:       # a replaced file keeps its permissions; a new one gets the usual
                    st = path.stat()
                    mode = st.st_mode & 0o7777
                    owner = (st.st_uid, st.st_gid)
                except OSError:
                    mode = 0o666 & ~_umask()
                if owner is not None and hasattr(os, "geteuid") and \
                        owner != (os.geteuid(), os.getegid()):
                    # and its owner, where this user may set it (``sudo ketasim ...`` would
                    # otherwise leave the user's file owned by root)
                    with contextlib.suppress(OSError):
                        os.chown(tmp, *owner)
                # (a file system without Unix permissions, e.g. a FAT-formatted USB stick, may
                # refuse any chmod: the file then has that file system's own permissions)
                with contextlib.suppress(OSError):
                    os.chmod(tmp, mode)
            with signals_held():
                _move_all(temps)
                temps = []
                _commits += 1
        except BaseException:
            with signals_held():
                for tmp, _ in temps:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                for d in reversed(made):
                    with contextlib.suppress(OSError):
                        d.rmdir()
            raise


def write_outputs(items, inputs=()) -> None:
    """Write ``[(path, data), ...]`` all-or-nothing (see :class:`OutputSet`); ``inputs`` are
    ``(label, path)`` pairs that no output may overwrite.

    ``data`` is bytes, str, or a callable given an open text file; ``(path, callable, True)``
    gives the callable a binary file instead (Parquet, a figure written by a library)."""
    outs = OutputSet()
    for path, data, *binary in items:
        outs.add(path, data, binary=binary[0] if binary else None)
    check_outputs([("output", p) for p in outs.paths], inputs)
    outs.commit()


def _first_file(folder: Path) -> Path:
    """The part of ``folder`` that exists and is not a folder."""
    for p in [*reversed(folder.parents), folder]:
        if p.exists() and not p.is_dir():
            return p
    return folder


def _nearest_folder(folder: Path) -> Path | None:
    """``folder``, or its nearest ancestor that exists (where a missing one would be made),
    if that is a folder."""
    p = folder if str(folder) else Path(".")
    for q in (p, *p.parents):
        if q.exists():
            return q if q.is_dir() else None
    return None


def _broken_link(folder: Path) -> Path | None:
    """The part of ``folder`` that is a symbolic link to nothing (a folder that does not
    exist), if any: no folder can be made there."""
    for p in [*reversed(folder.parents), folder]:
        if p.is_symlink() and not p.exists():
            return p
    return None


def _broken_link_words(link: Path) -> str:
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    try:
        os.stat(link)
        gone = "which does not exist"
    except OSError as exc:       # (a loop of links had been called a link to nothing)
        gone = (f"which cannot be followed ({exc.strerror})" if exc.errno != errno.ENOENT
                else "which does not exist")
    return (f"folder {str(link)!r} is a symbolic link to {target!r}, {gone}; "
            "expected a folder, a link to one, or a name that does not exist yet")


def _make_folders(folder: Path, made: list) -> None:
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if missing and not p.is_dir():
        raise NotADirectoryError(20, "Not a folder (a file has its name)", str(p))
    for d in reversed(missing):
        with signals_held():
            try:
                d.mkdir()
            except FileExistsError:
                if d.is_symlink() and not d.exists():    # (mkdir's "File exists" misleads)
                    raise KetasimInputError(f"output {_broken_link_words(d)}") from None
                if not d.is_dir():
                    raise
                continue
            made.append(d)


def _write(fd: int, data, binary: bool) -> None:
    # a file name that is not UTF-8 (os.fsdecode's surrogates: "d\udcff.csv" for the bytes
    # d, 0xff) is written as that escape, as standard error shows it, not as an error after
    # the run (a title or label naming it)
    kw = {} if binary else {"encoding": "utf-8", "errors": "backslashreplace", "newline": ""}
    with os.fdopen(fd, "wb" if binary else "w", **kw) as fh:
        if callable(data):
            data(fh)
        else:
            fh.write(data)
        fh.flush()
        # on the disk before it is renamed into place: a crash or power cut just after the
        # rename leaves the complete new file or the old one, never an empty one (a few ms)
        with contextlib.suppress(OSError):      # (a file system without fsync, a pipe)
            os.fsync(fh.fileno())


def _move_all(temps) -> None:
    """Move temporaries into place; if one move fails, put back what the earlier ones
    replaced (kept as hard links while the moves run)."""
    done: list[tuple[Path, bool, str | None]] = []   # (path, existed before, backup)
    backup = None
    try:
        for tmp, path in temps:
            existed = path.exists() or path.is_symlink()
            backup = None
            twin = next((p for p, _, _ in done if existed and _same_file(path, p)), None)
            if twin is not None:
                # two names that this file system takes for one file (a case-insensitive one:
                # macOS, Windows; "Pop.csv" and "pop.csv"), found only now that the first
                # exists: the second move had replaced the first output, and both were
                # reported written
                raise KetasimInputError(
                    f"outputs {str(twin)!r} and {str(path)!r} are one file on this file "
                    "system (names that differ only in letter case, say); expected different "
                    "output files")
            if existed:
                try:
                    os.link(path, f"{tmp}.old", follow_symlinks=False)
                    backup = f"{tmp}.old"
                except (OSError, NotImplementedError):
                    pass       # no hard links here: each move is still atomic on its own
            try:
                os.replace(tmp, path)
            except OSError as exc:     # name the user's file, not the temporary one (removed)
                raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
            done.append((path, existed, backup))
            backup = None
    except BaseException:
        if backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(backup)
        for path, existed, old in reversed(done):
            with contextlib.suppress(OSError):
                if old is not None:
                    os.replace(old, path)
                elif not existed:
                    path.unlink()
        raise
    for _, _, old in done:
        if old is not None:
            with contextlib.suppress(OSError):
                os.unlink(old)


def atomic_write(path, data, mode: str = "w") -> None:
    """Write one file all-or-nothing (see :class:`OutputSet`); ``mode`` ``"wb"`` for bytes."""
    OutputSet().add(path, data, binary="b" in mode).commit()


def column_name(name: str) -> str:
    """CSV column of an output: ``<name>_ng_ml`` for concentrations, ``amount_<X>_mg`` for
    amounts, the bare name for dimensionless PD outputs."""
    from .result import PD_OUTPUTS

    if name.startswith("amount:"):
        return f"amount_{name[7:]}_mg"
    if name in PD_OUTPUTS:
        return name
    return f"{name}_ng_ml"


def result_columns(result) -> tuple[list[str], np.ndarray]:
    """Column names and a 2-D table (rows: subject-major, then time) in CSV units.

    The table is the transpose of a column-major array, so each column is contiguous: it is
    filled column by column from the result (no intermediate copy of the whole output), and
    its columns are handed to a DataFrame as they are. Refused before it is allocated when it
    cannot fit in memory."""
    from .engine import check_memory

    names = list(result.names)
    N, R, T = result.data.shape
    cols = ["time_h"] + [column_name(nm) for nm in names]
    if result.population:
        cols = ["subject"] + cols
    check_memory(N * T * len(cols), f"table: {N:,} subjects x {T:,} times = {N * T:,} rows x "
                 f"{len(cols)} columns", advice="expected fewer subjects, times or outputs "
                 "(or write the table with ketasim.io.write_result_csv, a block at a time)")
    table = np.empty((len(cols), N * T))
    p = 1 if result.population else 0
    if p:
        table[0] = np.repeat(subject_labels(result), T)
    table[p] = np.tile(result.times, N)
    scale = result.csv_scale()          # (float64: float32 data in float64, as the CSV)
    for r in range(R):
        np.multiply(result.data[:, r, :], scale[r], out=table[p + 1 + r].reshape(N, T))
    return cols, table.T


def subject_labels(result) -> np.ndarray:
    """Subject column values: the dose table's IDs when it has a ``subject`` column, else
    0..N-1."""
    N = result.data.shape[0]
    ids = getattr(getattr(result, "doses", None), "subject_ids", None)
    if ids is not None and len(ids) == N:
        return np.asarray(ids, dtype=np.float64)
    return np.arange(N)


def id_label(v):
    """A subject ID as written: a whole number without exponent or rounding, else the float's
    shortest exact text."""
    return int(v) if float(v).is_integer() else repr(float(v))


def write_result_table(result, fh, rows_per_block: int = 16384) -> None:
    """Write a Result as CSV text to an open file, a block of rows at a time.

    Same layout as :func:`result_columns`, without building the whole table in memory. Each
    block is formatted by compiled code (:mod:`ketasim._csvtext`; values ``%.10g``, the same
    text as ``numpy.savetxt`` gives, about five times faster than the ``%`` operator, which
    stays the way when Numba is disabled). Float32 outputs (``dtype="float32"``) are written
    ``%.9g``: the fewest digits that always read back as the same float32. A time that ten
    digits would write as the text of another, different time is written exactly
    (:func:`exact_times`).
    """

    names = list(result.names)
    cols = ["time_h"] + [column_name(nm) for nm in names]
    if result.population:
        cols = ["subject"] + cols
    labels = subject_labels(result)
    # IDs are written as the dose table gives them: whole numbers as integers, others as the
    # float's shortest exact text (so two subjects never print alike); the compiled formatter
    # writes a whole-number column only, so other IDs are put in front of its lines
    whole = bool(np.all(labels == np.round(labels)) and np.all(np.abs(labels) < 2**53))
    ids_text = None
    if result.population and not whole:
        ids_text = [f"{id_label(v)}," for v in labels]
    p = int(result.population and ids_text is None)     # the formatter's subject column
    nd = 9 if result.data.dtype == np.float32 else 10
    row = ",".join((["%d"] if p else []) + ["%.10g"] + [f"%.{nd}g"] * len(names)) + "\n"
    scale = result.csv_scale()
    exact_t = exact_times(result.times)        # times that ten digits would write alike
    fh.write(",".join(cols) + "\n")
    N, R, T = result.data.shape
    rows_per_block = max(1, int(rows_per_block))
    full = row * rows_per_block
    block = np.empty((min(T, rows_per_block), p + 1 + R))
    fast = _block_formatter(block.shape[1], 0 if p else -1, [10] * (p + 1) + [nd] * R)
    for s in range(N):
        for a in range(0, T, rows_per_block):
            b = min(T, a + rows_per_block)
            blk = block[:b - a]
            if p:
                blk[:, 0] = labels[s]
            blk[:, p] = result.times[a:b]
            src = result.data[s, :, a:b].T
            with np.errstate(over="ignore"):
                np.multiply(src, scale, out=blk[:, p + 1:])
            _check_scaled(blk[:, p + 1:], src, names)
            ex = None
            if exact_t is not None and exact_t[a:b].any():
                ex = np.zeros(blk.shape, bool)
                ex[:, p] = exact_t[a:b]
            if fast is not None:
                text = fast.text(blk, ex)
            elif ex is not None:
                text = _rows_text(blk, row, p, ex[:, p])
            else:
                text = ((full if b - a == rows_per_block else row * (b - a))
                        % tuple(blk.ravel().tolist()))
            if ids_text is not None:
                pre = ids_text[s]
                text = pre + text[:-1].replace("\n", "\n" + pre) + "\n"
            fh.write(text)


def exact_times(times) -> np.ndarray | None:
    """Which of ``times`` (h) a CSV writes as their shortest exact text (``repr``) instead of
    ``"%.10g"``: the distinct times that ten significant digits would write as one text (two
    dose times 1e-13 h apart, each a row of its own), so that no two rows of different times
    read alike. None when there are none (the usual case)."""
    t = np.asarray(times, dtype=np.float64).ravel()
    # (a grid in order, the usual case, needs no sort)
    u = t if t.size < 2 or (np.diff(t) >= 0).all() else np.sort(t)
    u = u[np.isfinite(u)]
    # two values with one ten-digit text differ by less than a unit in their tenth digit
    d = np.diff(u)
    near = np.flatnonzero((d > 0) & (d <= 2e-9 * np.maximum(np.abs(u[:-1]), np.abs(u[1:]))))
    clash = [i for i in near.tolist() if "%.10g" % u[i] == "%.10g" % u[i + 1]]
    if not clash:
        return None
    c = np.array(clash)
    return np.isin(t, np.concatenate([u[c], u[c + 1]]))


def _rows_text(block: np.ndarray, row: str, col: int, exact: np.ndarray) -> str:
    """``block`` as text with the ``%`` row format ``row``, column ``col`` written as ``repr``
    in the rows marked by ``exact``."""
    fmts = row[:-1].split(",")
    fmts[col] = "%r"
    exact_row = ",".join(fmts) + "\n"
    return "".join((exact_row if x else row) % tuple(r)
                   for r, x in zip(block.tolist(), exact.tolist()))


def _block_formatter(n_cols: int, int_col: int, digits=10):
    """The compiled formatter of :mod:`ketasim._csvtext` (same text), or None when Numba runs
    as plain Python (``NUMBA_DISABLE_JIT``), where the ``%`` operator is much faster."""
    from numba import config

    if config.DISABLE_JIT:
        return None
    from ._csvtext import BlockFormatter

    return BlockFormatter(n_cols, int_col, digits)


def _check_scaled(scaled: np.ndarray, src: np.ndarray, names) -> None:
    """A finite value that the conversion to ng/mL overflows is an error, never an ``inf``."""
    if np.isfinite(scaled).all():
        return
    bad = ~np.isfinite(scaled) & np.isfinite(src)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise KetasimInputError(
            f"output {names[j]!r}: {src[i, j]:.3g} mg/L is too large to write in ng/mL (the "
            "number overflows); check the doses and the model's units")


def write_result_csv(result, path) -> None:
    """Write a Result as CSV (``time_h`` then one column per output), atomically."""
    OutputSet().add(path, lambda fh: write_result_table(result, fh)).commit()
