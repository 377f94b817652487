"""SPIN (self-play fine-tuning, Chen et al. 2024) and the fixes of the SPIN-limits report (DESIGN section 7).

Per iteration t, with pi_{t-1} the current model and (x, y) the SFT data:

1. pi_{t-1} samples y' for every x ("generated"); y is "real";
2. the method turns (x, y, y') into a (chosen, rejected) pair:
   - ``spin``: chosen = real, rejected = generated (SPIN's assumption that the SFT answer always wins);
   - ``spin_judged``: a judge (any scorer) scores both sides and the pair is swapped where generated wins
     (the report's fix for the labeling issue);
   - ``spin_noised``: the generated side is made more random, by a higher or annealed sampling temperature and/or
     random token replacement (the report's fix for overfitting to its own samples);
   - ``spin_adaptive`` (the report's future work, implemented by none of the public SPIN code): with the judge's
     margin m = |score(real) - score(generated)|, m > reverse_threshold orders the pair by the judge, m <
     noise_threshold noises the generated side (resampled at the noise temperature if one is set, then token
     noise), anything in between keeps SPIN's order;
3. the model trains **from pi_{t-1}**, against pi_{t-1} frozen as reference, with the DPO loss on summed
   log-probabilities, on this iteration's pairs plus the previous iteration's (``method.mix_previous``).

Beyond the report, every iteration also records ``label_issue_rate``: the share of pairs whose generated answer the
scorer rates above the real one. In the tiny world the scorer is the exact verifier, so this measures SPIN's
labeling issue exactly, before any swap.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from synpo.artifacts import StageRecord, point_link, read_jsonl, write_jsonl
from synpo.config import hparams
from synpo.pipeline import Context, stage_seed

log = logging.getLogger(__name__)

COLUMNS = (
    "label_issue_rate",
    "swap_rate",
    "noise_rate",
    "token_noise_rate",
    "d_size",
    "beta",
    "learning_rate",
    "temperature",
)


@dataclass
class State:
    policy: str  # pi_{t-1}
    policy_record: StageRecord | str
    previous_pairs: StageRecord | None = None
    previous_val: dict | None = None


def prepare(ctx: Context, pi0_val: dict) -> State:
    return State(ctx.pi0, "pi_0", None, dict(pi0_val))


def schedule_value(schedule, default: float, t: int) -> float:
    """The value for iteration ``t`` (1-based) of a per-iteration list, or ``default`` without one."""
    return float(schedule[t - 1]) if schedule is not None else float(default)


def noise_temperature(cfg, t: int) -> float | None:
    """The generated side's sampling temperature at iteration t: constant, or annealed linearly to the final one."""
    n = cfg.method.noise
    if n.temperature is None:
        return None
    if n.temperature_final is None or cfg.method.iterations == 1:
        return float(n.temperature)
    frac = (t - 1) / (cfg.method.iterations - 1)
    return float(n.temperature + frac * (n.temperature_final - n.temperature))


def token_noise(text: str, tokenizer, rate: float, rng: random.Random) -> tuple[str, int, int]:
    """Replace each token of ``text`` with probability ``rate`` by a uniformly drawn non-special token.

    Returns the noised text, the number of replaced tokens and the number of tokens.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if rate <= 0 or not ids:
        return text, 0, len(ids)
    special = set(tokenizer.all_special_ids)
    vocab = [i for i in range(len(tokenizer)) if i not in special]
    replaced = 0
    for k in range(len(ids)):
        if rng.random() < rate:
            ids[k] = rng.choice(vocab)
            replaced += 1
    return tokenizer.decode(ids, skip_special_tokens=True), replaced, len(ids)


def route(method: str, gap: float, reverse_threshold: float, noise_threshold: float) -> str:
    """What to do with one pair, from the judge's gap = score(real) - score(generated) (a pairwise judge's own
    comparison of the two): ``keep`` (SPIN's order), ``swap`` (generated is chosen), or ``noise``."""
    if method == "spin_judged":
        return "swap" if gap < 0 else "keep"
    if method == "spin_noised":
        return "noise"
    if method == "spin_adaptive":
        margin = abs(gap)
        if margin > reverse_threshold:
            return "swap" if gap < 0 else "keep"
        if margin < noise_threshold:
            return "noise"
        return "keep"
    return "keep"


def build_pairs(prompts, real, generated, gaps, s_real, s_gen, routes, resampled, token_rate, tokenizer, rng):
    """Rows ``{prompt, real, generated, scores, route, chosen, rejected}`` and the iteration's rates.

    ``routes[i]`` is keep / swap / noise (see :func:`route`); a noised pair's generated side is first replaced by its
    resample (``resampled[i]``) when there is one, then gets token noise at ``token_rate``.
    """
    rows, n_replaced, n_tokens = [], 0, 0
    for i, x in enumerate(prompts):
        gen = generated[i]
        if routes[i] == "noise":
            gen = resampled.get(i, gen)
            gen, k, n = token_noise(gen, tokenizer, token_rate, rng)
            n_replaced, n_tokens = n_replaced + k, n_tokens + n
        chosen, rejected = (gen, real[i]) if routes[i] == "swap" else (real[i], gen)
        rows.append(
            {
                "prompt": x,
                "real": real[i],
                "generated": generated[i],
                "score_real": s_real[i] if s_real else None,
                "score_generated": s_gen[i] if s_gen else None,
                "gap": round(gaps[i], 6),
                "route": routes[i],
                "chosen": chosen,
                "rejected": rejected,
            }
        )
    n = max(1, len(rows))
    info = {
        "label_issue_rate": round(sum(g < 0 for g in gaps) / n, 6),
        "swap_rate": round(routes.count("swap") / n, 6),
        "noise_rate": round(routes.count("noise") / n, 6),
        "keep_rate": round(routes.count("keep") / n, 6),
        "token_noise_rate": round(n_replaced / n_tokens, 6) if n_tokens else 0.0,
        "score_real": round(sum(s_real) / n, 6) if s_real else None,
        "score_generated": round(sum(s_gen) / n, 6) if s_gen else None,
    }
    return rows, info


def iteration(ctx: Context, t: int, state: State) -> tuple[dict, State, list[dict]]:
    from synpo.modeling import load_tokenizer
    from synpo.training.launch import run_training_job

    cfg, run = ctx.cfg, ctx.run
    m = cfg.method
    it = f"iter_{t}"
    prompts = [r["prompt"] for r in ctx.seed_train]
    real = [r["answer"] for r in ctx.seed_train]
    temperature = noise_temperature(cfg, t) if m.name == "spin_noised" else None
    r_gen = ctx.record(
        "generate",
        ctx.generate(
            f"{it}/generated",
            state.policy,
            prompts,
            run.path(it, "generated.jsonl"),
            [state.policy_record, ctx.seed_record],
            temperature=temperature,
        ),
    )
    generated = [r["response"] for r in read_jsonl(run.path(it, "generated.jsonl"))]
    judged_file = run.path(it, "judge_scores.jsonl")
    r_judge = ctx.record(
        "scores", ctx.score_pairs(f"{it}/judge_scores", prompts, real, generated, judged_file, [r_gen])
    )
    gaps, s_real, s_gen = ctx.read_scores(judged_file)
    routes = [route(m.name, g, m.reverse_threshold, m.noise_threshold) for g in gaps]
    deps = [r_gen, r_judge]
    resampled: dict[int, str] = {}
    if m.name == "spin_adaptive" and m.noise.temperature is not None:
        idx = [i for i, r in enumerate(routes) if r == "noise"]
        out = run.path(it, "generated_noised.jsonl")
        r_noised = ctx.record(
            "generate",
            ctx.generate(
                f"{it}/generated_noised",
                state.policy,
                [prompts[i] for i in idx],
                out,
                [r_gen],
                temperature=noise_temperature(cfg, t),
            ),
        )
        resampled = {i: r["response"] for i, r in zip(idx, read_jsonl(out), strict=True)}
        deps.append(r_noised)
    scores_file, pairs_file = run.path(it, "scores.jsonl"), run.path(it, "pairs.jsonl")

    def fn():
        tokenizer = load_tokenizer(state.policy, cfg.model.trust_remote_code)
        rng = random.Random(stage_seed(cfg.seed, f"{it}/token_noise"))
        rows, info = build_pairs(
            prompts, real, generated, gaps, s_real, s_gen, routes, resampled, m.noise.token_rate, tokenizer, rng
        )
        write_jsonl(scores_file, rows)
        write_jsonl(pairs_file, [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
        return info

    settings = {
        "method": m.name,
        "noise": dict(m.noise),
        "thresholds": [m.reverse_threshold, m.noise_threshold],
        "scorer": ctx.scorer_settings(),
    }
    r_pairs = ctx.record("pairs", run.stage(f"{it}/pairs", settings, [scores_file, pairs_file], fn, deps))
    dataset = read_jsonl(pairs_file)
    train_deps = [r_pairs]
    if m.mix_previous and state.previous_pairs is not None:
        dataset += read_jsonl(run.path(f"iter_{t - 1}", "pairs.jsonl"))
        train_deps.append(state.previous_pairs)
    beta = schedule_value(cfg.trainer.beta_schedule, cfg.trainer.beta or 0.0, t)
    hp = hparams(cfg.trainer, cfg.model, stage_seed(cfg.seed, f"{it}/dpo"))
    hp.learning_rate = schedule_value(cfg.trainer.lr_schedule, cfg.trainer.learning_rate, t)
    model_dir = run.path(it, "model")
    r_train = ctx.record(
        "dpo",
        run.stage(
            f"{it}/train",
            {"hp": hp.__dict__, "beta": beta, "from": state.policy},
            [model_dir],
            lambda: run_training_job(
                "dpo",
                model_dir,
                cfg.trainer,
                model_path=state.policy,
                ref_path=state.policy,
                pairs=dataset,
                hp=hp,
                beta=beta,
                trust_remote_code=cfg.model.trust_remote_code,
            ),
            [*train_deps, state.policy_record],
        ),
    )
    r_eval = ctx.record(
        "eval",
        ctx.evaluate(f"{it}/eval", str(model_dir), run.path(it), [r_train], run.path("iter_0", "val_answers.jsonl")),
    )
    point_link(run.path(it, "policy"), model_dir)
    row = {
        "iteration": t,
        **r_eval.info,
        **r_pairs.info,
        "d_size": len(dataset),
        "beta": beta,
        "learning_rate": hp.learning_rate,
        "temperature": temperature or cfg.generator.temperature,
        "noise_temperature": noise_temperature(cfg, t) if resampled else None,
        "train_loss": r_train.info.get("train_loss"),
    }
    samples = [
        {k: r[k] for k in ("prompt", "real", "generated", "route", "score_real", "score_generated")}
        for r in read_jsonl(scores_file)[: cfg.logger.n_sample_pairs]
    ]
    return row, State(str(model_dir), r_train, r_pairs, dict(r_eval.info)), samples
