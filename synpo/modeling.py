"""Loading models and tokenizers by config, with clear errors and ``trust_remote_code`` off unless asked for."""

from __future__ import annotations

import json
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
    if cfg.model.dtype == "float16":
        p.append(
            "model.dtype=float16 is not supported: training in float16 needs loss scaling, which no training job "
            "here sets up, and CPUs have no float16 matrix units. Use bfloat16 (GPUs since Ampere, CPUs with "
            "AVX-512 BF16 or AMX) or float32"
        )
    return p


BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = {"tiny-sft": Path(__file__).parent / "tinyworld" / "checkpoint"}


def resolve_model_path(name_or_path: str) -> str:
    """A local directory for ``builtin:<name>`` models and local paths; hub ids are returned unchanged. A built-in
    GGUF model (``synpo.gguf_models``) is converted to a cached HF directory on first use."""
    if name_or_path.startswith(BUILTIN_PREFIX):
        from synpo.gguf_models import GGUF_MODELS, converted

        key = name_or_path[len(BUILTIN_PREFIX) :]
        if key in GGUF_MODELS:
            return str(converted(key))
        if key not in BUILTIN_MODELS:
            known = [BUILTIN_PREFIX + k for k in [*BUILTIN_MODELS, *GGUF_MODELS]]
            raise UserError(
                f"model.name_or_path={name_or_path!r}: no built-in model {key!r}. Built-in models: {known}."
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
    """Why ``name_or_path`` cannot name a usable model, or None. Hub ids (``org/name``) are accepted unchecked; a
    local directory is checked without loading weights: its config, tokenizer files and safetensors headers."""
    if name_or_path.startswith(BUILTIN_PREFIX):
        from synpo.gguf_models import GGUF_MODELS, gguf_source

        key = name_or_path[len(BUILTIN_PREFIX) :]
        if key in GGUF_MODELS:  # checked without converting: conversion is the first stage's work
            source = gguf_source(key)
            return source if isinstance(source, str) else None
        try:
            resolve_model_path(name_or_path)
        except UserError as e:
            return str(e)
        return None
    p = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1 or p.exists()
    if not looks_local:
        return None
    if not (p / "config.json").is_file():
        return (
            f"{name_or_path!r} is not a model directory (no config.json there). Give a local directory written "
            "by save_pretrained, a hub id such as 'org/name', or 'builtin:tiny-sft'."
        )
    return _config_problem(p) or _tokenizer_problem(p) or _weights_problem(p)


def _json_problem(path: Path) -> str | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return f"{path} is not UTF-8 text"
    except json.JSONDecodeError as e:
        return f"{path}:{e.lineno} is not valid JSON ({e.msg})"
    return None if isinstance(value, dict) else f"{path} holds a {type(value).__name__}, not a JSON object"


def _config_problem(d: Path) -> str | None:
    problem = _json_problem(d / "config.json")
    if problem:
        return f"{problem}: the directory is not a usable checkpoint; rewrite it with save_pretrained"
    model_type = json.loads((d / "config.json").read_text(encoding="utf-8")).get("model_type")
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        return (
            f"{d / 'config.json'} names model_type={model_type!r}, which this transformers does not know; give a "
            "checkpoint written by save_pretrained (model_type llama, mistral, ...)"
        )
    return None


def _tokenizer_problem(d: Path) -> str | None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (d / name).is_file() and (problem := _json_problem(d / name)):
            return f"{problem}: the tokenizer cannot be loaded; copy the tokenizer files again"
    return None


def _weights_problem(d: Path) -> str | None:
    files = sorted(d.glob("*.safetensors"))
    if not files and not list(d.glob("*.bin")):
        return f"{d} has no weights (*.safetensors or *.bin); the checkpoint is incomplete"
    for f in files:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            try:
                header = json.loads(fh.read(n)) if 0 < n <= size - 8 else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                header = None
        ends = [v["data_offsets"][1] for k, v in (header or {}).items() if k != "__metadata__"]
        if header is None or 8 + n + max(ends, default=0) > size:
            return f"{f} is truncated or not a safetensors file ({size} bytes); copy or save the checkpoint again"
    return None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:  # a missing, partial or corrupt checkpoint raises OSError, ValueError, JSON errors ...
        raise UserError(_load_error(name_or_path, e)) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    bos_in_template(tok)
    return tok


def bos_in_template(tok) -> None:
    """Make the chat template write BOS when the tokenizer adds one to plain text but the template does not
    (zephyr-7b-sft-full's). Every path then renders the template and tokenizes it without special tokens, so
    generation, SFT, SimPO and DPO all see BOS exactly once, as the model saw it in its own SFT."""
    if tok.bos_token is None or not tok.chat_template:
        return
    adds_bos = tok("x")["input_ids"][:1] == [tok.bos_token_id]
    rendered = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    if adds_bos and not rendered.startswith(tok.bos_token):
        tok.chat_template = "{{ bos_token }}" + tok.chat_template


def render_prompts(tokenizer, prompts: list) -> list[str]:
    """Each prompt through the tokenizer's chat template, ready for the assistant's turn. A prompt is a user message
    (a string), a whole conversation (a list of ``{"role", "content"}`` ending with a user turn: MT-Bench's second
    turn), or ``{"raw": text}``: the text as it is, without the template (SPIN's generation prompt), after the BOS
    token where the tokenizer adds one to plain text (as vLLM does to a text prompt)."""
    bos = _plain_text_bos(tokenizer) if any(isinstance(p, dict) for p in prompts) else ""
    return [
        bos + p["raw"]
        if isinstance(p, dict)
        else tokenizer.apply_chat_template(
            [{"role": "user", "content": p}] if isinstance(p, str) else list(p),
            add_generation_prompt=True,
            tokenize=False,
        )
        for p in prompts
    ]


def system_role_problem(model: str, trust_remote_code: bool = False) -> str | None:
    """Why the chat template of ``model`` cannot start a conversation with a system message, or None."""
    try:
        render_prompts(load_tokenizer(model, trust_remote_code), [[{"role": "system", "content": ""}, _USER]])
    except Exception as e:  # jinja2's TemplateError, or the template's own raise_exception
        return f"the chat template of {model} refuses a system message ({e})"
    return None


_USER = {"role": "user", "content": "x"}


def _plain_text_bos(tokenizer) -> str:
    """The BOS token's text if the tokenizer starts plain text with it, else ""."""
    bos = tokenizer.bos_token_id
    ids = tokenizer("x")["input_ids"]
    return tokenizer.bos_token if bos is not None and ids[:1] == [bos] else ""


def stop_token_ids(model, tok) -> list[int]:
    """Every id that ends an answer: the model's generation config's EOS ids (Llama-3 ends turns with <|eot_id|>),
    the tokenizer's EOS, and the token its chat template ends an assistant turn with (``end_of_turn_id``)."""
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    own = [i for i in (tok.eos_token_id, end_of_turn_id(tok)) if i is not None]
    return sorted({*ids, *own})


def end_of_turn_id(tok) -> int | None:
    """The special token the chat template writes right after an assistant's answer (Llama-3's <|eot_id|>,
    ChatML's <|im_end|>, zephyr's </s>): what every training job ends an answer with, and what generation stops
    at. The tokenizer's EOS where the template writes no special token there (or has no template)."""
    if not tok.chat_template:
        return tok.eos_token_id
    marker = "synpo-answer-end"
    turns = [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}]
    text = tok.apply_chat_template(turns, tokenize=False)
    after = text[text.rindex(marker) + len(marker) :] if marker in text else ""
    ids = tok(after, add_special_tokens=False)["input_ids"] if after.strip() else []
    return ids[0] if ids and ids[0] in tok.all_special_ids else tok.eos_token_id


def load_causal_lm(
    name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False, attention: str | None = None
):
    """A causal LM in ``dtype``; ``attention``: transformers' ``attn_implementation`` (None: its default)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    extra = {"attn_implementation": attention} if attention else {}
    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code, **extra
        )
    except Exception as e:  # a missing, partial or corrupt checkpoint raises OSError, ValueError, safetensors errors
        raise UserError(_load_error(name_or_path, e)) from None


def _load_error(name_or_path: str, err: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return (
        f"Could not load the model or tokenizer {name_or_path!r}: {type(err).__name__}: "
        f"{(str(err).splitlines() or [''])[0]}. "
        f"{'HF_HUB_OFFLINE=1 is set, so nothing is downloaded. ' if offline else ''}"
        "Point model.name_or_path at a local directory written by save_pretrained (download it first with "
        "`huggingface-cli download <id> --local-dir <dir>`), or use model=tiny."
    )
