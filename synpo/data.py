"""Seed data: the data config, loading and validating rows, the train/validation split (the ``seed`` stage),
keywords, and text-quality filters."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING, DictConfig, OmegaConf

from synpo.artifacts import RunDir, StageRecord, file_digest, iter_jsonl, stage_seed, write_jsonl
from synpo.errors import UserError
from synpo.schema import spec
from synpo.worlds import PROVIDERS, world

SEED_FIELDS = ("prompt", "answer")


@dataclass
class DataConfig:
    """The seed set {(x*, y*)}, its train/validation split and the keyword pool."""

    name: str = spec(MISSING, "short label used in run names")
    source: str = spec(
        "tinyworld",
        "tinyworld: drawn from the world; jsonl: rows {prompt, answer} from `path`; hf: a datasets source",
        choices=("tinyworld", "jsonl", "hf"),
    )
    path: str | None = spec(None, "the seed JSONL when source=jsonl")
    hf_name: str | None = spec(None, "source=hf: a datasets name (or a builder such as json with hf_data_files)")
    hf_split: str = spec("train", "source=hf: the split to read")
    hf_data_files: str | None = spec(None, "source=hf: data files for a builder such as json")
    prompt_field: str = spec("prompt", "source=hf: the prompt column, or a chat column (list of {role, content})")
    answer_field: str | None = spec(
        "answer",
        "source=hf: the answer column, a string or a chat (its last assistant turn: UltraFeedback's chosen); null: "
        "the prompt column's chat's first assistant turn",
    )
    n_train: int = spec(1200, "seed prompts for training (tinyworld: drawn; files: at most this many)", gt=0)
    n_val: int = spec(96, "held out for validation (beta selection and the results table)", gt=0)
    keywords: str = spec(
        "tinyworld",
        "tinyworld: the world's vocabulary; corpus: 3 words per paragraph of keyword_corpus; hf: 3 words per "
        "paragraph of a datasets source (keyword_hf_*), streamed",
        choices=("tinyworld", "corpus", "hf"),
    )
    keyword_corpus: str | None = spec(None, "keywords=corpus: a local text file, paragraphs separated by blank lines")
    keyword_hf_name: str | None = spec(None, "keywords=hf: a datasets source of web text (RefinedWeb-like), streamed")
    keyword_hf_split: str = spec("train", "keywords=hf: its split")
    keyword_hf_data_files: str | None = spec(None, "keywords=hf: data files for a builder such as json or parquet")
    keyword_hf_field: str = spec("content", "keywords=hf: the text column (RefinedWeb: content; most others: text)")
    keyword_lists: int = spec(
        20000, "keywords=hf: keyword lists drawn (one per paragraph, from a shuffled stream)", gt=0
    )
    answers: str = spec(
        "gold", "tinyworld only: gold full sentences, or sft-quality ones (terse, some wrong)", choices=("gold", "sft")
    )
    sft_noise: float = spec(0.1, "with answers=sft: share of answers with wrong content", ge=0, le=1)


def data_problems(cfg: DictConfig) -> list[str]:
    """What is wrong with ``cfg.data`` beyond its field constraints."""
    d, p = cfg.data, []
    if d.source == "hf" and not d.hf_name:
        p.append("data.hf_name is null but data.source=hf: give a datasets name, e.g. HuggingFaceH4/ultrachat_200k")
    if d.source == "jsonl" and not d.path:
        p.append("data.path is null but data.source=jsonl: give the seed JSONL file (rows {'prompt', 'answer'})")
    if d.keywords == "hf" and not d.keyword_hf_name:
        p.append("data.keyword_hf_name is null but data.keywords=hf: give a datasets source of text paragraphs")
    return p


def data_file_problems(cfg: DictConfig) -> list[str]:
    """The user's data files, read before any heavy work: every bad seed row (``file:line``), too few rows for the
    validation split, a keyword corpus that yields no keywords."""
    d, p = cfg.data, []
    if d.source == "jsonl" and d.path:
        try:
            rows = load_seed_file(d.path)
            distinct = len({r["prompt"] for r in rows})
            if distinct <= d.n_val:
                p.append(
                    f"data.n_val={d.n_val} leaves no training rows out of {distinct} distinct seed prompts in "
                    f"{d.path}; lower data.n_val or give more seed data"
                )
        except UserError as e:
            p.append(f"data.path: {e}")
    if d.keywords == "corpus" and d.keyword_corpus:
        try:
            corpus_keyword_rows(d.keyword_corpus, 0)
        except UserError as e:
            p.append(f"data.keyword_corpus: {e}")
    return p


def _seed_rows(cfg: DictConfig) -> tuple[list[dict], list[dict]]:
    d = cfg.data
    if (w := world(d.source)) is not None:  # a world draws its own seed rows
        rng, answer_rng = (random.Random(stage_seed(cfg.seed, name)) for name in ("seed", "seed_answers"))
        return w.seed_rows(d.n_train, d.n_val, rng, answer_rng, d.answers, d.sft_noise)
    if d.source == "jsonl":
        rows = load_seed_file(d.path)
    else:
        rows = load_hf_seed(d.hf_name, d.hf_split, d.hf_data_files, d.prompt_field, d.answer_field)
    train, val = split_seed(rows, d.n_val, stage_seed(cfg.seed, "split"))
    return train[: d.n_train], val


def prepare_seed(cfg: DictConfig, rundir: RunDir) -> StageRecord:
    """The ``seed`` stage: ``seed/train.jsonl`` and ``seed/val.jsonl``, drawn from the tiny world or read."""
    d = cfg.data
    train, val = rundir.seed_files
    source = file_digest(Path(d.path)) if d.source == "jsonl" and Path(d.path).is_file() else None
    if d.source == "jsonl" and source is None:
        raise UserError(
            f"data.path={d.path!r}: file not found. Give the seed JSONL (one {{'prompt', 'answer'}} "
            "object per line); relative paths are resolved against the launch directory."
        )

    def fn():
        train_rows, val_rows = _seed_rows(cfg)
        write_jsonl(train, train_rows)
        write_jsonl(val, val_rows)
        return {"n_train": len(train_rows), "n_val": len(val_rows)}

    settings = {"data": OmegaConf.to_container(d), "seed": cfg.seed, "source_digest": source}
    return rundir.stage("seed", settings, [train, val], fn)


def load_text_rows(
    path: str | Path, fields: tuple[str, ...], what: str, check: Callable[[dict], str | None] | None = None, keep=()
) -> list[dict]:
    """The rows of a user's JSONL file: each must have non-empty string ``fields`` and pass ``check`` (None, or what
    is wrong with the row); every bad row is reported with ``file:line``, and a missing or empty file too. Returns
    the ``fields`` and ``keep`` fields of each row."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found. Give the {what}: a JSONL file with {list(fields)} per line.")
    rows, problems = [], []
    for lineno, row in iter_jsonl(path):
        missing = [k for k in fields if not isinstance(row.get(k), str) or not row.get(k).strip()]
        problem = f"missing or empty string field(s) {missing}" if missing else (check(row) if check else None)
        if problem:
            problems.append(f"{path}:{lineno}: {problem}")
            continue
        rows.append({k: row[k] for k in (*fields, *keep)})
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise UserError(
            f"The {what} has {len(problems)} bad row(s):\n  {shown}\nEach line must be a JSON object "
            f"with non-empty string fields {list(fields)}. Fix those lines or remove them."
        )
    if not rows:
        raise UserError(f"{path}: the {what} holds no rows. Give a JSONL file with {list(fields)} per line.")
    return rows


def world_or_file_problem(cfg: DictConfig, key: str, load: Callable, required: bool = True) -> str | None:
    """What is wrong with an option that names a world (its own data, which needs that world's seed data:
    ``synpo.worlds``) or a user's JSONL file (read now with ``load``, so that every bad row is reported before any
    heavy work)."""
    value = OmegaConf.select(cfg, key)
    if not value:
        worlds = " or ".join(PROVIDERS)
        return f"{key} is null: give a JSONL file, or {worlds} for that world's own" if required else None
    if world(value) is not None:
        return None if cfg.data.source == value else f"{key}={value} needs data.source={value} (the world's data)"
    try:
        load(value)
    except UserError as e:
        return f"{key}: {e}"
    return None


def load_seed_file(path: str | Path) -> list[dict]:
    """Seed rows ``{"prompt": str, "answer": str}`` from a JSONL file; every bad row is reported with file:line."""
    return load_text_rows(path, SEED_FIELDS, "seed file")


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
            if isinstance(answer, list):  # a chat (UltraFeedback binarized's chosen): its last assistant turn
                turns = [m.get("content") for m in answer if isinstance(m, dict) and m.get("role") == "assistant"]
                answer = turns[-1] if turns else None
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
