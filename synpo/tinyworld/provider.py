"""The tiny world as a data provider (``synpo.worlds``): everything world-specific that generic code asks for."""

from __future__ import annotations

import random
from collections import Counter

from synpo.tinyworld import human, tasks
from synpo.tinyworld.build_sft import TERSE_SHARE, corrupt


class TinyWorld:
    corpus_rows = 2000  # keyword lists of the world's own text in the prompt generator's pool

    def seed_rows(
        self, n_train: int, n_val: int, rng: random.Random, answer_rng: random.Random, answers: str, noise: float
    ) -> tuple[list[dict], list[dict]]:
        val_tasks = tasks.sample_distinct_tasks(rng, n_val)
        train_tasks = tasks.sample_distinct_tasks(rng, n_train, exclude={t.prompt for t in val_tasks})
        train = [{"prompt": t.prompt, "answer": self._answer(t, answers, noise, answer_rng)} for t in train_tasks]
        return train, [{"prompt": t.prompt, "answer": t.gold()} for t in val_tasks]

    @staticmethod
    def _answer(task, answers: str, noise: float, rng: random.Random) -> str:
        """A seed answer: gold, or SFT-quality (mostly terse, ``noise`` of them wrong) for SPIN."""
        if answers == "gold":
            return task.gold()
        if rng.random() < noise:
            return corrupt(task, rng)
        return task.terse() if rng.random() < TERSE_SHARE else task.gold()

    def keywords_of(self, prompt: str) -> list[str]:
        return tasks.prompt_keywords(prompt)

    def keyword_lists(self, n: int, seed: int, exclude: set[str]) -> list[list[str]]:
        return tasks.keyword_corpus(n, seed, exclude)  # 3 keywords per task of the world's text, drawn together

    def fresh_prompts(self, rng: random.Random, n: int, exclude: set[str]) -> list[str]:
        return [task.prompt for task in tasks.sample_distinct_tasks(rng, n, exclude)]

    def preferences(self, n: int, seed: int, exclude: set[str]) -> list[dict]:
        return human.manual_preferences(n, seed, exclude)

    def judge_examples(self, prompts: list[str], seed: int) -> list[dict]:
        return human.judge_examples(prompts, seed)

    def prompt_stats(self, prompts: list[str]) -> dict:
        """``family_<name>``: how many prompts ask for each task family (``family_other``: none)."""
        counts = Counter((task.family if (task := tasks.parse_prompt(p)) else "other") for p in prompts)
        return {f"family_{k}": v for k, v in sorted(counts.items())}
