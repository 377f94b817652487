"""Seed data: loading and validating rows, the train/validation split, keywords, and text-quality filters."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from synpo.artifacts import iter_jsonl
from synpo.errors import UserError

SEED_FIELDS = ("prompt", "answer")


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


def load_seed_file(path: str | Path) -> list[dict]:
    """Seed rows ``{"prompt": str, "answer": str}`` from a JSONL file; every bad row is reported with file:line."""
    rows, problems = [], []
    for lineno, row in iter_jsonl(Path(path)):
        missing = [k for k in SEED_FIELDS if not isinstance(row.get(k), str) or not row.get(k).strip()]
        if missing:
            problems.append(f"{path}:{lineno}: missing or empty string field(s) {missing}")
            continue
        rows.append({"prompt": row["prompt"], "answer": row["answer"]})
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise UserError(
            f"The seed file has {len(problems)} bad row(s):\n  {shown}\nEach line must be a JSON object "
            f"with non-empty string fields {list(SEED_FIELDS)}. Fix those lines or remove them."
        )
    if not rows:
        raise UserError(f"{path}: the seed file holds no rows. Give a JSONL file with {list(SEED_FIELDS)} per line.")
    return rows


def load_hf_seed(
    name: str, split: str, data_files: str | None, prompt_field: str, answer_field: str | None
) -> list[dict]:
    """Seed rows from a datasets source: a prompt and an answer column, or one chat column (first user turn as the
    prompt, first assistant turn as the answer, as in UltraChat)."""
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split, data_files=data_files)
    except Exception as e:  # datasets raises many types for a missing or unreachable dataset
        raise UserError(
            f"data.hf_name={name!r} (split {split!r}) could not be loaded: {str(e).splitlines()[0]}. "
            "Download it first (`huggingface-cli download --repo-type dataset <name>`), or export it to "
            "JSONL and use data.source=jsonl data.path=<file>."
        ) from None
    rows, problems = [], []
    for i, ex in enumerate(ds):
        if answer_field is None:
            chat = ex.get(prompt_field) or []
            user = next((m["content"] for m in chat if m.get("role") == "user"), None)
            assistant = next((m["content"] for m in chat if m.get("role") == "assistant"), None)
            prompt, answer = user, assistant
        else:
            prompt, answer = ex.get(prompt_field), ex.get(answer_field)
        if not isinstance(prompt, str) or not isinstance(answer, str) or not prompt.strip() or not answer.strip():
            problems.append(i)
            continue
        rows.append({"prompt": prompt, "answer": answer})
    if problems and not rows:
        raise UserError(
            f"data.hf_name={name!r}: no row has a non-empty prompt and answer (fields "
            f"{prompt_field!r}, {answer_field!r}). Check data.prompt_field and data.answer_field."
        )
    return rows


def split_seed(rows: list[dict], n_val: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Shuffle with ``seed`` and hold out ``n_val`` distinct prompts for validation."""
    rows = list({r["prompt"]: r for r in rows}.values())  # dedupe on the prompt, keeping the last answer
    if n_val >= len(rows):
        raise UserError(
            f"data.n_val={n_val} leaves no training rows out of {len(rows)} distinct seed prompts. "
            "Lower data.n_val or give more seed data."
        )
    random.Random(seed).shuffle(rows)
    return rows[n_val:], rows[:n_val]


def keyword_function(name: str) -> Callable[[str], list[str]]:
    """The keyword extractor named by ``data.keywords``."""
    if name == "tinyworld":
        from synpo.tinyworld.tasks import prompt_keywords

        return prompt_keywords
    raise UserError(f"data.keywords={name!r} is not known. Allowed: ['tinyworld'].")


def generator_examples(rows: list[dict], keywords_of: Callable[[str], list[str]], seed: int) -> list[dict]:
    """Training examples for the self-prompt generator (DESIGN section 6).

    For each seed row i: 2 random keywords of x*_i plus 1 noise keyword from another seed x*_j, shuffled; the target
    is ``<question>x*_i</question> <solution>y*_i</solution>``. Rows with fewer than 2 keywords are skipped.
    """
    from synpo.prompts import generator_prompt, generator_target

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
            {"prompt": generator_prompt(picked), "completion": generator_target(row["prompt"], row["answer"])}
        )
    return examples
