"""Methods: how one iteration turns the current state into preference pairs and a new policy.

A method is a class that implements ``Method`` and is registered once, in ``METHODS``; the config's validation and
the loop both read that registry. docs/ARCHITECTURE.md shows how to add one.
"""

from __future__ import annotations

from synpo.errors import UserError
from synpo.methods.base import Iteration, Method

__all__ = ["METHODS", "Iteration", "Method", "get_method"]


def _registry() -> dict[str, Method]:
    from synpo.methods.baselines import SamplingRanking, SelfRewarding
    from synpo.methods.oneshot import Offline, SeedAblation
    from synpo.methods.spin import Spin
    from synpo.methods.synpo import SynPO

    return {
        "synpo": SynPO(),
        "sampling_ranking": SamplingRanking(),
        "self_rewarding": SelfRewarding(),
        "offline": Offline(),
        "seed_sft": SeedAblation("seed_sft"),
        "seed_po": SeedAblation("seed_po"),
        "seed_sft_po": SeedAblation("seed_sft_po"),
        "spin": Spin("spin"),
        "spin_judged": Spin("spin_judged"),
        "spin_noised": Spin("spin_noised"),
        "spin_adaptive": Spin("spin_adaptive"),
    }


METHODS: dict[str, Method] = _registry()


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"method.name={name!r} is not known; choose one of {sorted(METHODS)}.")
    return METHODS[name]
