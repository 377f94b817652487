"""Text-quality measures shared by the filters and the tiny world's verifier."""

from __future__ import annotations


def repetition_ratio(text: str) -> float:
    """Share of the text's word n-grams that repeat an earlier one, in [0, 1].

    Unigrams for texts under 10 words (so "19 19 19" is 2/3 repetition), trigrams for longer ones, where natural
    language repeats single words but rarely whole phrases. SynPO drops responses above 0.5.
    """
    words = text.split()
    n = 1 if len(words) < 10 else 3
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)
