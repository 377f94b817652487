"""Reward-model scorers through their real loading paths, on tiny models built here with the real classes."""

import os

import pytest
import torch
from helpers import build_reward_model
from transformers import LlamaForSequenceClassification

from synpo.modeling import load_tokenizer
from synpo.scoring.reward_model import RewardModelScorer


def _manual_logit(model_path, text):
    model = LlamaForSequenceClassification.from_pretrained(model_path).eval()
    tok = load_tokenizer(str(model_path))
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return model(**ids).logits[0, 0].item()


def test_reward_model_scores_in_its_own_chat_format(tmp_path):
    path = build_reward_model(tmp_path / "rm")
    scorer = RewardModelScorer(str(path), batch_size=2)
    prompts = ["Add the numbers 3 and 4.", "Uppercase the word rose.", "Sort the numbers: 5 3 9"]
    answers = ["The sum of 3 and 4 is 7.", "ROSE", "3 5 9 and some longer padding text here"]
    rendered = scorer.render(prompts[0], answers[0])
    assert rendered == "<s>### User: Add the numbers 3 and 4.\n### Assistant: The sum of 3 and 4 is 7.\n"
    scores = scorer.score(prompts, answers)  # batches of 2 with right padding
    expected = [_manual_logit(path, scorer.render(p, a)) for p, a in zip(prompts, answers, strict=True)]
    assert scores == pytest.approx(expected, abs=1e-4)


def test_a_checkpoint_with_custom_code_never_runs_it_without_trust_remote_code(tmp_path, monkeypatch):
    path = build_reward_model(tmp_path / "armo", custom=True)
    sentinel = tmp_path / "ran"
    monkeypatch.setenv("ARMO_SENTINEL", str(sentinel))
    scorer = RewardModelScorer(str(path), trust_remote_code=False)  # the config's own class, not the custom one
    assert type(scorer.held.model).__name__ == "LlamaForSequenceClassification"
    assert not sentinel.exists()  # none of the checkpoint's code ran


def test_armorm_path_reads_output_score(tmp_path, monkeypatch):
    path = build_reward_model(tmp_path / "armo", custom=True)
    monkeypatch.setenv("ARMO_SENTINEL", str(tmp_path / "ran"))
    scorer = RewardModelScorer(str(path), output="score", trust_remote_code=True)
    assert type(scorer.held.model).__name__ == "TinyArmoRM" and os.path.exists(tmp_path / "ran")
    prompts, answers = ["Add the numbers 3 and 4."], ["The sum of 3 and 4 is 7."]
    logit = _manual_logit(path, scorer.render(prompts[0], answers[0]))
    assert scorer.score(prompts, answers) == pytest.approx([2.0 * logit], abs=1e-4)
