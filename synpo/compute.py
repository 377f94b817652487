"""How much model arithmetic a stage did: its tokens, counted where they are known, and their FLOPs.

A stage's compute is ``{"tokens": ..., "attn": ...}`` in forward-pass units: ``tokens`` is the number of real
(unpadded) token positions a forward pass ran over, ``attn`` the sum over those positions of the context each one
attends to (a sequence of T tokens, run causally, gives T and T(T+1)/2). Training counts 3 forward passes per epoch
(forward, and a backward of twice its cost); generation 1 (the prompt's prefill and each generated token once, as
with a KV cache). Padding, recomputed activations and finished rows kept in a batch are not counted: they are the
waste that a benchmark's wall/floor ratio shows.

    FLOPs = 2 x matmul parameters x tokens + 4 x layers x width x attn
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

TRAIN_PASSES = 3  # a backward pass costs about twice the forward


def sequence_compute(lengths: Iterable[int], passes: float = 1.0) -> dict:
    """The compute of running sequences of ``lengths`` tokens ``passes`` times (a generated answer: prompt +
    answer tokens, passes 1)."""
    tokens = attn = 0
    for t in lengths:
        tokens += t
        attn += t * (t + 1) // 2
    return {"tokens": round(tokens * passes), "attn": round(attn * passes)}


def add_compute(total: dict | None, more: dict | None) -> dict | None:
    if more is None:
        return total
    if total is None:
        return dict(more)
    return {k: total.get(k, 0) + more.get(k, 0) for k in set(total) | set(more)}


def model_shape(model_dir: str | Path) -> dict:
    """``matmul_params`` (every ``nn.Linear`` weight, the output head included; embeddings are lookups), ``layers``
    and ``width`` of a causal LM, from its config alone (built on the meta device: nothing is loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return {"matmul_params": matmul, "layers": config.num_hidden_layers, "width": config.hidden_size}


def flops(compute: dict, shape: dict) -> float:
    return 2.0 * shape["matmul_params"] * compute["tokens"] + 4.0 * shape["layers"] * shape["width"] * compute["attn"]
