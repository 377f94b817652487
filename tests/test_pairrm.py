"""PairRM's forward pass and checkpoint loading, on a tiny DeBERTa-v2 ranker built here with the real classes."""

import pytest
import torch
from safetensors.torch import load_file
from tokenizers.processors import TemplateProcessing
from transformers import DebertaV2Config, PreTrainedTokenizerFast

from synpo.errors import UserError
from synpo.modeling import load_tokenizer
from synpo.scoring.pairrm import CAND1_PREFIX, CAND2_PREFIX, SOURCE_PREFIX, PairRMModel, PairRMScorer


def build_tiny_pairrm(path):
    """A randomly initialised PairRM with PairRM-hf's config fields and checkpoint layout, saved to ``path``."""
    base = load_tokenizer("builtin:tiny-sft").backend_tokenizer
    base.add_special_tokens(["[CLS]", "[SEP]", SOURCE_PREFIX, CAND1_PREFIX, CAND2_PREFIX])
    cls_id, sep_id = base.token_to_id("[CLS]"), base.token_to_id("[SEP]")
    base.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=base, cls_token="[CLS]", sep_token="[SEP]", pad_token="<pad>")
    config = DebertaV2Config(
        vocab_size=len(tok),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=2048,
        relative_attention=True,
        position_buckets=64,
        pos_att_type=["p2c", "c2p"],
        pad_token_id=tok.pad_token_id,
        n_tasks=1,
        drop_out=0.05,
        sep_token_id=sep_id,
        source_prefix_id=base.token_to_id(SOURCE_PREFIX),
        cand_prefix_id=base.token_to_id(CAND1_PREFIX),
        cand1_prefix_id=base.token_to_id(CAND1_PREFIX),
        cand2_prefix_id=base.token_to_id(CAND2_PREFIX),
    )
    torch.manual_seed(0)
    PairRMModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_pairrm(tmp_path_factory):
    path = build_tiny_pairrm(tmp_path_factory.mktemp("pairrm"))
    keys = set(load_file(path / "model.safetensors"))
    assert {"head_layer.1.weight", "head_layer.4.weight"} <= keys  # PairRM-hf's layout
    assert any(k.startswith("pretrained_model.encoder.") for k in keys)
    return str(path)


PROMPTS = ["Add the numbers 3 and 4.", "Uppercase the word rose."]
A = ["The sum of 3 and 4 is 7.", "ROSE"]
B = ["8", "The word in uppercase is ROSE."]


def test_input_layout(tiny_pairrm):
    scorer = PairRMScorer(tiny_pairrm)
    ids = scorer.encode(PROMPTS[0], A[0], B[0])
    c = scorer.held.model.config
    for token in (c.source_prefix_id, c.cand1_prefix_id, c.cand2_prefix_id):
        assert ids.count(token) == 1
    assert ids.index(c.source_prefix_id) < ids.index(c.cand1_prefix_id) < ids.index(c.cand2_prefix_id)
    long = scorer.encode("x " * 5000, "y " * 5000, "z " * 5000)
    assert len(long) <= 2048  # 1224 for the source, half of the rest for each candidate


def test_logit_is_the_head_difference_and_gaps_are_antisymmetric(tiny_pairrm):
    scorer = PairRMScorer(tiny_pairrm, batch_size=1)
    logits = scorer.logits(PROMPTS, A, B)
    model = scorer.held.model
    for i in range(2):
        ids = torch.tensor([scorer.encode(PROMPTS[i], A[i], B[i])])
        with torch.no_grad():
            left, right = model.head_scores(ids, torch.ones_like(ids))
        assert logits[i] == pytest.approx((left - right).mean().item(), abs=1e-5)
    batched = PairRMScorer(tiny_pairrm, batch_size=8).logits(PROMPTS, A, B)  # padding must not change a logit
    assert batched == pytest.approx(logits, abs=1e-4)
    gaps, reverse = scorer.gaps(PROMPTS, A, B), scorer.gaps(PROMPTS, B, A)
    assert gaps == pytest.approx([-g for g in reverse], abs=1e-6)
    assert gaps == pytest.approx(  # LLM-Blender's scale: both orders' logits, not their average
        [f - r for f, r in zip(logits, scorer.logits(PROMPTS, B, A), strict=True)], abs=1e-6
    )


def test_the_logit_scale_halves_the_gap_and_a_wrong_layout_is_refused(tiny_pairrm, tmp_path):
    gaps = PairRMScorer(tiny_pairrm).gaps(PROMPTS, A, B)
    assert PairRMScorer(tiny_pairrm, scale="logit").gaps(PROMPTS, A, B) == pytest.approx([g / 2 for g in gaps])
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_pairrm, broken)
    weights = next(broken.glob("*.safetensors"))
    tensors = {k: v for k, v in load_file(weights).items() if not k.startswith("head_layer")}
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(UserError, match="does not match PairRM's layout"):
        PairRMScorer(str(broken))


def test_missing_prefix_token_is_refused(tiny_pairrm):
    scorer = PairRMScorer(tiny_pairrm)
    ids = torch.tensor([scorer.tokenizer.encode("no prefixes here")])
    with pytest.raises(ValueError, match="source"):
        scorer.held.model(ids, torch.ones_like(ids))


def test_synpo_runs_with_pairrm_as_scorer(tmp_path):
    """The pipeline with a pairwise scorer: gaps filter the pairs, validation compares answers with gold and pi_0."""
    import json

    from helpers import run_cli

    path = build_tiny_pairrm(tmp_path / "pairrm")
    run_dir = tmp_path / "run"
    proc = run_cli(
        run_dir, "scorer=pairrm", f"scorer.name_or_path={path}", "scorer.threshold=0.0", "trainer.beta_grid=[2]"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pairs = [json.loads(x) for x in (run_dir / "iter_1/pairs.jsonl").read_text().splitlines()]
    # kept: gap > threshold 0; the stored gap is rounded to 6 decimals, so a kept gap under 5e-7 reads 0.0
    assert pairs and all(p["gap"] >= 0 and p["score_chosen"] is None for p in pairs)
    rows = json.loads((run_dir / "results.json").read_text())["iterations"]
    assert rows[0]["val_win_rate"] == 0.5 and 0.0 <= rows[1]["val_win_rate"] <= 1.0
    answers = [json.loads(x) for x in (run_dir / "iter_1/beta_2/val_answers.jsonl").read_text().splitlines()]
    assert "greedy_vs_reference" in answers[0]
