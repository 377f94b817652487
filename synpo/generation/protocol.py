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


class Generator(Protocol):
    def generate(
        self, model_path: str, prompts: list[str], sampling: SamplingParams, shard_dir: Path | None = None
    ) -> list[str]:
        """``n`` responses per prompt (a user message, rendered with the model's chat template), prompt-major.

        With ``shard_dir``, finished shards are kept there and a rerun after a crash redoes only the missing ones.
        """
        ...
