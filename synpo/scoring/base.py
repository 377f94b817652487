"""The scorer contract: one call, ``compare(prompts, a, b) -> Comparison``, plus what a scorer may also know
(pointwise scores, exact correctness) as optional answers that are ``None`` where it does not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Comparison:
    """How much better ``a`` is than ``b`` per prompt (``gaps``, the scale the threshold applies to), and each
    side's pointwise score where the scorer has one (``None`` for pairwise scorers such as PairRM or a judge)."""

    gaps: list[float]
    scores_a: list[float] | None = None
    scores_b: list[float] | None = None

    @property
    def pairwise(self) -> bool:
        return self.scores_a is None

    def rows(self) -> list[dict]:
        """One ``{gap, score_a, score_b}`` row per prompt (scores null when pairwise): the scores files' rows."""
        return [
            {
                "gap": g,
                "score_a": None if self.scores_a is None else self.scores_a[i],
                "score_b": None if self.scores_b is None else self.scores_b[i],
            }
            for i, g in enumerate(self.gaps)
        ]

    @classmethod
    def from_rows(cls, rows: list[dict]) -> Comparison:
        pointwise = bool(rows) and rows[0]["score_a"] is not None
        return cls(
            [r["gap"] for r in rows],
            [r["score_a"] for r in rows] if pointwise else None,
            [r["score_b"] for r in rows] if pointwise else None,
        )


class Scorer(Protocol):
    def accepts(self, prompt: str) -> bool:
        """Whether this scorer can judge answers to ``prompt`` (invalid synthetic prompts are dropped)."""
        ...

    def compare(self, prompts: list[str], a: list[str], b: list[str]) -> Comparison:
        """Per prompt, how much better ``a`` is than ``b``; gaps are compared with ``scorer.threshold``."""
        ...

    def scores(self, prompts: list[str], responses: list[str]) -> list[float] | None:
        """One score per response (higher is better), or None for a scorer that only compares."""
        ...

    def exact(self, prompts: list[str], responses: list[str]) -> list[bool] | None:
        """Whether each response's content is exactly right, or None for a scorer that cannot tell."""
        ...

    def parts(self, prompts: list[str], responses: list[str]) -> dict[str, list[float]] | None:
        """The named parts the score is made of, one value per response each (the verifier: ``content`` and
        ``form``), or None for a scorer whose score has no such parts."""
        ...

    def preferences(self, gaps: list[float], tie: float = 0.0) -> list[float]:
        """Each gap of a comparison (a minus b) as a preference for ``a`` in [0, 1], for win rates."""
        ...

    def release(self) -> None:
        """Give back the accelerator memory the scorer holds (its model goes back to host memory); the next call
        takes it again. Called before a stage that needs the device: a training job, a vLLM engine, lm-eval."""
        ...


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Row indices in batches of ``batch_size``, longest rows first: rows of one batch have near lengths, so a padded
    batch wastes little (at the paper's 2048-token answers, a random batch pads most rows to its longest). The caller
    puts each result back at its index; a row's score does not depend on its batch beyond the last bit."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def gap_preferences(gaps: list[float], tie: float = 0.0) -> list[float]:
    """A gap (a minus b) as a preference for ``a``: 1 above ``tie``, 0 below ``-tie``, else 0.5."""
    return [1.0 if g > tie else 0.0 if g < -tie else 0.5 for g in gaps]


class PointwiseScorer:
    """A scorer with a score per response (verifier, reward models): gaps are score differences."""

    def release(self) -> None:
        """Nothing to give back (a scorer with a model overrides this)."""

    def preferences(self, gaps: list[float], tie: float = 0.0) -> list[float]:
        """1 where ``a`` won by more than ``tie``, 0 where it lost by more, else 0.5 (a tie)."""
        return gap_preferences(gaps, tie)

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        raise NotImplementedError

    def scores(self, prompts: list[str], responses: list[str]) -> list[float] | None:
        return self.score(prompts, responses)

    def compare(self, prompts: list[str], a: list[str], b: list[str]) -> Comparison:
        sa, sb = self.score(prompts, a), self.score(prompts, b)
        return Comparison([x - y for x, y in zip(sa, sb, strict=True)], sa, sb)

    def exact(self, prompts: list[str], responses: list[str]) -> list[bool] | None:
        return None

    def parts(self, prompts: list[str], responses: list[str]) -> dict[str, list[float]] | None:
        return None


class PairwiseScorer:
    """A scorer that only compares two responses (PairRM, an LLM judge): ``gaps`` is its order-averaged verdict."""

    def release(self) -> None:
        """Nothing to give back (a scorer with a model overrides this)."""

    def preferences(self, gaps: list[float], tie: float = 0.0) -> list[float]:
        """1 where ``a`` won by more than ``tie``, 0 where it lost by more, else 0.5 (a tie)."""
        return gap_preferences(gaps, tie)

    def gaps(self, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
        raise NotImplementedError

    def scores(self, prompts: list[str], responses: list[str]) -> list[float] | None:
        return None

    def compare(self, prompts: list[str], a: list[str], b: list[str]) -> Comparison:
        return Comparison(self.gaps(prompts, a, b))

    def exact(self, prompts: list[str], responses: list[str]) -> list[bool] | None:
        return None

    def parts(self, prompts: list[str], responses: list[str]) -> dict[str, list[float]] | None:
        return None
