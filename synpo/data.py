"""Seed data: the data sources (``DATA_SOURCES``), loading and validating rows, the train/validation split (the
``seed`` stage). Keywords are in ``synpo.keywords``."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING, DictConfig, OmegaConf

from synpo.artifacts import RunDir, StageRecord, file_digest, iter_jsonl, stage_seed, write_jsonl
from synpo.errors import UserError
from synpo.keywords import corpus_keyword_rows
from synpo.registry import Registry
from synpo.schema import spec
from synpo.worlds import PROVIDERS, world

SEED_FIELDS = ("prompt", "answer")


@dataclass
class DataConfig:
    """The seed set {(x*, y*)}, its train/validation split and the keyword pool; each source (``data.source``)
    extends it with its own fields (``DATA_SOURCES``)."""

    name: str = spec(MISSING, "short label used in run names")
    source: str = spec(MISSING, "where the seed rows come from: a world's name, jsonl or hf (DATA_SOURCES)")
    n_train: int = spec(1200, "seed prompts for training (a world: drawn; files: at most this many)", gt=0)
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


@dataclass
class WorldDataConfig(DataConfig):
    """Seed rows drawn from a world (``synpo.worlds``): it writes prompts and answers itself."""

    source: str = spec("tinyworld", "the world that draws the seed rows")
    answers: str = spec(
        "gold", "gold full sentences, or sft-quality ones (terse, some wrong)", choices=("gold", "sft")
    )
    sft_noise: float = spec(0.1, "with answers=sft: share of answers with wrong content", ge=0, le=1)


@dataclass
class JsonlDataConfig(DataConfig):
    """Seed rows ``{prompt, answer}`` from a local JSONL file."""

    source: str = spec("jsonl", "rows {prompt, answer} from `path`")
    path: str | None = spec(None, "the seed JSONL (one {prompt, answer} object per line)")


@dataclass
class HFDataConfig(DataConfig):
    """Seed rows from a datasets source (the hub, or a builder such as json or parquet over local files)."""

    source: str = spec("hf", "a datasets source")
    hf_name: str | None = spec(None, "a datasets name (or a builder such as json with hf_data_files)")
    hf_split: str = spec("train", "the split to read")
    hf_data_files: str | None = spec(None, "data files for a builder such as json")
    prompt_field: str = spec("prompt", "the prompt column, or a chat column (list of {role, content})")
    answer_field: str | None = spec(
        "answer",
        "the answer column, a string or a chat (its last assistant turn: UltraFeedback's chosen); null: the prompt "
        "column's chat's first assistant turn",
    )


@dataclass(frozen=True)
class DataSource:
    """One option of ``data.source``: its schema, how it reads its rows, what it checks, and the digest of what it
    reads (part of the seed stage's identity: an edited seed file redoes the stage)."""

    schema: type
    read: Callable[[DictConfig, int], list[dict] | tuple[list[dict], list[dict]]]  # (block, run seed)
    check: Callable[[DictConfig], list[str]] = lambda d: []  # its fields against each other (no file read)
    check_files: Callable[[DictConfig], list[str]] = lambda d: []  # its files, read before any heavy work
    digest: Callable[[DictConfig], str | None] = lambda d: None

    def problems(self, cfg: DictConfig) -> list[str]:
        return self.check(cfg.data)


def _world_rows(d: DictConfig, seed: int) -> tuple[list[dict], list[dict]]:
    rng, answer_rng = (random.Random(stage_seed(seed, name)) for name in ("seed", "seed_answers"))
    return world(d.source).seed_rows(d.n_train, d.n_val, rng, answer_rng, d.answers, d.sft_noise)


def _jsonl_digest(d: DictConfig) -> str:
    if not Path(d.path).is_file():
        raise UserError(
            f"data.path={d.path!r}: file not found. Give the seed JSONL (one {{'prompt', 'answer'}} "
            "object per line); relative paths are resolved against the launch directory."
        )
    return file_digest(Path(d.path))


def _jsonl_file_problems(d: DictConfig) -> list[str]:
    if not d.path:  # _jsonl_problems says so
        return []
    try:
        distinct = len({r["prompt"] for r in load_seed_file(d.path)})
    except UserError as e:
        return [f"data.path: {e}"]
    if distinct <= d.n_val:
        return [
            f"data.n_val={d.n_val} leaves no training rows out of {distinct} distinct seed prompts in {d.path}; "
            "lower data.n_val or give more seed data"
        ]
    return []


def _jsonl_problems(d: DictConfig) -> list[str]:
    if d.path:
        return []
    return ["data.path is null but data.source=jsonl: give the seed JSONL file (rows {'prompt', 'answer'})"]


def _hf_problems(d: DictConfig) -> list[str]:
    if d.hf_name:
        return []
    return ["data.hf_name is null but data.source=hf: give a datasets name, e.g. HuggingFaceH4/ultrachat_200k"]


def _hf_rows(d: DictConfig, seed: int) -> list[dict]:
    return load_hf_seed(d.hf_name, d.hf_split, d.hf_data_files, d.prompt_field, d.answer_field)


DATA_SOURCES = Registry(
    "data",
    {
        **{name: DataSource(WorldDataConfig, _world_rows) for name in PROVIDERS},
        "jsonl": DataSource(
            JsonlDataConfig,
            lambda d, seed: load_seed_file(d.path),
            check=_jsonl_problems,
            check_files=_jsonl_file_problems,
            digest=_jsonl_digest,
        ),
        "hf": DataSource(HFDataConfig, _hf_rows, check=_hf_problems),
    },
    selector="source",
)


def data_problems(cfg: DictConfig) -> list[str]:
    """What is wrong with the fields every source shares (the keyword pool), beyond their constraints."""
    d = cfg.data
    if d.keywords == "hf" and not d.keyword_hf_name:
        return ["data.keyword_hf_name is null but data.keywords=hf: give a datasets source of text paragraphs"]
    return []


def data_file_problems(cfg: DictConfig) -> list[str]:
    """The user's data files, read before any heavy work: every bad seed row (``file:line``), too few rows for the
    validation split, a keyword corpus that yields no keywords."""
    d = cfg.data
    p = DATA_SOURCES[d.source].check_files(d) if d.source in DATA_SOURCES else []
    if d.keywords == "corpus" and d.keyword_corpus:
        try:
            corpus_keyword_rows(d.keyword_corpus, 0)
        except UserError as e:
            p.append(f"data.keyword_corpus: {e}")
    return p


def _seed_rows(d: DictConfig, seed: int) -> tuple[list[dict], list[dict]]:
    rows = DATA_SOURCES[d.source].read(d, seed)
    if isinstance(rows, tuple):  # a world draws its own split
        return rows
    train, val = split_seed(rows, d.n_val, stage_seed(seed, "split"))
    return train[: d.n_train], val


def prepare_seed(d: DictConfig, seed: int, rundir: RunDir) -> StageRecord:
    """The ``seed`` stage of the data block ``d`` (``cfg.data``): ``seed/train.jsonl`` and ``seed/val.jsonl``, drawn
    by a world or read."""
    train, val = rundir.seed_files
    source = DATA_SOURCES[d.source].digest(d)

    def fn():
        train_rows, val_rows = _seed_rows(d, seed)
        write_jsonl(train, train_rows)
        write_jsonl(val, val_rows)
        return {"n_train": len(train_rows), "n_val": len(val_rows)}

    settings = {"data": OmegaConf.to_container(d), "seed": seed, "source_digest": source}
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
