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


class Completion(str):
    """A response's text that also says why it ended: ``stop`` (an EOS id) or ``length`` (``max_new_tokens`` ran
    out: the answer is cut off, and training on it would teach that such text is complete). A ``str``, so code that
    only needs the text uses it as one."""

    finish_reason: str

    def __new__(cls, text: str, finish_reason: str = "stop") -> Completion:
        obj = super().__new__(cls, text)
        obj.finish_reason = finish_reason
        return obj

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class Generator(Protocol):
    def generate(
        self, model_path: str, prompts: list[str], sampling: SamplingParams, shard_dir: Path | None = None
    ) -> list[Completion]:
        """``n`` responses per prompt (a user message, rendered with the model's chat template), prompt-major.

        With ``shard_dir``, finished shards are kept there and a rerun after a crash redoes only the missing ones.
        """
        ...
