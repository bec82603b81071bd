"""Standard output and error on a terminal whose encoding lacks a character ketasim prints.

Tables and summaries use a few characters outside ASCII: "–" for a missing value, "×" and "·"
in units and headings (``× baseline``, ``ng·h/mL``), "µ" (``µM``, ``µs``). Where standard
output or error cannot encode one (``PYTHONIOENCODING=ascii``, an ASCII or Latin-1 terminal)
it is written as its plain equivalent ("-", "x", ".", "u") instead of Python's escape
(``\\u2013``), which was six characters where the table had counted one and shifted every
column after it. Each character a table can hold is replaced by exactly one character, so
the columns, counted on the original text, stay aligned. Text the stream can encode is
written as it is: on a UTF-8 terminal nothing changes, and files (``--out``) are UTF-8.
"""

from __future__ import annotations

import codecs
import io
import sys
import unicodedata

# one character for one wherever a table or an aligned summary can hold it; the longer
# equivalents are for characters seen only in running text
PLAIN = {
    "\u2013": "-",      # – en dash (a missing value, ranges)
    "\u2014": "-",      # — em dash
    "\u2012": "-",      # ‒ figure dash
    "\u2010": "-",      # ‐ hyphen
    "\u2011": "-",      # ‑ non-breaking hyphen
    "\u2212": "-",      # − minus sign
    "\u207b": "-",      # ⁻ superscript minus
    "\u00d7": "x",      # × multiplication sign
    "\u00b7": ".",      # · middle dot
    "\u2022": "*",      # • bullet
    "\u00b5": "u",      # µ micro sign
    "\u03bc": "u",      # μ Greek mu
    "\u00b0": "o",      # ° degree
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
    "\u2248": "~",      # ≈
    "\u2265": ">=", "\u2264": "<=", "\u2260": "!=", "\u00b1": "+/-",
    "\u2192": "->", "\u2190": "<-", "\u2026": "...",
    "\u03a3": "sum",    # Σ (a parameter's source: the last column, nothing after it)
}

_HANDLERS = ("strict", "backslashreplace", "surrogateescape")   # Python's own defaults


def plain(ch: str) -> str:
    """The ASCII text written for ``ch`` where the stream cannot encode it: its entry in
    :data:`PLAIN`, else its letter without accents (é -> e, a full-width digit -> the
    digit) when that is one character, else "?"."""
    if ch in PLAIN:
        return PLAIN[ch]
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    base = "".join(PLAIN.get(c, c) for c in base)
    return base if len(base) == 1 and base.isascii() and base.isprintable() else "?"


def _handler(fallback: str):
    """An encoding error handler: :func:`plain` for each character the encoding lacks; a
    lone surrogate (a file name's undecodable byte) as the stream's own handler had written
    it (``fallback``: its byte under ``surrogateescape``, else an escape)."""
    other = codecs.lookup_error(fallback)
    escape = codecs.lookup_error("backslashreplace")

    def handle(exc):
        if not isinstance(exc, UnicodeEncodeError):
            raise exc
        ch = exc.object[exc.start]
        if "\ud800" <= ch <= "\udfff":
            one = UnicodeEncodeError(exc.encoding, exc.object, exc.start, exc.start + 1,
                                     exc.reason)
            try:
                return other(one)
            except UnicodeEncodeError:
                return escape(one)
        return plain(ch), exc.start + 1
    return handle


def plain_output():
    """Standard output and error write :func:`plain` text for the characters their encoding
    lacks (where they had used Python's default handler: an error, or an escape). Returns a
    function that puts each stream's own handler back."""
    restore = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if errors not in _HANDLERS or not hasattr(stream, "reconfigure"):
            continue
        name = f"ketasim.plain.{errors}"
        codecs.register_error(name, _handler("backslashreplace" if errors == "strict"
                                             else errors))
        try:
            stream.reconfigure(errors=name)
        except (ValueError, OSError, io.UnsupportedOperation):     # (closed, say)
            continue
        restore.append((stream, errors))

    def undo():
        for stream, errors in restore:
            try:
                stream.reconfigure(errors=errors)
            except (ValueError, OSError, io.UnsupportedOperation):
                pass
    return undo
