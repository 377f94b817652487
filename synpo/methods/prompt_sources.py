"""Where an iteration's prompts come from (``method.prompt_source``; the paper's Table 6 compares them):

- ``generator``: SynPO's self-prompt generator G, fine-tuned once from pi_0 on the seed set (keywords in,
  ``<question>`` out), asked with ``generator_keywords`` random keywords per request;
- ``self_instruct``: the policy pi_{t-1} itself writes a new task, few-shot from ``self_instruct_examples`` random
  seed prompts (Self-Instruct, Wang et al. 2023; the paper's Table 6 baseline);
- ``seed``: a random sample of the seed prompts (the prompts SynPO's own data already has);
- ``manual``: a prompt set written by people (``method.manual_prompts``: a JSONL file of ``{"prompt"}`` rows, e.g.
  UltraFeedback's prompts, or ``tinyworld`` for fresh tasks drawn from the tiny world's own distribution).

Every source's prompts go through the same filter: parsed from untrusted model text by bounded regular expressions
(never evaluated), accepted by the scorer, not a validation prompt, not a duplicate. The stage's info counts what
was dropped and, where the tiny world can tell, the task family of each kept prompt (``family_*``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from synpo.artifacts import PROMPTS, StageRecord, file_digest, read_jsonl, write_jsonl
from synpo.data import load_text_rows, world_or_file_problem
from synpo.errors import UserError
from synpo.keywords import corpus_keyword_rows, generator_examples, hf_keyword_rows, keyword_function
from synpo.prompts import generator_prompt, parse_instruction, parse_question, self_instruct_prompt, template
from synpo.stages import Context
from synpo.worlds import world

SOURCES = ("generator", "self_instruct", "seed", "manual")


@dataclass
class PromptSource:
    """What a source needs across iterations: for ``generator``, G's model directory and the keyword pool."""

    kind: str
    generator: str | None = None
    generator_record: StageRecord | None = None
    keywords_record: StageRecord | None = None


def source_problems(cfg: DictConfig) -> list[str]:
    """What is wrong with ``method.prompt_source`` and its settings (files are read here, before any heavy work)."""
    m, p = cfg.method, []
    if m.prompt_source == "generator" and cfg.data.keywords == "corpus" and not cfg.data.keyword_corpus:
        p.append("data.keyword_corpus is null but data.keywords=corpus: give a local text file of paragraphs")
    if m.prompt_source == "manual" and (
        problem := world_or_file_problem(cfg, "method.manual_prompts", load_prompt_file)
    ):
        p.append(problem)
    if m.prompt_source == "generator":
        p += template_problems(cfg, "generator_template")
    return p


def template_problems(cfg: DictConfig, key: str) -> list[str]:
    """A template setting that cannot be read or does not name its fields, as a sentence."""
    try:
        template(key, cfg.method[key])
    except UserError as e:
        return [str(e)]
    return []


def load_prompt_file(path: str | Path) -> list[str]:
    """The prompts of a JSONL file of ``{"prompt": str}`` rows; every bad row is reported with ``file:line``."""
    return [r["prompt"] for r in load_text_rows(path, ("prompt",), "prompt file")]


def prepare_source(ctx: Context) -> PromptSource:
    """Before iteration 1: for ``generator``, train G once from pi_0 on the seed set and write the keyword pool."""
    kind = ctx.run.method.prompt_source
    if kind != "generator":
        return PromptSource(kind)
    keywords_of = keyword_function(ctx.run.data.keywords)
    text = template("generator_template", ctx.run.method.generator_template)
    examples = generator_examples(ctx.seed_train, keywords_of, ctx.seed_for("generator_examples"), text)
    if not examples:
        raise UserError(
            f"The prompt generator has no training example: none of the {len(ctx.seed_train)} seed prompts has "
            f"2 keywords (data.keywords={ctx.run.data.keywords!r}) or there are fewer than 2 seed rows. Give more "
            "seed data (data.n_train, data.path)."
        )
    out = ctx.rundir.path("generator", "model")
    rec = ctx.train_sft("generator", examples, out, [ctx.seed_record])
    return PromptSource(kind, str(out), rec, keyword_pool(ctx))


def keyword_pool(ctx: Context) -> StageRecord:
    """``keywords.jsonl``: the pool K from which each synthetic prompt's keywords are drawn."""
    out = ctx.rundir.path("keywords.jsonl")
    d = ctx.run.data
    w = world(d.keywords)

    def fn():
        if w is not None:  # keyword lists of the world's own text
            lists = w.keyword_lists(w.corpus_rows, ctx.seed_for("keywords"), ctx.seed_prompts())
            rows = [{"keywords": k} for k in lists]
        elif d.keywords == "hf":  # 3 keywords per paragraph of a streamed datasets source
            rows = hf_keyword_rows(d, ctx.seed_for("keywords"))
        else:  # 3 keywords per paragraph of a local corpus, drawn together (the paper's keyword lists)
            rows = corpus_keyword_rows(d.keyword_corpus, ctx.seed_for("keywords"))
        return {"n": write_jsonl(out, rows)}

    corpus_file = Path(d.keyword_corpus) if d.keywords == "corpus" and d.keyword_corpus else None
    corpus = file_digest(corpus_file) if corpus_file and corpus_file.is_file() else None
    settings = {"keywords": d.keywords, "corpus": corpus, "world_rows": w.corpus_rows if w else None}
    if d.keywords == "hf":  # a hub dataset's name and revision stand for its contents
        settings["hf"] = [
            d.keyword_hf_name,
            d.keyword_hf_split,
            d.keyword_hf_data_files,
            d.keyword_hf_field,
            d.keyword_lists,
        ]
    return ctx.stage("keywords", settings, [out], fn, [ctx.seed_record])


def keyword_requests(ctx: Context, t: int) -> list[list[str]]:
    """The keyword list of each of the iteration's ``n_prompts`` generator requests."""
    m = ctx.run.method
    groups = [r["keywords"] for r in read_jsonl(ctx.rundir.path("keywords.jsonl"))]
    rng = random.Random(ctx.seed_for(ctx.rundir.iter_stage(t, "keywords")))
    k = m.generator_keywords
    if all(len(g) >= k for g in groups):  # one paragraph's keywords per request
        return [rng.choice(groups)[:k] for _ in range(m.n_prompts)]
    pool = [w for g in groups for w in g]  # single-word pool: k distinct words per request
    return [rng.sample(pool, min(k, len(pool))) for _ in range(m.n_prompts)]


def filter_prompts(ctx: Context, rows: list[dict], parse, out: Path) -> dict:
    """``rows`` (``{"response", ...}``) parsed with ``parse``, kept when the scorer accepts them and they are neither
    a validation prompt nor a duplicate; the kept ones (``{"prompt", **the row's other fields}``) into ``out``."""
    held_out = {r["prompt"] for r in ctx.seed_val}
    seen: set[str] = set()
    kept, counts = [], {"n_invalid": 0, "n_duplicate": 0, "n_validation_overlap": 0}
    for row in rows:
        question = parse(row["response"])
        if question is None or not ctx.scorer.accepts(question):
            counts["n_invalid"] += 1
        elif question in held_out:
            counts["n_validation_overlap"] += 1
        elif question in seen:
            counts["n_duplicate"] += 1
        else:
            seen.add(question)
            extra = {k: v for k, v in row.items() if k not in ("prompt", "response", "finish_reason", "sample")}
            kept.append({"prompt": question, **extra})
    write_jsonl(out, kept)
    info = {"n_generated": len(rows), **counts, "n_prompts": len(kept)}
    if (w := world(ctx.run.data.source)) is not None:  # what the world says of its prompts (tiny: task families)
        info.update(w.prompt_stats([r["prompt"] for r in kept]))
    return info


def _model_requests(ctx: Context, t: int, source: PromptSource, policy: str, policy_record) -> tuple:
    """The generation requests of a model-written source: (model, user messages, extra fields, deps, parser)."""
    m = ctx.run.method
    if source.kind == "generator":
        requests = keyword_requests(ctx, t)
        text = template("generator_template", m.generator_template)
        messages = [generator_prompt(kw, text) for kw in requests]
        deps = [source.generator_record, source.keywords_record]
        return source.generator, messages, [{"keywords": kw} for kw in requests], deps, parse_question
    rng = random.Random(ctx.seed_for(ctx.rundir.iter_stage(t, "self_instruct")))
    pool = [r["prompt"] for r in ctx.seed_train]
    shots = [rng.sample(pool, min(m.self_instruct_examples, len(pool))) for _ in range(m.n_prompts)]
    messages = [self_instruct_prompt(s) for s in shots]
    return policy, messages, None, [policy_record, ctx.seed_record], parse_instruction


def _given_prompts(ctx: Context, t: int) -> list[str]:
    """A ``seed`` or ``manual`` source's ``n_prompts`` prompts for iteration t (a fresh random sample each time)."""
    m = ctx.run.method
    rng = random.Random(ctx.seed_for(ctx.rundir.iter_stage(t, "prompt_sample")))
    if m.prompt_source == "seed":
        pool = [r["prompt"] for r in ctx.seed_train]
    elif (w := world(m.manual_prompts)) is not None:  # people's prompts of the same world, outside the seed split
        return w.fresh_prompts(rng, m.n_prompts, ctx.seed_prompts())
    else:
        pool = load_prompt_file(m.manual_prompts)
    return rng.sample(pool, min(m.n_prompts, len(pool)))


def iteration_prompts(
    ctx: Context, t: int, source: PromptSource, policy: str, policy_record: StageRecord | str
) -> tuple[list[str], StageRecord]:
    """The iteration's prompts (``iter_<t>/prompts.jsonl``) from ``source``; ``policy`` is pi_{t-1}, which writes
    them for ``self_instruct``."""
    rundir, m = ctx.rundir, ctx.run.method
    out, raw = rundir.iter_file(t, PROMPTS), rundir.iter_file(t, "prompts_raw.jsonl")
    if source.kind in ("generator", "self_instruct"):
        model, messages, extra, deps, parse = _model_requests(ctx, t, source, policy, policy_record)
        stop = (m.generator_stop,) if source.kind == "generator" and m.generator_stop else ()
        r_raw = ctx.generate(
            rundir.iter_stage(t, "generate_prompts"),
            model,
            messages,
            raw,
            deps,
            extra=extra,
            kind="prompts",
            stop=stop,
        )
        rec = ctx.stage(
            rundir.iter_stage(t, "prompts"),
            {"scorer": ctx.run.scorer.name, "source": source.kind},
            [out],
            lambda: filter_prompts(ctx, read_jsonl(raw), parse, out),
            [r_raw, ctx.seed_record],
        )
    else:
        manual = m.manual_prompts if source.kind == "manual" else None
        digest = file_digest(Path(manual)) if manual and world(manual) is None else manual
        rec = ctx.stage(
            rundir.iter_stage(t, "prompts"),
            {"scorer": ctx.run.scorer.name, "source": source.kind, "n": m.n_prompts, "manual": digest},
            [out],
            lambda: filter_prompts(ctx, [{"response": p} for p in _given_prompts(ctx, t)], _strip, out),
            [ctx.seed_record],
        )
    prompts = [r["prompt"] for r in read_jsonl(out)]
    if not prompts:
        raise UserError(
            f"iteration {t}: the prompt source method.prompt_source={source.kind!r} gave no valid prompt out of "
            f"{rec.info.get('n_generated', m.n_prompts)} (see {raw if raw.exists() else out}; the counts of what "
            f"was dropped are {rec.info}). A prompt must parse and be accepted by the scorer; check that the "
            "generator trained (sft_trainer.learning_rate, epochs), raise method.n_prompts, or choose another source."
        )
    return prompts, rec


def _strip(text: str) -> str | None:
    text = " ".join(text.split())
    return text or None
