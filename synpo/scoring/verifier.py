"""The tiny world's scorer: the exact verifier, as a Scorer."""

from __future__ import annotations

from synpo.scoring.base import PointwiseScorer
from synpo.tinyworld.tasks import parse_prompt
from synpo.tinyworld.verifier import verify


class VerifierScorer(PointwiseScorer):
    def accepts(self, prompt: str) -> bool:
        return parse_prompt(prompt) is not None

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        scores = []
        for prompt, response in zip(prompts, responses, strict=True):
            task = parse_prompt(prompt)
            scores.append(0.0 if task is None else verify(task, response).score)
        return scores

    def exact(self, prompts: list[str], responses: list[str]) -> list[bool] | None:
        """Whether each answer's content is exactly right (for the tiny world's accuracy columns)."""
        out = []
        for prompt, response in zip(prompts, responses, strict=True):
            task = parse_prompt(prompt)
            out.append(task is not None and verify(task, response).exact)
        return out
