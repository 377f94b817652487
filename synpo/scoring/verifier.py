"""The tiny world's scorer: the exact verifier, as a Scorer."""

from __future__ import annotations

from synpo.scoring.base import PointwiseScorer
from synpo.tinyworld.tasks import parse_prompt
from synpo.tinyworld.verifier import verify


class VerifierScorer(PointwiseScorer):
    def accepts(self, prompt: str) -> bool:
        return parse_prompt(prompt) is not None

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        return [0.0 if v is None else v.score for v in _verdicts(prompts, responses)]

    def exact(self, prompts: list[str], responses: list[str]) -> list[bool] | None:
        """Whether each answer's content is exactly right (for the tiny world's accuracy columns)."""
        return [v is not None and v.exact for v in _verdicts(prompts, responses)]

    def parts(self, prompts: list[str], responses: list[str]) -> dict[str, list[float]] | None:
        """The verifier's two parts of each answer's score: content (with partial credit) and form."""
        verdicts = _verdicts(prompts, responses)
        return {k: [0.0 if v is None else getattr(v, k) for v in verdicts] for k in ("content", "form")}


def _verdicts(prompts: list[str], responses: list[str]) -> list:
    """The verifier's verdict on each answer, None where the prompt is not one of the world's tasks."""
    out = []
    for prompt, response in zip(prompts, responses, strict=True):
        task = parse_prompt(prompt)
        out.append(None if task is None else verify(task, response))
    return out
