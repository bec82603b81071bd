"""A small, safe arithmetic language for parameter expressions in model files.

Model files may write a value as a number, a parameter name, or an expression such as
``"CL / V1"`` or ``"FRN * (1 + FRN_NEXT * (AMT / 28 - 1)) / (AMT / 28)"``. Expressions are parsed
once with :mod:`ast` (never ``eval``) and evaluated with numpy, so one evaluation serves a whole
population. Allowed: numbers, names, ``+ - * / **``, unary minus, parentheses and the functions
``exp log sqrt abs min max``.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from dataclasses import field as _field

import numpy as np

from .errors import KetasimInputError, suggest

_FUNCS = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs,
          "min": np.minimum, "max": np.maximum}
MAX_EXPR_CHARS = 2000
MAX_EXPR_DEPTH = 100   # nesting levels; keeps evaluation far from Python's recursion limit
_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
           ast.Div: np.divide, ast.Pow: np.power}


@dataclass(frozen=True)
class Expr:
    """A parsed expression: ``text``, the names it reads, and its syntax tree. Two are equal
    when their text is (the tree is parsed from it), so equal model files give equal models;
    the tree is left out of the repr (its memory address made every model's repr differ)."""

    text: str
    names: frozenset
    tree: ast.AST = _field(compare=False, repr=False)

    def evaluate(self, values: dict) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(_eval(self.tree, values), dtype=np.float64)


def parse(value, field: str, where: str = "") -> Expr:
    """Parse a number, a name or an expression string; raise :class:`KetasimInputError`."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise KetasimInputError(
            f"{prefix}{field}: got {value!r}, expected a number, a parameter name or an expression")
    if isinstance(value, str) and len(value) > MAX_EXPR_CHARS:
        raise KetasimInputError(f"{prefix}{field}: expression of {len(value):,} characters, "
                                f"expected at most {MAX_EXPR_CHARS:,}")
    try:
        text = repr(float(value)) if not isinstance(value, str) else value.strip()
    except OverflowError:
        raise KetasimInputError(f"{prefix}{field}: got an integer of {_digits(value)} digits, "
                                "expected a finite number") from None
    if not isinstance(value, str) and not math.isfinite(float(value)):
        raise KetasimInputError(f"{prefix}{field}: got {value!r}, expected a finite number")
    if not text.isascii() or (isinstance(value, str) and not value.isascii()):
        # (checked before stripping too: Unicode white space such as U+0085 is not ASCII)
        raw = value if isinstance(value, str) else text
        i, ch = next((i, c) for i, c in enumerate(raw) if not c.isascii())
        raise KetasimInputError(
            f"{prefix}{field}: {raw!r} contains the non-ASCII character {ch!r} (U+{ord(ch):04X}) "
            f"at position {i + 1}; names, numbers and operators are ASCII (letters, digits, _)")
    if not text:
        raise KetasimInputError(f"{prefix}{field}: empty expression, expected a number or a name")
    if len(text) > MAX_EXPR_CHARS:
        raise KetasimInputError(f"{prefix}{field}: expression of {len(text):,} characters, "
                                f"expected at most {MAX_EXPR_CHARS:,}")
    names: set[str] = set()
    try:
        tree = ast.parse(text, mode="eval").body
        _check(tree, names, field, prefix, text)
    except SyntaxError as exc:
        raise KetasimInputError(
            f"{prefix}{field}: cannot parse expression {_short(text)!r} ({exc.msg})") from None
    except KetasimInputError:
        raise
    except ValueError:      # e.g. Python's limit on the digits of an integer literal
        raise KetasimInputError(f"{prefix}{field}: cannot parse expression {text[:40]!r}...; "
                                "expected numbers of at most 308 digits") from None
    except (RecursionError, MemoryError):
        raise KetasimInputError(f"{prefix}{field}: expression {text[:40]!r}... is nested too "
                                "deeply; expected a simpler expression") from None
    return Expr(text, frozenset(names), tree)


def _check(node, names, field, prefix, text, depth=0):
    if depth > MAX_EXPR_DEPTH:
        raise RecursionError
    depth += 1
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise KetasimInputError(f"{prefix}{field}: {text!r} contains {node.value!r}, "
                                    "expected numbers and parameter names only")
        try:
            finite = math.isfinite(float(node.value))
        except OverflowError:
            finite = False
        if not finite:
            shown = (f"a number of {_digits(node.value)} digits" if isinstance(node.value, int)
                     else "a number too large for a float")
            raise KetasimInputError(f"{prefix}{field}: {_short(text)!r} contains {shown}; "
                                    "expected finite numbers (at most about 1.8e308)")
    elif isinstance(node, ast.Name):
        names.add(node.id)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check(node.left, names, field, prefix, text, depth)
        _check(node.right, names, field, prefix, text, depth)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        _check(node.operand, names, field, prefix, text, depth)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in _FUNCS:
            raise KetasimInputError(
                f"{prefix}{field}: unknown function {node.func.id!r} in {text!r}"
                f"{suggest(node.func.id, _FUNCS)}; allowed: {', '.join(_FUNCS)}")
        if not node.args or (node.func.id not in ("min", "max") and len(node.args) != 1) or (
                node.func.id in ("min", "max") and len(node.args) != 2):
            raise KetasimInputError(
                f"{prefix}{field}: wrong number of arguments to {node.func.id}() in {text!r}")
        for a in node.args:
            _check(a, names, field, prefix, text, depth)
    else:
        raise KetasimInputError(
            f"{prefix}{field}: {_short(text)!r} is not a supported expression "
            "(numbers, names, + - * / **, exp log sqrt abs min max)")


def _digits(n: int) -> int:
    try:
        return len(str(abs(n)))
    except ValueError:      # beyond Python's limit on int -> str conversion
        return int(abs(n).bit_length() * math.log10(2)) + 1


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _eval(node, values):
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, values)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Call):
        f = _FUNCS[node.func.id]
        return f(*[_eval(a, values) for a in node.args])
    raise AssertionError(node)  # unreachable: _check rejected it
