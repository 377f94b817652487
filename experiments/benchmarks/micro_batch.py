"""A real model's training jobs at one batch per update against micro-batches with gradient accumulation: peak
resident memory and wall time, each setting in a fresh process.

    python experiments/benchmarks/micro_batch.py RUN_DIR [--model builtin:smollm2-135m-instruct] [--steps 4]
        [--settings 16x1 4x4 2x8] [--dtype bfloat16] [--jobs sft simpo] [--optimizer adamw_torch] [--profile N]

``RUN_DIR`` is a finished SynPO run on that model (``experiment=smol_synpo``): its seed prompts, iteration 1's
seed-policy drafts and the kept pairs are the jobs' data, so sequence lengths are a real model's. Each setting
``BxA`` trains ``--steps`` updates of B x A examples (B per forward, A accumulated), the SFT job on the improver's
examples and the SimPO job on the pairs. Printed per job: the peak RSS (``VmHWM`` of the child) and the trainer's
``train_runtime``, and both as ratios to the first setting measured in the same run. The final training loss is
printed too: accumulation over micro-batches of one update must leave it unchanged. ``--profile N`` runs each job
under torch.profiler and prints its N costliest operators (self CPU time); the profiler slows the job, so time
without it.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys
from pathlib import Path
from synpo import memory
from synpo.artifacts import read_jsonl
from synpo.prompts import improver_prompt
from synpo.training.common import HParams
from synpo.training.launch import job_function
run, kind, model, b, a, steps, out, dtype, profile, optim = sys.argv[1:11]
run = Path(run)
hp = HParams(learning_rate=5e-5, max_steps=int(steps), batch_size=int(b), grad_accum=int(a), warmup_ratio=0.0,
             max_length=384, max_prompt_length=256, seed=0, dtype=dtype,
             optimizer=optim)
profiler = None
if profile != "0":
    import torch.profiler
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    profiler.__enter__()
if kind == "sft":
    seeds, drafts = read_jsonl(run / "seed" / "train.jsonl"), read_jsonl(run / "iter_1" / "seed_policy.jsonl")
    examples = [{"prompt": improver_prompt(s["prompt"], d["response"]), "completion": s["answer"]}
                for s, d in zip(seeds, drafts, strict=True)]
    res = job_function("sft")(out_dir=Path(out), model_path=model, examples=examples, hp=hp)
else:
    pairs = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for f in sorted(run.glob("iter_*/pairs.jsonl"))
             for p in read_jsonl(f)]
    res = job_function("simpo")(out_dir=Path(out), model_path=model, pairs=pairs, hp=hp, beta=2.0, gamma=1.6)
if profiler is not None:
    profiler.__exit__(None, None, None)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=int(profile)), file=sys.stderr)
peak = memory.peak_mib()
print("RESULT " + json.dumps({"peak_mib": peak, "runtime": res["train_seconds"], "loss": res["train_loss"]}))
"""


def measure(
    run_dir: str, kind: str, model: str, setting: str, steps: int, dtype: str, profile: int, optim: str
) -> dict:
    b, a = setting.split("x")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-c",
            CHILD,
            run_dir,
            kind,
            model,
            b,
            a,
            str(steps),
            str(Path(tmp) / "out"),
            dtype,
            str(profile),
            optim,
        ]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if profile:
        print(proc.stderr[proc.stderr.find("-----") :], file=sys.stderr)
    if proc.returncode != 0 or not lines:
        sys.exit(f"{kind} at {setting} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--settings", nargs="+", default=["16x1", "4x4", "2x8"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the model's dtype")
    ap.add_argument("--jobs", nargs="+", default=["sft", "simpo"], choices=["sft", "simpo"])
    ap.add_argument("--optimizer", default="adamw_torch", help="a transformers optimizer name")
    ap.add_argument("--profile", type=int, default=0, help="print torch.profiler's N costliest operators per job")
    args = ap.parse_args()
    if not (Path(args.run_dir) / "iter_1" / "seed_policy.jsonl").is_file():
        sys.exit(f"{args.run_dir}: not a finished SynPO run (no iter_1/seed_policy.jsonl); run experiment=smol_synpo")
    print("| job | per forward x accumulated | peak RSS MiB | x first | train_runtime s | x first | train_loss |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.jobs:
        first = None
        for setting in args.settings:
            r = measure(args.run_dir, kind, args.model, setting, args.steps, args.dtype, args.profile, args.optimizer)
            first = first or r
            print(
                f"| {kind} | {setting} | {r['peak_mib']:.0f} | {r['peak_mib'] / first['peak_mib']:.2f} "
                f"| {r['runtime']:.1f} | {r['runtime'] / first['runtime']:.2f} | {r['loss']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
