"""Keywords: the pool the self-prompt generator draws from (a world's own vocabulary, a local text corpus, or a
datasets source streamed), content words of any text, and the generator's training examples built from the seed
rows' keywords (the paper's Algorithm 1, line 1)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from synpo.errors import UserError
from synpo.worlds import PROVIDERS, world

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each either else ever every few for from further get gets
    got had has have having he her here hers herself him himself his how however i if in into is it its itself just
    like make many may me might more most much must my myself no nor not now of off often on once one only or other
    our ours ourselves out over own per please quite rather really same say says she should so some such than that
    the their theirs them themselves then there these they this those through thus to too under until up upon us
    use used using very via was we well were what when where whether which while who whom whose why will with
    within without would yet you your yours yourself yourselves""".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)$")


def content_words(text: str) -> list[str]:
    """Lower-cased content words of ``text`` in order, without duplicates, stopwords, words under 3 letters, or
    personal names. Names are taken to be capitalised words that do not open a sentence: a heuristic that also drops
    other proper nouns, which is what keyword sampling wants (the paper excludes names)."""
    seen: list[str] = []
    for m in _WORD.finditer(text):
        word = m.group(0)
        if word[0].isupper() and not _SENTENCE_START.search(text[: m.start()]):
            continue
        w = word.lower().strip("'-")
        if len(w) >= 3 and w not in STOPWORDS and w not in seen:
            seen.append(w)
    return seen


def hf_keyword_rows(d: DictConfig, seed: int, per_paragraph: int = 3) -> list[dict]:
    """``data.keyword_lists`` keyword lists from a datasets source of text, streamed (the corpus is never loaded
    whole): documents in a shuffled order (a 10,000-document buffer), ``per_paragraph`` random content words from
    each paragraph that has them, until there are enough."""
    try:
        import datasets

        stream = datasets.load_dataset(
            d.keyword_hf_name, split=d.keyword_hf_split, data_files=d.keyword_hf_data_files, streaming=True
        ).shuffle(seed=seed, buffer_size=10_000)
        rng, rows = random.Random(seed), []
        for doc in stream:
            for paragraph in re.split(r"\n\s*\n", str(doc.get(d.keyword_hf_field) or "")):
                words = content_words(paragraph)
                if len(words) >= per_paragraph:
                    rows.append({"keywords": rng.sample(words, per_paragraph)})
            if len(rows) >= d.keyword_lists:
                return rows[: d.keyword_lists]
    except UserError:
        raise
    except Exception as e:  # datasets raises many types for a missing, unreachable or malformed source
        raise UserError(
            f"data.keyword_hf_name={d.keyword_hf_name!r} (split {d.keyword_hf_split!r}) could not be streamed: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Check the name, the split and "
            "data.keyword_hf_data_files, or save the text locally and use data.keywords=corpus."
        ) from None
    if not rows:
        raise UserError(
            f"data.keyword_hf_name={d.keyword_hf_name!r}: no paragraph of column {d.keyword_hf_field!r} has "
            f"{per_paragraph} content words; check data.keyword_hf_field"
        )
    return rows


def corpus_keyword_rows(path: str | Path, seed: int, per_paragraph: int = 3) -> list[dict]:
    """``per_paragraph`` random content words from each paragraph (blank-line separated) of a local text corpus."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"data.keyword_corpus={str(path)!r}: file not found. Give a local text file whose paragraphs "
            "are separated by blank lines (web text, as in the paper)."
        )
    rng = random.Random(seed)
    rows = []
    for paragraph in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
        words = content_words(paragraph)
        if len(words) >= per_paragraph:
            rows.append({"keywords": rng.sample(words, per_paragraph)})
    if not rows:
        raise UserError(f"{path}: no paragraph has {per_paragraph} content words; is it the right file?")
    return rows


def keyword_function(name: str) -> Callable[[str], list[str]]:
    """The keyword extractor named by ``data.keywords``: a world's own, or content words of any text."""
    if (w := world(name)) is not None:
        return w.keywords_of
    if name in ("corpus", "hf"):
        return content_words
    raise UserError(f"data.keywords={name!r} is not known. Allowed: {[*PROVIDERS, 'corpus', 'hf']}.")


def generator_examples(
    rows: list[dict], keywords_of: Callable[[str], list[str]], seed: int, text: str | None = None
) -> list[dict]:
    """Training examples for the self-prompt generator (the paper's Algorithm 1, line 1).

    For each seed row i: 2 random keywords of x*_i plus 1 noise keyword from another seed x*_j, shuffled; the target
    is ``<question>x*_i</question> <solution>y*_i</solution>``. Rows with fewer than 2 keywords are skipped.
    """
    from synpo.prompts import GENERATOR_TEMPLATE, generator_prompt, generator_target

    text = text or GENERATOR_TEMPLATE
    rng = random.Random(seed)
    all_keywords = [keywords_of(r["prompt"]) for r in rows]
    examples = []
    for i, row in enumerate(rows):
        own = all_keywords[i]
        if len(own) < 2 or len(rows) < 2:
            continue
        picked = rng.sample(own, 2)
        for _ in range(20):
            j = rng.randrange(len(rows))
            noise = [k for k in all_keywords[j] if k not in own]
            if j != i and noise:
                picked.append(rng.choice(noise))
                break
        rng.shuffle(picked)
        examples.append(
            {"prompt": generator_prompt(picked, text), "completion": generator_target(row["prompt"], row["answer"])}
        )
    return examples
