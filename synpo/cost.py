"""The arithmetic of a run's cost, for its plan (``synpo.plan``): stage workloads, model shapes and assumptions.

For the composed config, per iteration and per stage kind: the sequences and tokens each stage runs (prompts,
generated answers, trained sequences), its model arithmetic (2 x matmul parameters per token per forward pass;
training counts 3 passes, 4 with a frozen reference; attention's own term is left out), GPU-hours, peak training
memory per GPU under ZeRO-3, and the disk each iteration writes; then totals and every assumption it made. Nothing is
loaded: shapes come from a local config.json, or from the published configs of the paper's checkpoints (``KNOWN``)
where the checkpoint is a hub id.

Each stage's GPU-hours are its *bound* (the seconds it needs at the GPU's limits) over the share of the bound it
reaches. Training and scoring are bound by arithmetic: their FLOPs at the bf16 peak, reached at the LOG's measured
training MFU and a stated guess for scoring. Generation is bound by the decode roofline
(``decode_roofline_seconds``): each decode step reads every weight and every running sequence's KV cache from HBM, or
does its arithmetic, whichever takes longer; at 2048-token answers it is the memory traffic. The share of that bound
vLLM reaches is taken from a published H100 measurement of Mistral-7B (``decode_efficiency``; LOG 2026-12-07, fourth
session; ``experiments/benchmarks/decode_efficiency.py`` derives it from any vLLM benchmark's per-request lengths).

It is an estimate. Answer lengths are the largest unknown: a generated answer is taken to fill ``answer_fill`` of
its token budget, a prompt to have ``prompt_tokens`` tokens and a reference answer ``gold_tokens``.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from omegaconf import DictConfig

H100_BF16_PEAK = 989e12  # FLOP/s, dense bf16 (H100 SXM)
H100_HBM_BANDWIDTH = 3.35e12  # bytes/s, HBM3 (H100 SXM 80GB)
H100_MEMORY = 80e9  # bytes

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
    "mistralai/Mistral-7B-Instruct-v0.3": dict(_MISTRAL, vocab=32768),  # the decode-efficiency measurement's model
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
    train_mfu_checkpointed: float = 0.233  # the same, gradient checkpointing on (the 7B configs' setting)
    decode_efficiency: float = 0.50  # of the decode roofline, reached by vLLM 0.5.4 (Mistral-7B, one H100; LOG 12-07)
    max_num_seqs: int = 256  # sequences an engine decodes at once (vLLM's max_num_seqs in that measurement)
    kv_memory_share: float = 0.9  # of the GPU's memory vLLM takes for weights and KV cache (gpu_memory_utilization)
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
    efficiency: float = 0.1  # the share of its bound it reaches (MFU where the bound is the arithmetic)
    models: int = 0  # final models it saves (each 2 bytes a parameter in bf16)
    bound_seconds: float | None = None  # GPU-seconds at the GPU's limits; None: its FLOPs at the bf16 peak

    @property
    def flops(self) -> float:
        return 2.0 * self.model["matmul"] * self.tokens * self.passes

    def bound_hours(self) -> float:
        """GPU-hours at the GPU's limits: the arithmetic at the bf16 peak, or a generation's decode roofline."""
        seconds = self.flops / H100_BF16_PEAK if self.bound_seconds is None else self.bound_seconds
        return seconds / 3600

    def gpu_hours(self) -> float:
        return self.bound_hours() / self.efficiency


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

    config = AutoConfig.from_pretrained(path)
    vocab = getattr(config, "vocab_size", None)
    total = s["matmul_params"] + (vocab or 0) * s["width"]
    heads = getattr(config, "num_attention_heads", 1)
    head = getattr(config, "head_dim", None) or s["width"] // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    inter = getattr(config, "intermediate_size", 4 * s["width"])
    sizes = {"matmul": s["matmul_params"], "total": total, "layers": s["layers"], "width": s["width"], "vocab": vocab}
    return sizes | _attention(s["layers"], heads, kv_heads, head, inter)


def _attention(layers: int, heads: int, kv_heads: int, head: int, inter: int) -> dict:
    """What decoding and the activation model read besides the sizes: the bytes of KV cache one token holds in
    bf16 (a key and a value per layer and KV head), the MLP's and the keys' widths, the heads."""
    return {"kv_bytes": 2 * layers * kv_heads * head * 2, "inter": inter, "kv_dim": kv_heads * head, "heads": heads}


def _llama(d: dict) -> dict:
    head = d["width"] // d["heads"]
    per_layer = 2 * d["width"] ** 2 + 2 * d["width"] * d["kv_heads"] * head + 3 * d["width"] * d["inter"]
    matmul = d["layers"] * per_layer + d["vocab"] * d["width"]  # the output head is a matmul; embeddings are not
    total = matmul + d["vocab"] * d["width"]
    sizes = {"matmul": matmul, "total": total, "layers": d["layers"], "width": d["width"], "vocab": d["vocab"]}
    return sizes | _attention(d["layers"], d["heads"], d["kv_heads"], head, d["inter"])


def decode_roofline_seconds(model: dict, requests: list[tuple[float, int, int]], a: Assumptions) -> float:
    """Seconds one GPU needs, at its limits, to answer ``requests`` ((prompt tokens, answer tokens, count) each) as
    vLLM batches them: each prompt's prefill at the bf16 peak; then decode steps over the running sequences (at most
    ``a.max_num_seqs``, and no more than the KV cache holds at their full length), each step as long as the larger of
    reading every weight and every running sequence's KV cache from HBM and its arithmetic (2 x matmul parameters
    per sequence). A request joins when a place is free, in order. Attention's arithmetic and the sampler are left
    out; answers of 0 tokens cost nothing (no prefill either)."""
    weights, kv = 2.0 * model["matmul"], float(model["kv_bytes"])
    per_token = 2.0 * model["matmul"] / H100_BF16_PEAK  # seconds of arithmetic a token position takes
    capacity = (H100_MEMORY * a.kv_memory_share - 2.0 * model["total"]) / kv  # KV-cache token slots
    queue = deque([float(p), int(n), int(c)] for p, n, c in requests if n >= 1 and c >= 1)
    running: list = []  # heap of (last step, prompt less its first step, full length, count)
    step = seconds = base = used = 0.0
    seqs = 0
    while queue or running:
        while queue and seqs < a.max_num_seqs:
            p, n, c = queue[0]
            fits = min(c, a.max_num_seqs - seqs, int((capacity - used) // (p + n)))
            if fits < 1:
                break
            seconds += per_token * p * fits
            heapq.heappush(running, (step + n, p - step, p + n, fits))
            base, used, seqs = base + fits * (p - step), used + fits * (p + n), seqs + fits
            queue[0][2] -= fits
            if queue[0][2] == 0:
                queue.popleft()
        if not running:
            from synpo.errors import UserError

            raise UserError(
                f"The plan cannot place a {p:.0f}-token prompt with its {n}-token answer on one GPU: the KV cache left "
                f"beside the model's weights holds {max(capacity, 0):,.0f} tokens "
                f"({H100_MEMORY / 1e9:.0f} GB x assume.kv_memory_share={a.kv_memory_share}). A model this size needs "
                "tensor parallelism, which the plan does not model; or lower generator.max_new_tokens."
            )
        end = running[0][0]
        seconds += _decode_steps(int(end - step), seqs, base + seqs * step, weights, kv, per_token * seqs)
        step = end
        while running and running[0][0] == step:
            _, b, full, c = heapq.heappop(running)
            base, used, seqs = base - c * b, used - c * full, seqs - c
    return seconds


def _decode_steps(m: int, seqs: int, context: float, weights: float, kv: float, arithmetic: float) -> float:
    """``m`` decode steps of ``seqs`` sequences whose contexts sum to ``context`` at the first and grow by one token
    each a step: each step the larger of its memory traffic at the HBM's bandwidth and ``arithmetic`` seconds."""
    first = (weights + kv * context) / H100_HBM_BANDWIDTH  # the memory time of the first step
    slope = kv * seqs / H100_HBM_BANDWIDTH  # what each later step adds
    bound = min(m, max(0, -int(-(arithmetic - first) // slope)))  # steps bound by the arithmetic
    later = m - bound
    return bound * arithmetic + later * first + slope * (m - 1 + bound) * later / 2


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
    each filling ``fill`` (default ``a.answer_fill``) of ``max_new`` tokens; bound by the decode roofline."""
    answer = max(1, round((a.answer_fill if fill is None else fill) * max_new))
    tokens = prompts * (prompt_tokens + answer)
    bound = decode_roofline_seconds(model, [(prompt_tokens, answer, round(prompts))], a)
    return Work("generate", stage, model, prompts, tokens, 1.0, a.decode_efficiency, bound_seconds=bound)


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
    checkpointing: bool,
    reference: bool = False,
    models: int = 1,
) -> Work:
    """Training on ``sequences`` sequences for ``epochs`` (over ``models`` jobs that each save a model): a forward
    and a backward of twice its cost, and a frozen reference's forward where there is one; gradient checkpointing's
    recomputed forward is not counted as work, and lowers the efficiency reached (as measured)."""
    passes = (3.0 + (1.0 if reference else 0.0)) * epochs
    mfu = a.train_mfu_checkpointed if checkpointing else a.train_mfu
    return Work("train", stage, model, sequences, sequences * seq_tokens, passes, mfu, models)


def validation(cfg: DictConfig, model: dict, scorer: dict, a: Assumptions, candidates: int, pairwise: bool) -> list:
    """Each candidate's validation: greedy (and sampled) answers to the held-out prompts, each scored against the
    reference answer and against pi_0's."""
    n = cfg.data.n_val * candidates * (2 if cfg.eval.sampled else 1)
    answer = a.answer_fill * cfg.eval.max_new_tokens
    return [
        generate("validation answers", model, n, a.prompt_tokens, cfg.eval.max_new_tokens, a),
        score("validation scores", scorer, 2 * n, a.prompt_tokens, answer, a, pairwise),
    ]


def activation_bytes(model: dict) -> tuple[float, float]:
    """Bytes a token's activations hold for the backward pass in bf16: (per decoder layer, outside the layers).

    Per layer: 20 x width (the two RMSNorms' float32 copies and outputs, the query, the attention's output),
    8 x the MLP's width (gate, up, their SiLU and product), 4 x the KV width (key and value), 4 x heads (the
    attention's float32 log-sum-exp) and 8; outside: 8 x width (the embeddings' output, the final norm). Counted from
    what HF's Llama/Mistral code saves with SDPA attention (LOG 2026-12-07, fourth session;
    ``tests/test_plan.py`` checks it against ``synpo.memory.saved_for_backward_bytes``)."""
    h = model["width"]
    per_layer = 20 * h + 8 * model.get("inter", 4 * h) + 4 * model.get("kv_dim", h) + 4 * model.get("heads", 1) + 8
    return per_layer, 8 * h


def training_memory_gib(
    model: dict, t: DictConfig, world: int, vocab: int | None, pairs: bool, reference: bool = False
) -> float:
    """Peak memory per GPU of a ZeRO-3 job (an estimate): 16 bytes per parameter of bf16 weights and gradients with
    fp32 master weights and Adam moments, split over ``world`` ranks; one layer gathered whole (2 bytes per
    parameter); a micro batch's activations at ``max_length`` (a pair trainer runs chosen and rejected together:
    2 sequences a pair), each layer's (``activation_bytes``) or, with gradient checkpointing, each layer's input and
    one layer's recomputed whole; and its logits, 8 bytes an entry (bf16 logits, their log-softmax and gradient). A
    frozen reference adds its bf16 weights, sharded the same way, and a layer of its own gathered."""
    states = (16 + (2 if reference else 0)) * model["total"] / world
    layer = (2 if reference else 1) * 2 * (model["matmul"] / max(1, model["layers"]))
    tokens = (2 if pairs else 1) * t.batch_size * t.max_length
    per_layer, outside = activation_bytes(model)
    kept = 2 * model["width"] if t.gradient_checkpointing else per_layer  # a layer's, a token
    recompute = per_layer if t.gradient_checkpointing else 0
    activations = tokens * (model["layers"] * kept + recompute + outside)
    logits = 8 * tokens * (vocab or 0)
    return (states + layer + activations + logits) / 2**30
