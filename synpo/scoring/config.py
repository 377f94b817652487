"""The scorer config group: its schema and the checks that relate its fields."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from omegaconf import DictConfig

from synpo.modeling import DTYPES, model_path_problem
from synpo.schema import spec

SCORERS = ("verifier", "reward_model", "armorm", "pairrm", "judge")


@dataclass
class ScorerConfig:
    """Compares two responses to a prompt; the threshold applies to the gap between chosen and rejected."""

    name: str = spec("verifier", "which scorer", choices=SCORERS)
    threshold: float = spec(0.1, "a pair is kept if its score gap exceeds this", ge=0)
    batch_size: int = spec(
        64,
        "pairs per forward pass of a reward model (speed only; on a GPU the padding may move the last bit)",
        gt=0,
        speed=True,
    )
    name_or_path: str | None = spec(None, "reward_model / armorm / pairrm: the model; judge: the served model name")
    trust_remote_code: bool = spec(
        False,
        "armorm only: run the checkpoint's own modeling code instead of synpo's implementation of the architecture "
        "(that code fails under transformers 5; loading it runs it with your permissions)",
    )
    max_length: int = spec(4096, "tokens of the rendered conversation a reward model sees", gt=0)
    dtype: str = spec("float32", "the reward model's weights", choices=DTYPES)
    shard_size: int = spec(
        1024,
        "pairs per scores shard; a crash loses at most one shard (a changed size restarts an unfinished stage)",
        gt=0,
        speed=True,
    )
    pairrm_scale: str = spec(
        "blender",
        "pairrm: blender, logit(a,b) - logit(b,a) as LLM-Blender's API reports it; logit: half that",
        choices=("blender", "logit"),
    )
    # The judge's placement: where the model named by name_or_path is served, and how it is asked.
    endpoint: str | None = spec(
        None, "judge: an OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1", speed=True
    )
    api_key_env: str | None = spec(None, "judge: the NAME of the environment variable holding the key", speed=True)
    timeout_s: float = spec(60.0, "judge: seconds per request", gt=0, speed=True)
    max_retries: int = spec(4, "judge: retries on connection errors, 429 and 5xx", ge=0, speed=True)
    concurrency: int = spec(8, "judge: requests in flight", gt=0, speed=True)


def scorer_problems(cfg: DictConfig) -> list[str]:
    """What is wrong with ``cfg.scorer`` beyond its field constraints."""
    s, p = cfg.scorer, []
    if s.name in ("reward_model", "armorm", "pairrm"):
        if not s.name_or_path:
            p.append(f"scorer.name_or_path is null but scorer.name={s.name!r} needs a reward model")
        elif problem := model_path_problem(s.name_or_path):
            p.append(f"scorer.name_or_path: {problem}")
    if s.trust_remote_code and s.name != "armorm":
        p.append(
            f"scorer.trust_remote_code=true with scorer.name={s.name!r}: it is only ever needed for armorm; "
            "set it to false"
        )
    if s.name == "judge":
        p += _judge_problems(s)
    if cfg.trainer.select_on == "val_exact" and s.name != "verifier":
        p.append(
            f"trainer.select_on=val_exact needs a scorer that knows exact content (the verifier); scorer.name="
            f"{s.name!r} cannot tell it: select on val_score, val_score_sampled or val_win_rate"
        )
    return p


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
