"""SmolLM2's generation through the HF decode loop against vLLM on CPU (issue 25 item 3): the same prompts (the
tiny world's tasks, as smol_synpo's validation asks them), greedy, the same token budget, in the same process and
dtype. Prints each backend's wall seconds (vLLM's includes its engine start, as a stage pays it) and answer tokens
per second, and greedy parity: the share of answers identical across backends, and of those that agree on their
first 16 tokens. Run it on a quiet machine; both backends use every core.

    python experiments/benchmarks/smol_generation.py [--n 64] [--max-new-tokens 96] [--dtype bfloat16]
        [--vllm-python .venv-vllm/bin/python]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

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
    args = ap.parse_args(argv)
    model = resolve_model_path("builtin:smollm2-135m-instruct")
    prompts = [t.prompt for t in sample_distinct_tasks(random.Random(0), args.n)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=args.max_new_tokens, seed=0)
    backends = {
        "hf": HFGenerator(batch_size=48, dtype=args.dtype),
        "vllm": VLLMGenerator(
            python=args.vllm_python, gpu_memory_utilization=0.1, enforce_eager=True, dtype=args.dtype
        ),
    }
    tok = load_tokenizer(model)
    answers, rows = {}, []
    for name, gen in backends.items():
        t0 = time.perf_counter()
        out = gen.generate(model, prompts, greedy)
        wall = time.perf_counter() - t0
        tokens = sum(len(tok(str(a), add_special_tokens=False)["input_ids"]) for a in out)
        answers[name] = [str(a) for a in out]
        rows.append((name, wall, tokens, tokens / wall))
    print(f"SmolLM2-135M-Instruct, {args.n} prompts, greedy, {args.max_new_tokens} new tokens, {args.dtype}")
    print("| backend | wall s | answer tokens | tokens/s |")
    print("|---|---|---|---|")
    for name, wall, tokens, rate in rows:
        print(f"| {name} | {wall:.1f} | {tokens} | {rate:.1f} |")
    same = sum(a == b for a, b in zip(answers["hf"], answers["vllm"], strict=True))

    def head(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"][:16]

    start = sum(head(a) == head(b) for a, b in zip(answers["hf"], answers["vllm"], strict=True))
    print(f"\nidentical answers: {same}/{args.n}; identical first 16 tokens: {start}/{args.n}")
    print(f"vllm / hf wall: {rows[1][1] / rows[0][1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
