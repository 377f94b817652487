"""SmolLM2's generation through the HF decode loop against vLLM on CPU (issue 25 item 3): the same prompts (the
tiny world's tasks, as smol_synpo's validation asks them), greedy, the same token budget, in the same process and
dtype. Prints each backend's wall seconds (vLLM's includes its engine start, as a stage pays it) and answer tokens
per second, and greedy parity: the share of answers identical across backends, and of those that agree on their
first 16 tokens. Run it on a quiet machine; both backends use every core.

    python experiments/benchmarks/smol_generation.py [--n 64] [--max-new-tokens 96] [--dtype bfloat16]
        [--vllm-python .venv-vllm/bin/python] [--backends hf vllm] [--repeats 1]

``--backends hf hf_dynamic`` compares the HF loop's preallocated KV cache (``hf.preallocated``, the default) with
transformers' ``DynamicCache`` as it is, which appends each step by copying the whole cache; ``--repeats``
alternates the backends that many times (the first call of each loads the model, so it is measured apart).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import synpo.generation.hf as hf
from synpo.generation.hf import HFGenerator
from synpo.generation.protocol import SamplingParams
from synpo.generation.vllm import VLLMGenerator
from synpo.modeling import load_tokenizer, resolve_model_path
from synpo.tinyworld.tasks import sample_distinct_tasks

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    ap.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    ap.add_argument("--backends", nargs="+", default=["hf", "vllm"], choices=["hf", "hf_dynamic", "vllm"])
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per backend, alternated")
    args = ap.parse_args(argv)
    model = resolve_model_path("builtin:smollm2-135m-instruct")
    prompts = [t.prompt for t in sample_distinct_tasks(random.Random(0), args.n)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=args.max_new_tokens, seed=0)
    hf_gen = HFGenerator(batch_size=48, dtype=args.dtype)
    makers = {
        "hf": lambda: hf_gen,
        "hf_dynamic": lambda: hf_gen,
        "vllm": lambda: VLLMGenerator(
            python=args.vllm_python, gpu_memory_utilization=0.1, enforce_eager=True, dtype=args.dtype
        ),
    }
    backends = {name: makers[name]() for name in args.backends}
    preallocated = hf.preallocated
    tok = load_tokenizer(model)
    answers, walls = {}, {name: [] for name in backends}
    if any(name.startswith("hf") for name in backends):
        hf_gen.generate(model, prompts[:2], greedy)  # the model's load, outside the timed calls
    for _ in range(args.repeats):
        for name, gen in backends.items():
            hf.preallocated = (lambda cache, length: cache) if name == "hf_dynamic" else preallocated
            t0 = time.perf_counter()
            out = gen.generate(model, prompts, greedy)
            walls[name].append(time.perf_counter() - t0)
            answers[name] = [str(a) for a in out]
    hf.preallocated = preallocated
    print(f"SmolLM2-135M-Instruct, {args.n} prompts, greedy, {args.max_new_tokens} new tokens, {args.dtype}")
    print("| backend | wall s (each call) | answer tokens | tokens/s (best call) | x first backend (best call) |")
    print("|---|---|---|---|---|")
    first = min(walls[args.backends[0]])
    for name in backends:
        tokens = sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers[name])
        best = min(walls[name])
        calls = ", ".join(f"{w:.1f}" for w in walls[name])
        print(f"| {name} | {calls} | {tokens} | {tokens / best:.1f} | {best / first:.2f} |")
    base = args.backends[0]

    def head(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"][:16]

    for name in args.backends[1:]:
        same = sum(a == b for a, b in zip(answers[base], answers[name], strict=True))
        start = sum(head(a) == head(b) for a, b in zip(answers[base], answers[name], strict=True))
        print(f"{name} against {base}: identical answers {same}/{args.n}; identical first 16 tokens {start}/{args.n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
