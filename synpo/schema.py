"""Declarative config fields: every schema field carries its help string and its allowed values or bounds beside it,
and one walker checks them all (``schema_problems``). Checks that relate several fields live in each component's
``problems(cfg)`` next to its code; ``synpo.config.validate`` gathers both.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from omegaconf import DictConfig, ListConfig


def spec(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = None,
    choices: tuple | None = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    speed: bool = False,
) -> Any:
    """A dataclass field with its help string and constraints. Bounds apply to a number, or to each item of a list;
    ``None`` is always allowed for a field whose default is ``None``.

    ``speed=True`` declares a setting that changes only speed or placement (batch and shard sizes, devices, memory
    shares, timeouts, interpreter paths): it stays out of every stage's fingerprint (``identity``), so changing it,
    for example after an out-of-memory error, never redoes finished work."""
    metadata = {"help": help, "choices": choices, "gt": gt, "ge": ge, "lt": lt, "le": le, "speed": speed}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _bounds_text(m: dict) -> str:
    low = f"({m['gt']}" if m["gt"] is not None else f"[{m['ge']}" if m["ge"] is not None else None
    high = f"{m['lt']})" if m["lt"] is not None else f"{m['le']}]" if m["le"] is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f"> {m['gt']}" if m["gt"] is not None else f">= {m['ge']}"
    return f"< {m['lt']}" if m["lt"] is not None else f"<= {m['le']}"


def _within(x: Any, m: dict) -> bool:
    if not isinstance(x, (int, float)):
        return True  # Hydra has already checked the type
    return not (
        (m["gt"] is not None and not x > m["gt"])
        or (m["ge"] is not None and not x >= m["ge"])
        or (m["lt"] is not None and not x < m["lt"])
        or (m["le"] is not None and not x <= m["le"])
    )


def _field_problems(key: str, value: Any, m: dict) -> list[str]:
    if value is None:
        return []
    if m.get("choices") is not None and value not in m["choices"]:
        return [f"{key}={value!r} is not allowed; choose one of {list(m['choices'])}"]
    has_bounds = any(m.get(b) is not None for b in ("gt", "ge", "lt", "le"))
    if not has_bounds:
        return []
    if isinstance(value, (list, ListConfig)):
        bad = [x for x in value if not _within(x, m)]
        return [f"{key}={list(value)} holds values outside {_bounds_text(m)}: {bad}"] if bad else []
    return [] if _within(value, m) else [f"{key}={value!r} must be {_bounds_text(m)}"]


def schema_problems(node: DictConfig, schema: type, prefix: str) -> list[str]:
    """Every field of ``node`` (typed by the dataclass ``schema``) outside its choices or bounds, recursively."""
    problems: list[str] = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = f"{prefix}.{f.name}" if prefix else f.name
        kind, m = hints[f.name], dict(f.metadata)
        constrained = m.get("choices") is not None or any(m.get(b) is not None for b in ("gt", "ge", "lt", "le"))
        if not (constrained or dataclasses.is_dataclass(kind)) or f.name not in node:
            continue  # unconstrained fields are never read (run_dir resolves only inside a Hydra job)
        value = node[f.name]
        if dataclasses.is_dataclass(kind) and isinstance(value, DictConfig):
            problems += schema_problems(value, kind, key)
        else:
            problems += _field_problems(key, value, m)
    return problems


def speed_fields(schema: type | DictConfig, prefix: str = "") -> list[str]:
    """The dotted names of the fields of ``schema`` (recursively) declared ``speed=True``. Given a typed config
    node instead, each block is read by its own type, so a group typed by its option's schema (a method, a scorer,
    a backend) gives that option's fields."""
    from omegaconf import OmegaConf

    node = None
    if isinstance(schema, DictConfig):
        node, schema = schema, OmegaConf.get_type(schema)
    hints, out = typing.get_type_hints(schema), []
    for f in dataclasses.fields(schema):
        key = f"{prefix}.{f.name}" if prefix else f.name
        child = None if node is None else OmegaConf.select(node, f.name, throw_on_resolution_failure=False)
        if f.metadata.get("speed"):
            out.append(key)
        elif isinstance(child, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(child)):
            out += speed_fields(child, key)
        elif dataclasses.is_dataclass(hints[f.name]):
            out += speed_fields(hints[f.name], key)
    return out


def identity(node: DictConfig | dict, schema: type | None = None) -> dict:
    """``node`` as plain data without its speed-only fields (recursively): what a stage's results depend on, for
    its fingerprint. ``schema`` defaults to the config node's own type; keys that it does not declare are kept."""
    from omegaconf import OmegaConf

    schema = schema or OmegaConf.get_type(node)
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if f.name not in data:
            continue
        if f.metadata.get("speed"):
            del data[f.name]
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(data[f.name], dict):
            data[f.name] = identity(data[f.name], hints[f.name])
    return data
