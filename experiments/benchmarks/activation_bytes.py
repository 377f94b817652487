"""The plan's activation model (``synpo.cost.activation_bytes``) against what HF's code saves for the backward pass
at the paper's checkpoints' real widths, on a CPU: each model built from its published shape (``synpo.cost.KNOWN``)
with 1 and with 2 layers, in bf16 with SDPA attention, randomly initialised; the bytes saved for a forward of
``--tokens`` tokens (``synpo.memory.saved_for_backward_bytes``) give one layer's and the rest's per token.

    python experiments/benchmarks/activation_bytes.py [--tokens 256] [--device cuda]

About 20 s a model on 2 cores and 3 GB of memory (Llama-3's 128k vocabulary is the largest). On a GPU
(``--device cuda``; ``gpu_smoke.sh`` runs it) the attention is CUDA's SDPA kernel, whose saved tensors the model was
not fitted on: the check that it holds there.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig

from synpo.cost import KNOWN, activation_bytes, shape
from synpo.memory import saved_for_backward_bytes

MODELS = {
    "alignment-handbook/zephyr-7b-sft-full": MistralConfig,
    "princeton-nlp/Llama-3-Base-8B-SFT": LlamaConfig,
    "neuralmagic/Llama-2-7b-ultrachat200k": LlamaConfig,
}


def measure(name: str, config_class, tokens: int, device: str = "cpu") -> dict:
    d = KNOWN[name]
    per_token = []
    for layers in (1, 2):
        config = config_class(
            vocab_size=d["vocab"],
            hidden_size=d["width"],
            intermediate_size=d["inter"],
            num_attention_heads=d["heads"],
            num_key_value_heads=d["kv_heads"],
            num_hidden_layers=layers,
        )
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.bfloat16)
        model = model.to(device).train()
        ids = torch.randint(0, d["vocab"], (2, tokens // 2), device=device)
        per_token.append(saved_for_backward_bytes(model, ids) / ids.numel())
        del model
    per_layer, outside = activation_bytes(shape(name))
    layer = per_token[1] - per_token[0]
    return {
        "model": name,
        "layer_measured": layer,
        "layer_model": per_layer,
        "layer_ratio": layer / per_layer,
        "outside_measured": per_token[0] - layer,
        "outside_model": outside,
        "layer_in_widths": layer / d["width"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name() if args.device.startswith('cuda') else args.device}")
    print("| model | a layer, measured (bytes a token) | the model's | ratio | outside, measured | the model's |")
    print("|---|---|---|---|---|---|")
    for name, config_class in MODELS.items():
        r = measure(name, config_class, args.tokens, args.device)
        print(
            f"| {name} | {r['layer_measured']:,.0f} ({r['layer_in_widths']:.1f} x width) | {r['layer_model']:,.0f} "
            f"| {r['layer_ratio']:.4f} | {r['outside_measured']:,.0f} | {r['outside_model']:,.0f} |"
        )


if __name__ == "__main__":
    main()
