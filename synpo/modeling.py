"""Loading models and tokenizers by config, with clear errors and ``trust_remote_code`` off unless asked for."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING, DictConfig

from synpo.errors import UserError
from synpo.schema import spec

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ModelConfig:
    """The policy pi_0 (and the starting point of the prompt generator and the improver)."""

    name: str = spec(MISSING, "short label used in run names")
    name_or_path: str = spec(MISSING, "local directory, hub id, or builtin:tiny-sft")
    dtype: str = spec("float32", "weights' dtype for training and HF generation", choices=DTYPES)
    trust_remote_code: bool = spec(False, "only ever true for a named model whose code you have read")


def model_problems(cfg: DictConfig) -> list[str]:
    """What is wrong with ``cfg.model`` beyond its field constraints."""
    p = []
    problem = model_path_problem(cfg.model.name_or_path)
    if problem:
        p.append(f"model.name_or_path: {problem}")
    if cfg.model.trust_remote_code and cfg.model.name_or_path.startswith(BUILTIN_PREFIX):
        p.append("model.trust_remote_code=true is not needed for built-in models; set it to false")
    return p


BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = {"tiny-sft": Path(__file__).parent / "tinyworld" / "checkpoint"}


def resolve_model_path(name_or_path: str) -> str:
    """A local directory for ``builtin:<name>`` models and local paths; hub ids are returned unchanged."""
    if name_or_path.startswith(BUILTIN_PREFIX):
        key = name_or_path[len(BUILTIN_PREFIX) :]
        if key not in BUILTIN_MODELS:
            raise UserError(
                f"model.name_or_path={name_or_path!r}: no built-in model {key!r}. "
                f"Built-in models: {[BUILTIN_PREFIX + k for k in BUILTIN_MODELS]}."
            )
        path = BUILTIN_MODELS[key]
        if not (path / "config.json").is_file():
            raise UserError(
                f"The built-in model {name_or_path!r} is missing from {path}. Rebuild it with "
                "`python -m synpo.tinyworld.build_sft` or reinstall the package."
            )
        return str(path)
    return name_or_path


def model_path_problem(name_or_path: str) -> str | None:
    """Why ``name_or_path`` cannot name a model, or None. Hub ids (``org/name``) are accepted unchecked."""
    if name_or_path.startswith(BUILTIN_PREFIX):
        try:
            resolve_model_path(name_or_path)
        except UserError as e:
            return str(e)
        return None
    p = Path(name_or_path)
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1 or p.exists()
    if looks_local and not (p.expanduser() / "config.json").is_file():
        return (
            f"{name_or_path!r} is not a model directory (no config.json there). Give a local directory written "
            "by save_pretrained, a hub id such as 'org/name', or 'builtin:tiny-sft'."
        )
    return None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise UserError(_load_error(name_or_path, e)) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False):
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
        )
    except OSError as e:
        raise UserError(_load_error(name_or_path, e)) from None


def _load_error(name_or_path: str, err: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return (
        f"Could not load the model or tokenizer {name_or_path!r}: {str(err).splitlines()[0]}. "
        f"{'HF_HUB_OFFLINE=1 is set, so nothing is downloaded. ' if offline else ''}"
        "Point model.name_or_path at a local directory written by save_pretrained (download it first with "
        "`huggingface-cli download <id> --local-dir <dir>`), or use model=tiny."
    )
