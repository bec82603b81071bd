"""Values derived from an immutable object, kept with it (dose tables, models)."""

from __future__ import annotations


class Derived:
    """Mixin for frozen classes: ``_memo()`` is a dict kept with the instance (never pickled)
    for values derived from it, each keyed by everything it depends on."""

    def _memo(self) -> dict:
        m = self.__dict__.get("_derived")
        if m is None:
            m = {}
            object.__setattr__(self, "_derived", m)
        return m

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_derived", None)
        return state


def kept(owner: Derived, slot: str, make_key, compute, copy, limit: int = 8):
    """``compute()``, kept in ``owner._memo()[slot]`` under ``make_key()``; callers get
    ``copy`` of the kept value, never the value itself. A key that cannot be built or hashed
    (a part unhashable, a value not an array) means nothing is kept. A full slot is cleared,
    not trimmed (safe when threads share the owner)."""
    try:
        key = make_key()
        memo = owner._memo().setdefault(slot, {})
        hit = memo.get(key)
    except (TypeError, AttributeError):
        return compute()
    if hit is not None:
        return copy(hit)
    value = compute()
    if len(memo) >= limit:
        memo.clear()
    memo[key] = copy(value)
    return value
