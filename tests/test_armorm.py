"""ArmoRM implemented here (``synpo.scoring.armorm``), on a tiny checkpoint built in the real one's layout: its weight
names, config fields, class name and Llama-3 chat template, with pad = <|eot_id|> as the real tokenizer sets it."""

import json

import pytest
import torch
from helpers import build_standin
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig

from synpo.errors import UserError
from synpo.modeling import load_tokenizer
from synpo.scoring.armorm import ARCHITECTURE, ArmoRMModel
from synpo.scoring.reward_model import ArmoRMScorer, RewardModelScorer

PROMPTS = ["add the numbers 3 and 4", "uppercase the word rose", "hi"]
ANSWERS = ["sum is 7", "the word is ROSE . the word is ROSE .", "hi"]  # other lengths: the batch is padded


def build_armorm(tmp_path):
    """A 2-layer ArmoRM with 5 objectives, saved as the real checkpoint is (its custom class named in config.json)."""
    tok = load_tokenizer(str(build_standin(tmp_path, "llama3")))
    tok.pad_token = "<|eot_id|>"  # as in the real checkpoint: padding right with the end-of-turn token
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        num_objectives=5,
        gating_hidden_dim=16,
        gating_n_hidden=2,
        gating_temperature=10,
        architectures=[ARCHITECTURE],
        auto_map={"AutoModelForSequenceClassification": f"modeling_custom.{ARCHITECTURE}"},
    )
    torch.manual_seed(0)
    model = ArmoRMModel(config)
    with torch.no_grad():  # a transform that is not the identity, to see that the checkpoint's is the one used
        model.reward_transform_matrix.copy_(torch.randn(5, 5))
        model.gating.logit_scale.fill_(1.5)
    path = tmp_path / "armorm"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    saved = json.loads((path / "config.json").read_text())  # the real checkpoint names its own class
    saved.update(architectures=[ARCHITECTURE], auto_map=config.auto_map)
    (path / "config.json").write_text(json.dumps(saved))
    return path


def _by_hand(path, prompt: str, answer: str) -> float:
    """The score from the model's parts on the unpadded row: rewards at its last token, the gate where the prompt
    ends (the start of <|eot_id|><|start_header_id|>assistant<|end_header_id|>)."""
    model, tok = ArmoRMModel.from_pretrained(path).eval(), load_tokenizer(str(path))
    chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    ids = tok(tok.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"]
    header = [tok.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|start_header_id|>", "assistant")]
    gate_at = max(i for i in range(len(ids) - 2) if ids[i : i + 3] == header)
    with torch.no_grad():
        hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        rewards = model.regression_layer(hidden[-1]) @ model.reward_transform_matrix
        gate = torch.softmax(_mlp(model.gating, hidden[gate_at]) / 10, dim=-1) * 1.5
    return float((gate * rewards).sum())


def _mlp(gating, x):
    for layer in gating.layers[:-1]:
        x = torch.relu(layer(x))
    return gating.layers[-1](x)


def test_a_padded_batch_scores_as_each_row_alone_and_as_by_hand(tmp_path):
    path = build_armorm(tmp_path)
    batched = ArmoRMScorer(str(path), batch_size=3).score(PROMPTS, ANSWERS)
    alone = [ArmoRMScorer(str(path), batch_size=1).score([p], [a])[0] for p, a in zip(PROMPTS, ANSWERS, strict=True)]
    by_hand = [_by_hand(path, p, a) for p, a in zip(PROMPTS, ANSWERS, strict=True)]
    scale = max(abs(s) for s in by_hand)
    assert len(set(by_hand)) == 3 and scale > 0
    assert batched == pytest.approx(alone, abs=1e-5 * scale)
    assert batched == pytest.approx(by_hand, abs=1e-5 * scale)


def test_a_checkpoint_of_another_layout_is_refused(tmp_path):
    path = build_armorm(tmp_path)
    weights = load_file(path / "model.safetensors")
    del weights["gating.layers.0.weight"]
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError, match="does not match ArmoRM's layout"):
        ArmoRMScorer(str(path))


def test_the_checkpoints_own_code_is_opt_in_and_its_import_error_is_one_paragraph(tmp_path):
    """The real modeling file imports LLAMA_INPUTS_DOCSTRING, gone in transformers 5: a clear error, no traceback."""
    path = build_armorm(tmp_path)
    (path / "modeling_custom.py").write_text(
        "from transformers.models.llama.modeling_llama import LLAMA_INPUTS_DOCSTRING\n"
    )
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == [ARCHITECTURE]
    with pytest.raises(UserError, match="Set scorer.trust_remote_code=false: ArmoRM is implemented here"):
        RewardModelScorer(str(path), output="score", trust_remote_code=True)
