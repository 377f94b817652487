"""Worlds: data sources that make their own data, behind one provider interface.

A world (the embedded tiny world is the one there is) serves what a user would otherwise hand over as files: seed
rows, keyword lists, fresh prompts of the same distribution, rated preference pairs, judge-training examples, and
statistics of a set of prompts. A config value that names a world (``data.source``, ``data.keywords``,
``method.manual_prompts``, ``method.preference_file``, ``method.judge_data``) is served by its provider; any other
value is a file. Generic code asks ``world(value)`` and the provider; it never compares a value with a world's name,
and only this module imports a world's package (``tests/test_architecture.py`` checks both).
"""

from __future__ import annotations

import importlib
import random
from typing import Protocol

# name -> the module and class of its provider, imported when first asked for
PROVIDERS = {"tinyworld": ("synpo.tinyworld.provider", "TinyWorld")}


class World(Protocol):
    corpus_rows: int  # keyword lists the world writes for the prompt generator's pool

    def seed_rows(
        self, n_train: int, n_val: int, rng: random.Random, answer_rng: random.Random, answers: str, noise: float
    ) -> tuple[list[dict], list[dict]]:
        """``{prompt, answer}`` rows: train (answers ``gold`` or ``sft``-quality with ``noise`` of them wrong) and
        validation (gold), with distinct prompts."""
        ...

    def keywords_of(self, prompt: str) -> list[str]:
        """The keywords of one of the world's prompts (the prompt generator's training inputs)."""
        ...

    def keyword_lists(self, n: int, seed: int, exclude: set[str]) -> list[list[str]]:
        """``n`` keyword lists drawn from the world's own text, none from a prompt in ``exclude``."""
        ...

    def fresh_prompts(self, rng: random.Random, n: int, exclude: set[str]) -> list[str]:
        """``n`` distinct prompts of the world's distribution outside ``exclude`` (its "manual" prompts)."""
        ...

    def preferences(self, n: int, seed: int, exclude: set[str]) -> list[dict]:
        """``n`` rated, binarized ``{prompt, chosen, rejected}`` pairs (its "manual" preference data)."""
        ...

    def judge_examples(self, prompts: list[str], seed: int) -> list[dict]:
        """Judge-training rows ``{prompt, response, score}`` (score 0-5) for answers to ``prompts``."""
        ...

    def prompt_stats(self, prompts: list[str]) -> dict:
        """Numbers that describe a set of prompts (for the tiny world: how many ask for each task family)."""
        ...


def world(name: str | None) -> World | None:
    """The provider that the config value ``name`` names, or None when it names none (it is then a file)."""
    if name not in PROVIDERS:
        return None
    module, cls = PROVIDERS[name]
    return getattr(importlib.import_module(module), cls)()
