"""A component kind's registry: one entry per option of a Hydra group (a method, a scorer, a generation backend).

An entry is anything with a ``schema`` (its own dataclass: the fields of that option, each with its help, choices and
bounds) and ``problems(cfg)`` (how its fields disagree with each other and with the rest of the run's config), plus
whatever traits and factory its kind asks for. ``Registry.store`` puts each entry's schema in Hydra's ConfigStore as
``<group>/schema_<name>``; the option's YAML names it first in its ``defaults`` list, so Hydra types the block by the
option's own schema (a key of another option is refused when the config is composed). ``Registry.problems`` checks
the composed block against its entry: the selecting field's value, that the YAML named the right schema, and every
field's choices and bounds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, Protocol, TypeVar

from omegaconf import DictConfig, OmegaConf

from synpo.errors import UserError
from synpo.schema import schema_problems


class Entry(Protocol):
    schema: type

    def problems(self, cfg: DictConfig) -> list[str]: ...


E = TypeVar("E", bound=Entry)


class Registry(Generic[E]):
    """The options of the Hydra group ``group``; the block's field ``selector`` names which one is in use."""

    def __init__(self, group: str, entries: dict[str, E], selector: str = "name"):
        self.group, self.selector, self.entries = group, selector, dict(entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def items(self):
        return self.entries.items()

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __getitem__(self, name: str) -> E:
        if name not in self.entries:
            raise UserError(f"{self.group}.{self.selector}={name!r} is not known; choose one of {self.names()}.")
        return self.entries[name]

    def of(self, cfg: DictConfig) -> E:
        """The entry the run's config selects."""
        return self[cfg[self.group][self.selector]]

    def store(self, cs: Any) -> None:
        """Each entry's schema as ``<group>/schema_<name>`` in Hydra's ConfigStore ``cs``."""
        for name, entry in self.entries.items():
            cs.store(group=self.group, name=f"schema_{name}", node=entry.schema)

    def problems(self, cfg: DictConfig) -> list[str]:
        """What is wrong with the block ``cfg.<group>``: an unknown option, a YAML that does not name its option's
        schema, a field outside its choices or bounds, and the entry's own cross-field checks."""
        block = cfg[self.group]
        name = block.get(self.selector)
        key = f"{self.group}.{self.selector}"
        if name not in self.entries:
            return [f"{key}={name!r} is not allowed; choose one of {self.names()}"]
        entry = self.entries[name]
        typed = OmegaConf.get_type(block)
        if typed is not entry.schema:
            found = "names no schema" if typed in (dict, None) else f"is typed {typed.__name__}"
            return [
                f"{key}={name!r}: the block {found}, not {entry.schema.__name__}. Choose an option of the group "
                f"instead of setting {key} ({self.group}=<option>; the options are the YAML files under "
                f"conf/{self.group}/), and an option's YAML starts with `defaults: [schema_{name}, _self_]`"
            ]
        known = {f.name for f in dataclasses.fields(entry.schema)}
        extra = [
            f"{self.group}.{k} is not a field of {self.group} {name} ({entry.schema.__name__}); its fields: "
            f"{sorted(known)}"
            for k in block
            if k not in known
        ]
        return extra or schema_problems(block, entry.schema, self.group) + entry.problems(cfg)
