"""Reward-model scorers through their real loading paths, on tiny models built here with the real classes."""

import json
import os

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from synpo.errors import UserError
from synpo.modeling import load_tokenizer
from synpo.scoring.reward_model import RewardModelScorer

RM_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}### {{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
)
ARMO_CODE = """
import os
from dataclasses import dataclass

import torch
from transformers import LlamaForSequenceClassification
from transformers.utils import ModelOutput

if os.environ.get("ARMO_SENTINEL"):
    open(os.environ["ARMO_SENTINEL"], "w").write("custom code ran")


@dataclass
class ArmoOutput(ModelOutput):
    score: torch.FloatTensor = None


class TinyArmoRM(LlamaForSequenceClassification):
    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask)
        return ArmoOutput(score=2.0 * out.logits[:, 0])
"""


def _build_rm(path, custom: bool = False):
    tok = load_tokenizer("builtin:tiny-sft")
    tok.chat_template = RM_TEMPLATE  # the reward model's own format, unlike the policy's
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    if custom:
        (path / "modeling_tiny_armo.py").write_text(ARMO_CODE)
        cfg = json.loads((path / "config.json").read_text())
        cfg["auto_map"] = {"AutoModelForSequenceClassification": "modeling_tiny_armo.TinyArmoRM"}
        (path / "config.json").write_text(json.dumps(cfg))
    return path


def _manual_logit(model_path, text):
    model = LlamaForSequenceClassification.from_pretrained(model_path).eval()
    tok = load_tokenizer(str(model_path))
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return model(**ids).logits[0, 0].item()


def test_reward_model_scores_in_its_own_chat_format(tmp_path):
    path = _build_rm(tmp_path / "rm")
    scorer = RewardModelScorer(str(path), batch_size=2)
    prompts = ["Add the numbers 3 and 4.", "Uppercase the word rose.", "Sort the numbers: 5 3 9"]
    answers = ["The sum of 3 and 4 is 7.", "ROSE", "3 5 9 and some longer padding text here"]
    rendered = scorer.render(prompts[0], answers[0])
    assert rendered == "<s>### User: Add the numbers 3 and 4.\n### Assistant: The sum of 3 and 4 is 7.\n"
    scores = scorer.score(prompts, answers)  # batches of 2 with right padding
    expected = [_manual_logit(path, scorer.render(p, a)) for p, a in zip(prompts, answers, strict=True)]
    assert scores == pytest.approx(expected, abs=1e-4)


def test_armorm_path_refuses_without_trust_remote_code(tmp_path, monkeypatch):
    path = _build_rm(tmp_path / "armo", custom=True)
    sentinel = tmp_path / "ran"
    monkeypatch.setenv("ARMO_SENTINEL", str(sentinel))
    with pytest.raises(UserError, match="trust_remote_code=true"):
        RewardModelScorer(str(path), output="score", trust_remote_code=False)
    assert not sentinel.exists()  # refused before any of the checkpoint's code ran


def test_armorm_path_reads_output_score(tmp_path, monkeypatch):
    path = _build_rm(tmp_path / "armo", custom=True)
    monkeypatch.setenv("ARMO_SENTINEL", str(tmp_path / "ran"))
    scorer = RewardModelScorer(str(path), output="score", trust_remote_code=True)
    assert type(scorer.model).__name__ == "TinyArmoRM" and os.path.exists(tmp_path / "ran")
    prompts, answers = ["Add the numbers 3 and 4."], ["The sum of 3 and 4 is 7."]
    logit = _manual_logit(path, scorer.render(prompts[0], answers[0]))
    assert scorer.score(prompts, answers) == pytest.approx([2.0 * logit], abs=1e-4)
