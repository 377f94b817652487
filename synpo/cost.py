"""The arithmetic of a run's cost, for its plan (``synpo.plan``): stage workloads, model shapes and assumptions.

For the composed config, per iteration and per stage kind: the sequences and tokens each stage runs (prompts,
generated answers, trained sequences), its model arithmetic (2 x matmul parameters per token per forward pass;
training counts 3 passes, 4 with a frozen reference; attention's own term is left out), GPU-hours at a stated share
of the GPU's peak, peak training memory per GPU under ZeRO-3, and the disk each iteration writes; then totals and
every assumption it made. Nothing is loaded: shapes come from a local config.json, or from the published configs of
the paper's checkpoints (``KNOWN``) where the checkpoint is a hub id.

It is an estimate. Answer lengths are the largest unknown: a generated answer is taken to fill ``answer_fill`` of
its token budget, a prompt to have ``prompt_tokens`` tokens and a reference answer ``gold_tokens``; the efficiencies
are the LOG's measured H100 figure for training and stated guesses for generation and scoring.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

H100_BF16_PEAK = 989e12  # FLOP/s, dense bf16 (H100 SXM)

# Published config.json values (architecture only) of the checkpoints the paper's settings name: a hub id is not
# readable here, and these never change. Llama-architecture fields, or "matmul"/"total" for PairRM's DeBERTa.
_MISTRAL = dict(vocab=32000, width=4096, inter=14336, layers=32, heads=32, kv_heads=8)
_LLAMA3 = dict(vocab=128256, width=4096, inter=14336, layers=32, heads=32, kv_heads=8)
_LLAMA2 = dict(vocab=32000, width=4096, inter=11008, layers=32, heads=32, kv_heads=32)
KNOWN = {
    "alignment-handbook/zephyr-7b-sft-full": _MISTRAL,
    "princeton-nlp/Llama-3-Base-8B-SFT": _LLAMA3,
    "neuralmagic/Llama-2-7b-ultrachat200k": _LLAMA2,
    "RLHFlow/ArmoRM-Llama3-8B-v0.1": _LLAMA3,
    # DeBERTa-v3-large: 24 layers of width 1024 (4 attention matrices, a 4096-wide MLP), a 128k vocabulary
    "llm-blender/PairRM-hf": dict(
        matmul=24 * (4 * 1024**2 + 2 * 1024 * 4096), total=435_000_000, layers=24, width=1024
    ),
}


@dataclass
class Assumptions:
    """What the plan takes as given; each printed with the plan."""

    prompt_tokens: int = 200  # a seed or synthetic prompt (UltraFeedback-like), after the chat template
    template_tokens: int = 12  # the chat template's share of that (an estimate; Llama-3's 10, SmolLM2's 30, tiny 7)
    tag_tokens: int = 12  # <question>, </question> <solution>, </solution> around the generator's output (SmolLM2 12)
    gold_tokens: int = 400  # a reference (seed) answer; the improver, trained on them, writes rewrites this long
    answer_fill: float = 0.5  # a generated answer's share of its max_new_tokens
    request_fill: float = 0.5  # the prompt generator's output without method.generator_stop (question and solution)
    request_tokens: int = 60  # the generator's keyword request (template and 3 keywords)
    improver_overhead: int = 50  # the improver's template around a prompt and a draft
    valid_share: float = 0.9  # synthetic prompts that parse and are new (the tiny world kept 0.88-0.91)
    improver_keep: float = 1.0  # seed answers the improver trains on (its score-gap filter keeps some: 0.79-0.93 tiny)
    pair_keep: float = (
        1.0  # pairs_per_iteration actually added to D (fewer when fewer pass the filters: 0.67-0.76 tiny)
    )
    train_mfu: float = 0.28  # LOG 2026-11-25: SimPO on one H100, 1.17B model, in-process (ZeRO-3 on 8: unmeasured)
    generate_mfu: float = 0.10  # a guess for vLLM decoding at 2048-token answers (unmeasured)
    score_mfu: float = 0.30  # a guess for a reward model's batched forward in bf16 (unmeasured)
    gpus: int = 8


@dataclass
class Work:
    """One stage kind's work in one iteration."""

    kind: str  # generate, score, train
    stage: str
    model: dict  # its shape
    sequences: float
    tokens: float  # token positions per pass
    passes: float = 1.0
    mfu: float = 0.1
    models: int = 0  # final models it saves (each 2 bytes a parameter in bf16)

    @property
    def flops(self) -> float:
        return 2.0 * self.model["matmul"] * self.tokens * self.passes

    def gpu_hours(self, peak: float = H100_BF16_PEAK) -> float:
        return self.flops / (peak * self.mfu) / 3600


def shape(name_or_path: str) -> dict:
    """``matmul`` and ``total`` parameters, ``layers`` and ``width`` of a model, without loading it."""
    if name_or_path in KNOWN:
        d = KNOWN[name_or_path]
        return d if "matmul" in d else _llama(d)
    from synpo.compute import model_shape
    from synpo.modeling import resolve_model_path

    path = resolve_model_path(name_or_path)  # a local directory (or builtin): its config.json
    s = model_shape(path)
    from transformers import AutoConfig

    vocab = getattr(AutoConfig.from_pretrained(path), "vocab_size", None)
    total = s["matmul_params"] + (vocab or 0) * s["width"]
    return {"matmul": s["matmul_params"], "total": total, "layers": s["layers"], "width": s["width"], "vocab": vocab}


def _llama(d: dict) -> dict:
    head = d["width"] // d["heads"]
    per_layer = 2 * d["width"] ** 2 + 2 * d["width"] * d["kv_heads"] * head + 3 * d["width"] * d["inter"]
    matmul = d["layers"] * per_layer + d["vocab"] * d["width"]  # the output head is a matmul; embeddings are not
    total = matmul + d["vocab"] * d["width"]
    return {"matmul": matmul, "total": total, "layers": d["layers"], "width": d["width"], "vocab": d["vocab"]}


def generate(
    stage: str,
    model: dict,
    prompts: float,
    prompt_tokens: float,
    max_new: int,
    a: Assumptions,
    fill: float | None = None,
) -> Work:
    """Generating an answer to each of ``prompts`` prompts (each prompt once, each answer token once: a KV cache),
    each filling ``fill`` (default ``a.answer_fill``) of ``max_new`` tokens."""
    tokens = prompts * (prompt_tokens + (a.answer_fill if fill is None else fill) * max_new)
    return Work("generate", stage, model, prompts, tokens, 1.0, a.generate_mfu)


def score(
    stage: str, scorer: dict, pairs: float, prompt_tokens: float, answer_tokens: float, a: Assumptions, pairwise: bool
) -> Work:
    """Comparing ``pairs`` pairs: a pointwise scorer reads each (prompt, answer) once; a pairwise one (PairRM) reads
    the prompt with both answers, in both orders."""
    seq = prompt_tokens + (2 * answer_tokens if pairwise else answer_tokens)
    return Work("score", stage, scorer, 2 * pairs, 2 * pairs * seq, 1.0, a.score_mfu)


def train(
    stage: str,
    model: dict,
    sequences: float,
    seq_tokens: float,
    epochs: float,
    a: Assumptions,
    reference: bool = False,
    models: int = 1,
) -> Work:
    """Training on ``sequences`` sequences for ``epochs`` (over ``models`` jobs that each save a model): a forward
    and a backward of twice its cost, and a frozen reference's forward where there is one."""
    passes = (3.0 + (1.0 if reference else 0.0)) * epochs
    return Work("train", stage, model, sequences, sequences * seq_tokens, passes, a.train_mfu, models)


def validation(cfg: DictConfig, model: dict, scorer: dict, a: Assumptions, candidates: int, pairwise: bool) -> list:
    """Each candidate's validation: greedy (and sampled) answers to the held-out prompts, each scored against the
    reference answer and against pi_0's."""
    n = cfg.data.n_val * candidates * (2 if cfg.eval.sampled else 1)
    answer = a.answer_fill * cfg.eval.max_new_tokens
    return [
        generate("validation answers", model, n, a.prompt_tokens, cfg.eval.max_new_tokens, a),
        score("validation scores", scorer, 2 * n, a.prompt_tokens, answer, a, pairwise),
    ]


def training_memory_gib(model: dict, t: DictConfig, world: int, vocab: int | None) -> float:
    """Peak memory per GPU of a ZeRO-3 job (an estimate): 16 bytes per parameter of bf16 weights and gradients with
    fp32 master weights and Adam moments, split over ``world`` ranks; one layer gathered whole (2 bytes per
    parameter); the checkpointed activations (each layer's input, bf16) and the fp32 logits of a micro batch."""
    states = 16 * model["total"] / world
    layer = 2 * (model["matmul"] / max(1, model["layers"]))
    tokens = t.batch_size * t.max_length
    activations = 2 * tokens * model["width"] * model["layers"] * (1 if t.gradient_checkpointing else 16)
    logits = 4 * tokens * (vocab or 0) * 2  # the logits and their gradient
    return (states + layer + activations + logits) / 2**30
