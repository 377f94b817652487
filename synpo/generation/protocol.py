"""The Generator protocol: user messages in, one response per message out, written in resumable shards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0
    n: int = 1  # samples per prompt; the backends return them prompt-major (prompt 0's n samples first)
    stop: tuple[str, ...] = ()  # strings that end an answer, kept in it (the prompt generator's </question>)


class Completion(str):
    """A response's text that also says why it ended: ``stop`` (an EOS id) or ``length`` (``max_new_tokens`` ran
    out: the answer is cut off, and training on it would teach that such text is complete). A ``str``, so code that
    only needs the text uses it as one."""

    finish_reason: str
    prompt_tokens: int  # the rendered prompt's tokens, and the answer's generated tokens (0: not known)
    tokens: int

    def __new__(cls, text: str, finish_reason: str = "stop", prompt_tokens: int = 0, tokens: int = 0) -> Completion:
        obj = super().__new__(cls, text)
        obj.finish_reason, obj.prompt_tokens, obj.tokens = finish_reason, prompt_tokens, tokens
        return obj

    def shard_row(self) -> dict:
        """What a backend's resumable shard keeps of it (``from_shard_row`` reads it back)."""
        return {
            "response": str(self),
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "tokens": self.tokens,
        }

    @classmethod
    def from_shard_row(cls, row: dict) -> Completion:
        return cls(
            row["response"], row.get("finish_reason", "stop"), row.get("prompt_tokens", 0), row.get("tokens", 0)
        )

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def generation_compute(completions: list[Completion]) -> dict:
    """The forward compute (``synpo.compute``) of generating ``completions``: each prompt and answer once."""
    from synpo.compute import sequence_compute

    return sequence_compute(c.prompt_tokens + c.tokens for c in completions)


class Generator(Protocol):
    runs_apart: bool  # it runs in another process that needs the accelerator free when it starts (vLLM)

    def generate(
        self, model_path: str, prompts: list[str], sampling: SamplingParams, shard_dir: Path | None = None
    ) -> list[Completion]:
        """``n`` responses per prompt (a user message, rendered with the model's chat template), prompt-major.

        With ``shard_dir``, finished shards are kept there and a rerun after a crash redoes only the missing ones.
        """
        ...

    def generate_groups(self, model_path: str, groups: list[tuple[list, SamplingParams]]) -> list[list[Completion]]:
        """``generate`` for each ``(prompts, sampling)`` group, each answer as its group alone would give it (to the
        last bit a batch's composition may move, as ``generate``'s batch size may), with the model loaded once for
        all of them where loading is what costs (a vLLM engine start), and in one batch where the groups allow it."""
        ...

    def release(self) -> None:
        """Free whatever the backend keeps loaded between calls (called before every training job and every stage
        that runs apart)."""
        ...

    def version(self) -> str:
        """The backend's packages and versions, as this run's answers were generated with (recorded in results and
        W&B: HF and vLLM sampling give different SPIN results, uclaml/SPIN#36)."""
        ...
