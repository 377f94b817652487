"""What people would hand over in the tiny world: a preference set and judge-training examples.

- ``manual_preferences``: the tiny world's UltraFeedback binarized (the paper's "Manual" row). Per fresh task, four
  candidate answers of mixed quality (the gold sentence, the terse answer, two of ``corrupt``'s bad drafts) are rated
  by the verifier (standing in for the human/GPT-4 ratings); the best is chosen and a random lower-rated one is
  rejected, as UltraFeedback binarized does.
- ``judge_examples``: the tiny world's evaluation fine-tuning (EFT) data of Self-Rewarding (Yuan et al. 2024), built
  from the seed prompts: a candidate answer of mixed quality and its rating on the judge's 0-5 scale, rounded from
  the verifier's score.
"""

from __future__ import annotations

import random

from synpo.tinyworld.build_sft import corrupt
from synpo.tinyworld.tasks import Task, parse_prompt, sample_distinct_tasks
from synpo.tinyworld.verifier import verify


def _candidates(task: Task, rng: random.Random) -> list[str]:
    return [task.gold(), task.terse(), corrupt(task, rng), corrupt(task, rng)]


def manual_preferences(n: int, seed: int, exclude: set[str]) -> list[dict]:
    """``n`` rows ``{prompt, chosen, rejected}`` on tasks whose prompts are not in ``exclude`` (the seed split)."""
    rng = random.Random(seed)
    rows = []
    for task in sample_distinct_tasks(rng, n, exclude):
        rated = [(verify(task, c).score, c) for c in _candidates(task, rng)]
        best = max(score for score, _ in rated)
        chosen = next(c for score, c in rated if score == best)
        lower = [c for score, c in rated if score < best]
        if lower:  # every candidate equally good: no preference to learn (UltraFeedback drops ties too)
            rows.append({"prompt": task.prompt, "chosen": chosen, "rejected": rng.choice(lower)})
    return rows


def judge_rating(prompt: str, response: str) -> int | None:
    """The 0-5 rating of ``response`` (the verifier's score, scaled and rounded); None for a prompt outside the world."""
    task = parse_prompt(prompt)
    return None if task is None else round(5 * verify(task, response).score)


def judge_examples(prompts: list[str], seed: int) -> list[dict]:
    """One ``{prompt, response, score}`` judge example per tiny-world prompt, the candidates of mixed quality."""
    rng = random.Random(seed)
    rows = []
    for prompt in prompts:
        task = parse_prompt(prompt)
        if task is None:
            continue
        response = rng.choice(_candidates(task, rng))
        rows.append({"prompt": prompt, "response": response, "score": judge_rating(prompt, response)})
    return rows
