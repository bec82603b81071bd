"""Numbers written as text (dose tables, command-line values): plain ASCII decimals only.

Python's ``float`` and ``int`` also read ``3_5`` as 35 and full-width or other Unicode digits
(``１００``) as numbers; in a dose column or an option such text is a typo, not a number, so
it is refused here. ``nan`` and ``inf`` (any letter case, with a sign) are still read as
numbers, so the caller's own message for a non-finite value stands.
"""

from __future__ import annotations

import re

UNSIGNED = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)   # e.g. 0.3, 1e-3
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT = re.compile(r"[+-]?\d+", re.ASCII)
_SPECIAL = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


def to_float(text: str) -> float:
    """``float(text)`` for a plain decimal (surrounding spaces allowed); ValueError otherwise."""
    t = text.strip()
    if _FLOAT.fullmatch(t) or _SPECIAL.fullmatch(t):
        return float(t)
    raise ValueError(f"not a plain number: {text!r}")


def to_int(text: str) -> int:
    """``int(text)`` for plain ASCII digits with an optional sign; ValueError otherwise."""
    t = text.strip()
    if _INT.fullmatch(t):
        return int(t)
    raise ValueError(f"not a plain whole number: {text!r}")


def g4(v: float) -> str:
    """A number for a table on screen, 4 significant digits: ``{:.4g}``, but without an
    exponent from 10,000 up (an AUC of 14,400 ng·h/mL as 14400, not 1.44e+04, beside a 8747
    in the same line)."""
    s = f"{v:.4g}"
    return f"{v:.0f}" if "e+" in s and abs(v) < 1e15 else s
