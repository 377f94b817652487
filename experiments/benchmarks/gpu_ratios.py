"""GPU ratios on a randomly initialised Llama built where it runs: SimPO vs DPO training, MFU, ZeRO-3, generation.

    python experiments/benchmarks/gpu_ratios.py --tokenizer DIR [--size 1b] [--steps 16] [--max-new-tokens 2048]

Everything goes through the project's own code (``synpo.training`` trainers, ``run_training_job`` with
``conf/accelerate/zero3.yaml``, ``HFGenerator``); only the model is random, built from ``--size`` with the
tokenizer in ``--tokenizer`` (any HF tokenizer directory with a chat template, e.g. the converted SmolLM2's).

Printed, each measured in this run on this machine:
- ``peak``: an 8192^3 bf16 matmul's TFLOP/s: every MFU is given against it and against ``--spec-tflops``
  (H100 SXM dense bf16: 989).
- ``simpo`` / ``dpo``: the same pairs in the same batches through ``build_simpo_trainer`` / ``build_dpo_trainer``;
  steady-state pairs/s over the steps after ``--warmup-steps``, and the ratio simpo/dpo. Model FLOPs follow PaLM's
  convention (6 x matmul parameters per trained token + 12 x layers x width x sequence length; DPO adds the
  reference model's forward, 2 x parameters + 4 x layers x width x length); activation recomputation is not counted.
- ``zero3``: the SimPO job under ``accelerate launch`` with DeepSpeed ZeRO-3 and gradient checkpointing on; tokens/s
  over the trainer's whole ``train_runtime`` (warm-up steps included); then the saved model is reloaded with
  ``from_pretrained`` (every tensor's shape checked against the built model) and generates.
- ``generation``: ``HFGenerator`` at the paper's sampling (temperature 0.7, top_p 1.0, batch 64) for
  ``--max-new-tokens``; tokens/s with the model load subtracted (the load is timed separately).

``--size tiny`` runs the same steps on CPU in about a minute (the numbers then mean nothing; it checks the script).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SIZES = {  # TinyLlama-1.1B's shape (with the tokenizer's vocabulary), and a CPU smoke size
    "1b": dict(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4
    ),
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    ),
}


def build_model(size: str, tokenizer_dir: Path, out: Path, max_length: int) -> dict:
    """A random Llama of ``size`` saved (bf16 on GPU) with the tokenizer; returns its shape for the FLOP count."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        max_position_embeddings=max(4096, max_length),
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **SIZES[size],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "matmul_params": matmul,
        "layers": cfg.num_hidden_layers,
        "width": cfg.hidden_size,
        "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
    }


def make_pairs(tokenizer_dir: Path, n: int, prompt_tokens: int, response_tokens: int) -> list[dict]:
    """``n`` pairs of random text: each prompt about ``prompt_tokens`` tokens, each response about ``response_tokens``."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    rng = random.Random(0)
    ids = [i for i in range(len(tok)) if i not in set(tok.all_special_ids)]

    def text(k: int) -> str:
        return tok.decode([rng.choice(ids) for _ in range(k)])

    return [
        {"prompt": text(prompt_tokens), "chosen": text(response_tokens), "rejected": text(response_tokens)}
        for _ in range(n)
    ]


def sequence_lengths(tokenizer_dir: Path, pairs: list[dict], max_length: int) -> list[int]:
    """The lengths of the 2 sequences per pair that training runs (chat-rendered prompt + response, capped)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    lengths = []
    for p in pairs:
        for side in ("chosen", "rejected"):
            chat = [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p[side]}]
            lengths.append(min(max_length, len(tok.apply_chat_template(chat, tokenize=True, return_dict=False))))
    return lengths


def flops(shape: dict, lengths: list[int], passes: float) -> float:
    """Model FLOPs of ``passes`` x forward over sequences of ``lengths`` (training = 3 passes, PaLM's convention)."""
    n, lw = shape["matmul_params"], shape["layers"] * shape["width"]
    return passes * sum(2 * n * t + 4 * lw * t * t for t in lengths)


def peak_tflops(device: str) -> float:
    """This device's bf16 (GPU) or fp32 (CPU) matmul throughput, measured now."""
    import torch

    n, dtype = (8192, torch.bfloat16) if device == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


class StepClock:
    """A TrainerCallback that keeps the wall time of every optimizer step's end."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self

        class _CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                clock.times.append(time.perf_counter())

        self.times: list[float] = []
        self.callback = _CB()


def train_rate(kind: str, model_dir: Path, pairs: list[dict], work: Path, hp, warmup: int) -> dict:
    """Steady-state steps/s of the project's SimPO or DPO trainer on ``pairs`` (steps after ``warmup``)."""
    from synpo.training.dpo import build_dpo_trainer
    from synpo.training.simpo import build_simpo_trainer

    work.mkdir(parents=True, exist_ok=True)
    if kind == "simpo":
        trainer, _ = build_simpo_trainer(str(model_dir), pairs, work, hp, beta=2.0, gamma=1.6)
    else:
        trainer, _ = build_dpo_trainer(str(model_dir), str(model_dir), pairs, work, hp, beta=0.1)
    clock = StepClock()
    trainer.add_callback(clock.callback)
    trainer.train()
    del trainer
    _free()
    times = clock.times[warmup:]
    steps = len(times) - 1
    if steps < 1:
        raise SystemExit(f"--steps must exceed --warmup-steps + 1 ({kind} ran {len(clock.times)} steps)")
    return {
        "steps_timed": steps,
        "seconds": times[-1] - times[0],
        "pairs_per_s": steps * hp.batch_size * hp.grad_accum / (times[-1] - times[0]),
    }


def zero3_job(model_dir: Path, pairs: list[dict], out: Path, hp) -> dict:
    """The SimPO job as ``run.py`` launches it under ``launch.accelerate_config=zero3``, one process per GPU here."""
    from omegaconf import OmegaConf

    from synpo.training.launch import run_training_job

    launch = OmegaConf.create(
        {
            "launcher": "accelerate",
            "accelerate_config": "zero3",
            "num_processes": 1,
            "devices": None,
            "concurrent_candidates": False,
        }
    )
    t0 = time.perf_counter()
    result = run_training_job("simpo", out, launch, model_path=str(model_dir), pairs=pairs, hp=hp, beta=2.0, gamma=1.6)
    result["wall_s"] = time.perf_counter() - t0
    return result


def zero3_rate(model_dir: Path, pairs: list[dict], args, hp, shape: dict, report_rate) -> dict:
    """Steady-state pairs/s of the ZeRO-3 job: two jobs of ``--steps // 3`` and ``--steps`` steps, their
    ``train_runtime`` difference over their step difference (start-up and warm-up cancel out)."""
    from synpo.training.common import HParams

    short = max(1, args.steps // 3)
    runs = {}
    for steps in (short, args.steps):
        n = steps * args.batch_size
        runs[steps] = zero3_job(
            model_dir, pairs[:n], args.work / f"zero3_{steps}", HParams(**{**hp.__dict__, "max_steps": steps})
        )
    extra = (args.steps - short) * args.batch_size
    z = report_rate(extra / (runs[args.steps]["train_seconds"] - runs[short]["train_seconds"]))
    res = runs[args.steps]
    z.update(jobs=runs, reload=reload_check(args.work / f"zero3_{args.steps}", shape, args.tokenizer))
    print(
        f"zero3: stage {res['deepspeed_zero_stage']}, jobs of {short} and {args.steps} steps, train_runtime "
        f"{runs[short]['train_seconds']:.1f}s and {res['train_seconds']:.1f}s, job wall {res['wall_s']:.0f}s; "
        f"reload: {z['reload']}"
    )
    return z


def reload_check(out: Path, shape: dict, tokenizer_dir: Path) -> dict:
    """The ZeRO-3 save reloads with ``from_pretrained``, has every tensor at the built shape, and generates."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16 if torch.cuda.is_available() else None)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    bad = sorted(k for k in shape["shapes"] if got.get(k) != shape["shapes"][k])
    empty = sorted(k for k, v in model.state_dict().items() if v.numel() == 0 or not torch.isfinite(v).all())
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ids = tok("Hello", return_tensors="pt").input_ids.to(device)
    gen = model.to(device).generate(ids, max_new_tokens=8, do_sample=False)
    return {
        "tensors": len(got),
        "wrong_shape": bad,
        "empty_or_nonfinite": empty,
        "generated_tokens": int(gen.shape[1] - ids.shape[1]),
    }


def generation_rate(model_dir: Path, prompts: list[str], max_new_tokens: int, tokenizer_dir: Path) -> dict:
    """``HFGenerator`` tokens/s at the paper's sampling, the model load (timed apart) subtracted."""
    import torch
    from transformers import AutoTokenizer

    from synpo.generation.hf import HFGenerator
    from synpo.generation.protocol import SamplingParams
    from synpo.modeling import load_causal_lm

    dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    t0 = time.perf_counter()
    load_causal_lm(str(model_dir), dtype).to("cuda" if torch.cuda.is_available() else "cpu")
    load_s = time.perf_counter() - t0
    gen = HFGenerator(batch_size=64, shard_size=len(prompts), dtype=dtype)
    sampling = SamplingParams(temperature=0.7, top_p=1.0, max_new_tokens=max_new_tokens, seed=0)
    t0 = time.perf_counter()
    out = gen.generate(str(model_dir), prompts, sampling)
    seconds = time.perf_counter() - t0 - load_s
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokens = sum(len(tok(c, add_special_tokens=False).input_ids) for c in out)
    return {
        "prompts": len(prompts),
        "tokens": tokens,
        "truncated": sum(c.truncated for c in out),
        "load_s": load_s,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--size", choices=sorted(SIZES), default="1b")
    ap.add_argument("--work", type=Path, default=Path("/tmp/synpo_gpu_ratios"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--response-tokens", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=2048)
    ap.add_argument("--gen-prompts", type=int, default=64)
    ap.add_argument("--spec-tflops", type=float, default=989.0)
    ap.add_argument("--skip", nargs="*", default=[], choices=["simpo", "dpo", "simpo_gc", "zero3", "generation"])
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    if not (args.tokenizer / "tokenizer_config.json").is_file():
        ap.error(
            f"--tokenizer {args.tokenizer}: no tokenizer_config.json there. Give an HF tokenizer directory with a "
            "chat template, e.g. the converted SmolLM2's (bash setup.sh --smol; python run.py model=smollm2_135m "
            "converts it into $SYNPO_CACHE/models/smollm2-135m-instruct)."
        )
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def run(args) -> dict:
    import torch

    from synpo.training.common import HParams

    device = "cuda" if torch.cuda.is_available() else "cpu"
    max_length = args.prompt_tokens + args.response_tokens + 32
    model_dir = args.work / "model"
    shape = build_model(args.size, args.tokenizer, model_dir, max_length)
    pairs = make_pairs(args.tokenizer, args.batch_size * args.steps, args.prompt_tokens, args.response_tokens)
    lengths = sequence_lengths(args.tokenizer, pairs, max_length)
    per_pair = {"train": flops(shape, lengths, 3) / len(pairs), "ref": flops(shape, lengths, 1) / len(pairs)}
    peak = peak_tflops(device)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(
        f"device: {name}; model: random Llama {args.size}, {shape['params'] / 1e9:.3f}B parameters "
        f"({shape['matmul_params'] / 1e9:.3f}B in matmuls); {len(lengths) / len(pairs):.0f} sequences per pair, "
        f"mean {sum(lengths) / len(lengths):.0f} tokens; measured matmul peak {peak:.3g} TFLOP/s"
    )
    report = {
        "device": name,
        "size": args.size,
        "shape": {k: v for k, v in shape.items() if k != "shapes"},
        "peak_tflops": peak,
        "mean_tokens": sum(lengths) / len(lengths),
    }
    hp = HParams(
        learning_rate=1e-6,
        max_steps=args.steps,
        batch_size=args.batch_size,
        warmup_ratio=0.1,
        max_length=max_length,
        max_prompt_length=args.prompt_tokens + 16,
        dtype="bfloat16" if device == "cuda" else "float32",
    )

    def mfu_line(label: str, pairs_per_s: float, flops_per_pair: float) -> dict:
        tflops = pairs_per_s * flops_per_pair / 1e12
        tokens = pairs_per_s * sum(lengths) / len(pairs)
        print(
            f"{label}: {pairs_per_s:.2f} pairs/s, {tokens:.0f} tokens/s, {tflops:.1f} model TFLOP/s = MFU "
            f"{tflops / args.spec_tflops:.3f} of the {args.spec_tflops:.0f} spec, {tflops / peak:.3f} of the "
            f"measured matmul peak"
        )
        return {"pairs_per_s": pairs_per_s, "tokens_per_s": tokens, "tflops": tflops}

    gc_hp = HParams(**{**hp.__dict__, "gradient_checkpointing": True})
    for kind, khp in (("simpo", hp), ("dpo", hp), ("simpo_gc", gc_hp)):
        if kind not in args.skip:
            rate = train_rate(kind.split("_")[0], model_dir, pairs, args.work / kind, khp, args.warmup_steps)
            cost = per_pair["train"] + (per_pair["ref"] if kind == "dpo" else 0.0)
            report[kind] = {**rate, **mfu_line(kind, rate["pairs_per_s"], cost), **_memory()}
    if "simpo" in report and "dpo" in report:
        ratio = report["simpo"]["pairs_per_s"] / report["dpo"]["pairs_per_s"]
        report["simpo_over_dpo"] = ratio
        print(f"SimPO / DPO training throughput on the same pairs: {ratio:.2f}x")
    if "zero3" not in args.skip:
        report["zero3"] = zero3_rate(
            model_dir,
            pairs,
            args,
            gc_hp,
            shape,
            lambda r: mfu_line("zero3 (steady state, gradient checkpointing)", r, per_pair["train"]),
        )
    if "generation" not in args.skip:
        prompts = [p["prompt"] for p in pairs][: args.gen_prompts]
        g = generation_rate(model_dir, prompts, args.max_new_tokens, args.tokenizer)
        print(
            f"generation (HF, temperature 0.7, batch 64, max_new_tokens {args.max_new_tokens}): "
            f"{g['tokens_per_s']:.0f} tokens/s ({g['tokens']} tokens in {g['seconds']:.1f}s, load "
            f"{g['load_s']:.1f}s apart, {g['truncated']}/{g['prompts']} hit the limit)"
        )
        report["generation"] = {**g, **_memory()}
    return report


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return {"peak_gib": peak}


if __name__ == "__main__":
    main()
