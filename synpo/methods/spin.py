"""SPIN (self-play fine-tuning, Chen et al. 2024) and the fixes of the SPIN-limits report.

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

import random
from dataclasses import dataclass

from omegaconf import DictConfig

from synpo.artifacts import PAIRS, POLICY_LINK, StageRecord, point_link, read_jsonl, write_jsonl
from synpo.errors import UserError
from synpo.evaluation.validation import validation_stage
from synpo.methods.base import Iteration
from synpo.methods.config import MethodConfig
from synpo.modeling import system_role_problem
from synpo.schema import spec
from synpo.stages import Context
from synpo.training.config import at_iteration, beta_candidates, hparams


@dataclass
class NoiseConfig:
    """SPIN's noise fix: more randomness on the generated side (spin_noised, and spin_adaptive's small margins)."""

    temperature: float | None = spec(None, "sampling temperature of the generated side; null: generator's", ge=0)
    temperature_final: float | None = spec(None, "anneal linearly to this by the last iteration; null: constant", ge=0)
    token_rate: float = spec(0.0, "share of generated-side tokens replaced by random vocabulary tokens", ge=0, lt=1)


@dataclass
class SpinConfig(MethodConfig):
    """SPIN and the SPIN-limits report's fixes."""

    mix_previous: bool = spec(True, "train on this iteration's pairs plus the previous iteration's (SPIN)")
    noise: NoiseConfig = spec(help="SPIN's noise settings", factory=NoiseConfig)
    reverse_threshold: float = spec(0.3, "spin_adaptive: a judge margin above this orders the pair by the judge")
    noise_threshold: float = spec(0.1, "spin_adaptive: a judge margin below this gets noise instead", ge=0)
    generation_prompt: str = spec(
        "chat",
        "how pi_{t-1} is prompted for the generated side: chat (through the model's chat template; ours) or "
        "instruction (the SPIN repo's raw '### Instruction: {prompt}\\n\\n### Response: ', no template)",
        choices=("chat", "instruction"),
    )
    system_turn: str = spec(
        "none",
        "the training prompts' system turn: none, or empty (an empty system message first, as the SPIN repo's "
        "data formatting inserts)",
        choices=("none", "empty"),
    )


# The SPIN repo's generation prompt (spin/generate_vllm.py), used as raw text with method.generation_prompt=instruction
INSTRUCTION_PROMPT = "### Instruction: {prompt}\n\n### Response: "


SAMPLE_FIELDS = ("prompt", "real", "generated", "route", "score_real", "score_generated")


@dataclass
class State:
    policy: str  # pi_{t-1}
    policy_record: StageRecord | str
    previous_pairs: StageRecord | None = None
    previous_val: dict | None = None


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


@dataclass
class Judged:
    """The iteration's generated answers, the judge's gaps and scores, and each pair's route."""

    prompts: list[str]
    real: list[str]
    generated: list[str]
    gaps: list[float]
    s_real: list[float] | None
    s_gen: list[float] | None
    routes: list[str]
    deps: list[StageRecord]


def generate_and_judge(ctx: Context, t: int, state: State, name: str) -> Judged:
    """Steps 1 and 2a: pi_{t-1} samples the generated side; the judge compares real with generated; routes."""
    run, rundir, m = ctx.run, ctx.rundir, ctx.run.method
    prompts = [r["prompt"] for r in ctx.seed_train]
    real = [r["answer"] for r in ctx.seed_train]
    asked = (
        prompts if m.generation_prompt == "chat" else [{"raw": INSTRUCTION_PROMPT.format(prompt=p)} for p in prompts]
    )
    r_gen = ctx.generate(
        rundir.iter_stage(t, "generated"),
        state.policy,
        asked,
        rundir.iter_file(t, "generated.jsonl"),
        [state.policy_record, ctx.seed_record],
        temperature=noise_temperature(run, t) if name == "spin_noised" else None,
    )
    generated = [r["response"] for r in read_jsonl(rundir.iter_file(t, "generated.jsonl"))]
    judged_file = rundir.iter_file(t, "judge_scores.jsonl")
    r_judge, c = ctx.compare(rundir.iter_stage(t, "judge_scores"), prompts, real, generated, judged_file, [r_gen])
    routes = [route(name, g, m.reverse_threshold, m.noise_threshold) for g in c.gaps]
    return Judged(prompts, real, generated, c.gaps, c.scores_a, c.scores_b, routes, [r_gen, r_judge])


def resample_noised(ctx: Context, t: int, state: State, judged: Judged) -> dict[int, str]:
    """spin_adaptive with a noise temperature: the noise-routed prompts' generated side, resampled hotter."""
    idx = [i for i, r in enumerate(judged.routes) if r == "noise"]
    out = ctx.rundir.iter_file(t, "generated_noised.jsonl")
    r_noised = ctx.generate(
        ctx.rundir.iter_stage(t, "generated_noised"),
        state.policy,
        [judged.prompts[i] for i in idx],
        out,
        judged.deps[:1],
        temperature=noise_temperature(ctx.run, t),
    )
    judged.deps.append(r_noised)
    return {i: r["response"] for i, r in zip(idx, read_jsonl(out), strict=True)}


def pairs_stage(ctx: Context, t: int, state: State, judged: Judged, resampled: dict[int, str], name: str):
    """Step 2b: the iteration's (chosen, rejected) pairs, and the rates of what each route did."""
    run, rundir, m = ctx.run, ctx.rundir, ctx.run.method
    scores_file, pairs_file = rundir.iter_file(t, "scores.jsonl"), rundir.iter_file(t, PAIRS)

    def fn():
        from synpo.modeling import load_tokenizer

        tokenizer = load_tokenizer(state.policy, run.model.trust_remote_code)
        rng = random.Random(ctx.seed_for(rundir.iter_stage(t, "token_noise")))
        j = judged
        rows, info = build_pairs(
            j.prompts,
            j.real,
            j.generated,
            j.gaps,
            j.s_real,
            j.s_gen,
            j.routes,
            resampled,
            m.noise.token_rate,
            tokenizer,
            rng,
        )
        write_jsonl(scores_file, rows)
        write_jsonl(pairs_file, [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
        return info

    settings = {
        "method": name,
        "noise": dict(m.noise),
        "thresholds": [m.reverse_threshold, m.noise_threshold],
        "scorer": ctx.scorer_settings(),
    }
    return ctx.stage(rundir.iter_stage(t, "pairs"), settings, [scores_file, pairs_file], fn, judged.deps)


def train_dpo_stage(ctx: Context, t: int, state: State, r_pairs: StageRecord):
    """Step 3: DPO from pi_{t-1} against pi_{t-1} frozen, on this iteration's pairs (plus the previous ones)."""
    run, rundir = ctx.run, ctx.rundir
    dataset = read_jsonl(rundir.iter_file(t, PAIRS))
    deps = [r_pairs]
    if run.method.mix_previous and state.previous_pairs is not None:
        dataset += read_jsonl(rundir.iter_file(t - 1, PAIRS))
        deps.append(state.previous_pairs)
    [(beta, _)] = beta_candidates(run.trainer, t)
    hp = hparams(run.trainer, run.model, run.launch, ctx.seed_for(rundir.iter_stage(t, "dpo")), t)
    model_dir = rundir.iter_file(t, "model")
    system = "" if run.method.system_turn == "empty" else None
    settings = {"hp": hp.identity(), "beta": beta, "from": state.policy}
    if system is not None:  # absent by default, so runs made before the option keep their fingerprint
        settings["system"] = system
    tr = run.model.trust_remote_code

    def fn():
        if system is not None and (problem := system_role_problem(state.policy, tr)):
            raise UserError(f"method.system_turn=empty: {problem}. Set method.system_turn=none, or use such a model.")
        return ctx.train(
            "dpo",
            model_dir,
            model_path=state.policy,
            ref_path=state.policy,
            pairs=dataset,
            hp=hp,
            beta=beta,
            trust_remote_code=tr,
            system=system,
        )

    r_train = ctx.stage(
        rundir.iter_stage(t, "train"),
        settings,
        [model_dir],
        fn,
        [*deps, state.policy_record],
        "dpo",
    )
    info = {"d_size": len(dataset), "beta": beta, "learning_rate": hp.learning_rate, "epochs": hp.epochs}
    return r_train, model_dir, info


class Spin:
    """SPIN (``spin``) and the report's fixes (``spin_judged``, ``spin_noised``, ``spin_adaptive``) as a Method."""

    schema = SpinConfig
    columns = (
        "label_issue_rate",
        "swap_rate",
        "noise_rate",
        "token_noise_rate",
        "d_size",
        "beta",
        "learning_rate",
        "epochs",
        "temperature",
    )

    trainer = "dpo"  # against the previous iteration's frozen model
    trains_sft = False
    draws_prompts = False

    def __init__(self, name: str):
        self.name = name

    def workload(self, cfg: DictConfig, t: int, a, policy: dict, scorer: dict, pairwise: bool) -> list:
        """Iteration t's stages for the plan (``synpo.plan``): pi_{t-1} answers every seed prompt; DPO against
        pi_{t-1} on the real-over-generated pairs (and the previous iteration's); one candidate."""
        from synpo.cost import generate, score, train, validation
        from synpo.training.launch import JOBS

        n, p, new, t_loss = cfg.data.n_train, a.prompt_tokens, cfg.generator.max_new_tokens, cfg.trainer.loss
        pairs = n * (2 if cfg.method.mix_previous and t > 1 else 1)
        seq = min(p + (a.gold_tokens + a.answer_fill * new) / 2, cfg.trainer.max_length)
        works = [generate("generated answers", policy, n, p, new, a)]
        # every variant compares real with generated (spin for its label_issue_rate; the fixes to route the pairs)
        works.append(score("judged pairs", scorer, n, p, (a.gold_tokens + a.answer_fill * new) / 2, a, pairwise))
        epochs, ckpt, ref = at_iteration(cfg.trainer, "epochs", t), cfg.trainer.gradient_checkpointing, JOBS[t_loss]
        works.append(train("DPO", policy, 2 * pairs, seq, epochs, a, ckpt, reference=ref.reference))
        return works + validation(cfg, policy, scorer, a, 1, pairwise)

    def problems(self, cfg: DictConfig) -> list[str]:
        p, m, t = [], cfg.method, cfg.trainer
        if t.beta_schedule is None and t.beta is None:
            p.append(f"trainer.beta={t.beta}: SPIN needs a fixed beta > 0 or a trainer.beta_schedule")
        if m.noise.temperature_final is not None and m.noise.temperature is None:
            p.append("method.noise.temperature_final is set but method.noise.temperature is null: give the start too")
        if self.name == "spin_noised" and m.noise.temperature is None and m.noise.token_rate == 0:
            p.append(
                "method=spin_noised with no noise: set method.noise.temperature and/or method.noise.token_rate > 0"
            )
        if self.name == "spin_adaptive" and m.reverse_threshold < m.noise_threshold:
            p.append(
                f"method.reverse_threshold={m.reverse_threshold} < method.noise_threshold={m.noise_threshold}: "
                "the reverse threshold must be at least the noise threshold"
            )
        return p

    def prepare(self, ctx: Context, pi0_val: dict) -> State:
        return State(ctx.pi0, "pi_0", None, dict(pi0_val))

    def iteration(self, ctx: Context, t: int, state: State) -> Iteration:
        run, rundir = ctx.run, ctx.rundir
        judged = generate_and_judge(ctx, t, state, self.name)
        resampled: dict[int, str] = {}
        if self.name == "spin_adaptive" and run.method.noise.temperature is not None:
            resampled = resample_noised(ctx, t, state, judged)
        r_pairs = pairs_stage(ctx, t, state, judged, resampled, self.name)
        r_train, model_dir, train_info = train_dpo_stage(ctx, t, state, r_pairs)
        r_eval = validation_stage(
            ctx, rundir.iter_stage(t, "eval"), str(model_dir), rundir.iter_dir(t), [r_train], rundir.reference_answers
        )
        point_link(rundir.iter_file(t, POLICY_LINK), model_dir)
        temperature = noise_temperature(run, t) if self.name == "spin_noised" else None
        row = {
            "iteration": t,
            **r_eval.info,
            **r_pairs.info,
            **train_info,
            "temperature": temperature or run.generator.temperature,
            "noise_temperature": noise_temperature(run, t) if resampled else None,
            "train_loss": r_train.info.get("train_loss"),
        }
        samples = r_pairs.output("scores")
        new_state = State(str(model_dir), r_train, r_pairs, dict(r_eval.info))
        return Iteration(row, new_state, str(model_dir), r_train, samples_file=samples, sample_fields=SAMPLE_FIELDS)


METHODS = {name: Spin(name) for name in ("spin", "spin_judged", "spin_noised", "spin_adaptive")}
