"""The scorer group's registry: each scorer's own schema, factory, checks and traits (``SCORERS``). A scorer's
code lives in its module (``verifier.py``, ``reward_model.py``, ...), imported only when it is built."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from synpo.modeling import DTYPES, model_path_problem
from synpo.registry import Registry
from synpo.schema import spec

if TYPE_CHECKING:
    from synpo.scoring.base import Scorer


@dataclass
class ScorerConfig:
    """What every scorer has: the threshold on a pair's gap, and the shards its stages write."""

    name: str = spec("verifier", "which scorer (synpo.scoring.config.SCORERS)")
    threshold: float = spec(0.1, "a pair is kept if its score gap exceeds this", ge=0)
    shard_size: int = spec(
        1024,
        "pairs per scores shard; a crash loses at most one shard (a changed size restarts an unfinished stage)",
        gt=0,
        speed=True,
    )
    replicas: int = spec(
        1,
        "copies of the scorer's model, on GPUs 0..replicas-1, that share a scoring stage's shards (the whole node "
        "is free while a stage scores); 1: one GPU",
        gt=0,
        speed=True,
    )


@dataclass
class RewardModelConfig(ScorerConfig):
    """A sequence-classification reward model on this machine: one number per (prompt, answer)."""

    name_or_path: str | None = spec(None, "the reward model: a local directory or a hub name in the cache")
    batch_size: int = spec(
        64,
        "answers per forward pass (speed only; on a GPU the padding may move the last bit)",
        gt=0,
        speed=True,
    )
    max_length: int = spec(4096, "tokens of the rendered conversation the model sees", gt=0)
    dtype: str = spec("float32", "the model's weights", choices=DTYPES)


@dataclass
class ArmoRMConfig(RewardModelConfig):
    """ArmoRM (RLHFlow/ArmoRM-Llama3-8B-v0.1): its preference score, read at the end of the assistant's turn."""

    trust_remote_code: bool = spec(
        False,
        "run the checkpoint's own modeling code instead of synpo's implementation of the architecture (that code "
        "fails under transformers 5; loading it runs it with your permissions)",
    )


@dataclass
class PairRMConfig(ScorerConfig):
    """PairRM (llm-blender/PairRM): compares two answers to one prompt."""

    name_or_path: str | None = spec(None, "the PairRM checkpoint: a local directory or a hub name in the cache")
    batch_size: int = spec(
        64, "pairs per forward pass (speed only; on a GPU the padding may move the last bit)", gt=0, speed=True
    )
    dtype: str = spec("float32", "the model's weights", choices=DTYPES)
    pairrm_scale: str = spec(
        "blender",
        "blender: logit(a,b) - logit(b,a) as LLM-Blender's API reports it; logit: half that",
        choices=("blender", "logit"),
    )


@dataclass
class JudgeConfig(ScorerConfig):
    """An LLM judge behind an OpenAI-compatible endpoint, asked which of two answers is better."""

    name_or_path: str | None = spec(None, "the model name the endpoint serves")
    # Where the model is served and how it is asked: placement, not identity.
    endpoint: str | None = spec(None, "an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1", speed=True)
    api_key_env: str | None = spec(None, "the NAME of the environment variable holding the key", speed=True)
    timeout_s: float = spec(60.0, "seconds per request", gt=0, speed=True)
    max_retries: int = spec(4, "retries on connection errors, 429 and 5xx", ge=0, speed=True)
    concurrency: int = spec(8, "requests in flight", gt=0, speed=True)


def _model_problems(s: DictConfig) -> list[str]:
    if not s.name_or_path:
        return [f"scorer.name_or_path is null but scorer.name={s.name!r} needs a model"]
    if problem := model_path_problem(s.name_or_path):
        return [f"scorer.name_or_path: {problem}"]
    return []


def _verifier(s: DictConfig, seed: int) -> Scorer:
    from synpo.scoring.verifier import VerifierScorer

    return VerifierScorer()


def _reward_model(s: DictConfig, seed: int) -> Scorer:
    from synpo.scoring.reward_model import RewardModelScorer

    return RewardModelScorer(s.name_or_path, s.batch_size, s.max_length, "logits", dtype=s.dtype)


def _armorm(s: DictConfig, seed: int) -> Scorer:
    from synpo.scoring.reward_model import ArmoRMScorer, RewardModelScorer

    if s.trust_remote_code:
        return RewardModelScorer(
            s.name_or_path, s.batch_size, s.max_length, "score", trust_remote_code=True, dtype=s.dtype
        )
    return ArmoRMScorer(s.name_or_path, s.batch_size, s.max_length, dtype=s.dtype)


def _pairrm(s: DictConfig, seed: int) -> Scorer:
    from synpo.scoring.pairrm import PairRMScorer

    return PairRMScorer(s.name_or_path, s.batch_size, s.dtype, s.pairrm_scale)


def _judge(s: DictConfig, seed: int) -> Scorer:
    from synpo.scoring.judge import JudgeScorer

    return JudgeScorer(
        s.endpoint,
        s.name_or_path,
        api_key_env=s.api_key_env,
        timeout_s=s.timeout_s,
        max_retries=s.max_retries,
        concurrency=s.concurrency,
        seed=seed,
    )


def _none(s: DictConfig) -> list[str]:
    return []


@dataclass(frozen=True)
class ScorerEntry:
    """A scorer option: its schema, its factory (from its own block and the run's seed), its checks and traits."""

    schema: type
    build: Callable[[DictConfig, int], Scorer]
    block_problems: Callable[[DictConfig], list[str]] = _none
    pairwise: bool = False  # compares two answers (its cost reads both); else one score per answer
    loads_model: bool = False  # ``name_or_path`` is a model loaded on this machine (its size prices the plan)
    knows_exact: bool = False  # tells exact content (the verifier): trainer.select_on=val_exact needs it

    def problems(self, cfg: DictConfig) -> list[str]:
        p = self.block_problems(cfg.scorer)
        if cfg.trainer.select_on == "val_exact" and not self.knows_exact:
            p.append(
                f"trainer.select_on=val_exact needs a scorer that knows exact content (the verifier); scorer.name="
                f"{cfg.scorer.name!r} cannot tell it: select on val_score, val_score_sampled or val_win_rate"
            )
        return p


SCORERS: Registry[ScorerEntry] = Registry(
    "scorer",
    {
        "verifier": ScorerEntry(ScorerConfig, _verifier, knows_exact=True),
        "reward_model": ScorerEntry(RewardModelConfig, _reward_model, _model_problems, loads_model=True),
        "armorm": ScorerEntry(ArmoRMConfig, _armorm, _model_problems, loads_model=True),
        "pairrm": ScorerEntry(PairRMConfig, _pairrm, _model_problems, pairwise=True, loads_model=True),
        "judge": ScorerEntry(JudgeConfig, _judge, lambda s: _judge_problems(s), pairwise=True),
    },
)


def make_scorer(s: DictConfig, seed: int) -> Scorer:
    """The scorer that the block ``s`` (``cfg.scorer``) selects."""
    return SCORERS[s.name].build(s, seed)


def _usable_url(url: str | None) -> bool:
    try:
        parts = urllib.parse.urlsplit(url or "")
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url)


def _judge_problems(s: DictConfig) -> list[str]:
    p = []
    if not _usable_url(s.endpoint):
        p.append(
            f"scorer.endpoint={s.endpoint!r}: the judge needs an OpenAI-compatible base URL such as "
            "http://127.0.0.1:8000/v1 (`vllm serve <model>`) or https://api.openai.com/v1"
        )
    if not s.name_or_path:
        p.append("scorer.name_or_path is null but scorer=judge needs the model name the endpoint serves")
    if s.api_key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", s.api_key_env):
        # The value is not echoed: it may be the key itself.
        p.append(
            "scorer.api_key_env is not an environment variable name: give the NAME of the variable that holds "
            "the key (e.g. OPENAI_API_KEY), never the key"
        )
    return p
