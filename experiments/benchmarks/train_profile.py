"""Where a real model's training step spends its time (issue 25 item 4): one SFT or SimPO job of a finished
SmolLM2 run's data, in a fresh process, under ``torch.profiler`` (CPU activities), with the settings to compare.

    python experiments/benchmarks/train_profile.py RUN_DIR [--kind simpo|sft] [--steps 6] [--dtype bfloat16]
        [--optimizer adamw_torch] [--top 15]

``RUN_DIR`` is a finished ``experiment=smol_synpo`` run (its seed set, drafts and pairs are the data, as in
``micro_batch.py``). Printed: the job's ``train_runtime``, seconds per optimizer step, and the operators with the
most self CPU time, each with its share of the profiled total. Compare settings by running it once per setting on a
quiet machine (``--optimizer adamw_torch_fused``; ``--dtype float32``).
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
import torch
from torch.profiler import ProfilerActivity, profile
from synpo.artifacts import read_jsonl
from synpo.prompts import improver_prompt
from synpo.training.common import HParams
from synpo.training.launch import job_function
run, kind, steps, dtype, optimizer, top, out = sys.argv[1:8]
run = Path(run)
hp = HParams(learning_rate=5e-5, max_steps=int(steps), batch_size=2, grad_accum=8, warmup_ratio=0.0, max_length=384,
             max_prompt_length=256, seed=0, dtype=dtype, optimizer=optimizer)
model = "builtin:smollm2-135m-instruct"
with profile(activities=[ProfilerActivity.CPU]) as prof:
    if kind == "sft":
        seeds, drafts = read_jsonl(run / "seed" / "train.jsonl"), read_jsonl(run / "iter_1" / "seed_policy.jsonl")
        examples = [{"prompt": improver_prompt(s["prompt"], d["response"]), "completion": s["answer"]}
                    for s, d in zip(seeds, drafts, strict=True)]
        res = job_function("sft")(out_dir=Path(out), model_path=model, examples=examples, hp=hp)
    else:
        pairs = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for f in sorted(run.glob("iter_*/pairs.jsonl"))
                 for p in read_jsonl(f)]
        res = job_function("simpo")(out_dir=Path(out), model_path=model, pairs=pairs, hp=hp, beta=2.0, gamma=1.6)
events = prof.key_averages()
total = sum(e.self_cpu_time_total for e in events)
rows = sorted(events, key=lambda e: -e.self_cpu_time_total)[: int(top)]
ops = [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / total, "calls": e.count}
       for e in rows]
print("RESULT " + json.dumps({"runtime": res["train_seconds"], "loss": res["train_loss"], "ops": ops}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--kind", default="simpo", choices=("simpo", "sft"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    ap.add_argument("--optimizer", default="adamw_torch")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", CHILD, a.run_dir, a.kind, str(a.steps), a.dtype, a.optimizer, str(a.top), tmp]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"the job failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    r = json.loads(lines[-1][len("RESULT ") :])
    print(
        f"{a.kind}, {a.steps} steps of 16 examples, {a.dtype}, {a.optimizer}: {r['runtime']:.1f} s "
        f"({r['runtime'] / a.steps:.2f} s a step), final loss {r['loss']:.4f}"
    )
    print("| operator | self s | share | calls |")
    print("|---|---|---|---|")
    for o in r["ops"]:
        print(f"| {o['op']} | {o['self_s']:.2f} | {o['share']:.1%} | {o['calls']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
