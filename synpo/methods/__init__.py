"""Methods: how one iteration turns the current state into preference pairs and a new policy.

A method is a class that implements ``Method``. Each module of this package may define ``METHODS``, a dict from a
``method.name`` to an instance; ``METHODS`` here gathers them all, so adding a method is one module and one YAML
(conf/method/). The config's validation and the loop read this registry and the methods' traits.
docs/ARCHITECTURE.md shows how to add one.
"""

from __future__ import annotations

from synpo.methods.base import Iteration, Method
from synpo.registry import Registry

__all__ = ["METHODS", "Iteration", "Method", "get_method"]


def _registry() -> dict[str, Method]:
    """Every module's ``METHODS``, merged; a name defined twice is a bug."""
    import importlib
    import pkgutil

    found: dict[str, Method] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, method in getattr(module, "METHODS", {}).items():
            if name in found:
                raise RuntimeError(f"method {name!r} is defined twice (the second time in {module.__name__})")
            found[name] = method
    return found


METHODS: Registry[Method] = Registry("method", _registry())


def get_method(name: str) -> Method:
    return METHODS[name]
