"""Methods: how one iteration turns the current state into preference pairs and a new policy."""

from __future__ import annotations

from types import ModuleType

from synpo.errors import UserError


def get_method(name: str) -> ModuleType:
    """The module implementing ``method.name``; it has ``prepare(ctx)`` and ``iteration(ctx, t, state)``."""
    if name == "synpo":
        from synpo.methods import synpo

        return synpo
    if name in ("spin", "spin_judged", "spin_noised", "spin_adaptive"):
        from synpo.methods import spin

        return spin
    raise UserError(
        f"method.name={name!r} is not known; choose synpo, spin, spin_judged, spin_noised or spin_adaptive."
    )
