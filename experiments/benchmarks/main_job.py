"""Time the README's main job (the default `python run.py`), or any experiment, from a fresh run directory,
against its compute floor.

    python experiments/benchmarks/main_job.py [--keep DIR] [extra overrides...]
    python experiments/benchmarks/main_job.py --keep /tmp/smol_bf16 experiment=smol_synpo model.dtype=bfloat16

Prints the wall time of the whole job (process start to exit, imports included) and, per stage kind, the wall
seconds recorded in results.json beside the stage's **floor**: the model arithmetic the stage did (tokens counted
by the run itself, ``synpo.compute``; the model's shape from its config) divided by this machine's matmul
throughput at the run's dtype (``model.dtype``), measured in the same run (a 2048^3 matmul at torch's default thread
count, best of 5, before and after the job; float32 and bfloat16 both, since a CPU with AMX runs bf16 several times
faster). ``wall / floor`` is how far each stage, and the job, is from that limit at the run's dtype; the job's ratio
against the other dtype's floor is printed too, and the 5-minute budget of the first issue. ``--keep DIR`` runs in
DIR (fresh: it must not exist) and keeps it, for the results.

    OMP_NUM_THREADS=1 python experiments/benchmarks/main_job.py

runs the job and the matmul on one thread: that ratio is how efficiently one core does the job's work, and so the
best ratio any split of the same work across the cores could reach (the floor of n cores is the one-core floor / n).
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BUDGET_S = 300.0


def matmul_flops_per_s(n: int = 2048, reps: int = 5, dtype: str = "float32") -> float:
    """This machine's matmul throughput now in ``dtype``: the best of ``reps`` products of two n x n matrices."""
    import torch

    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def stage_totals(rows: list[dict]) -> tuple[dict, dict]:
    """Seconds and compute per stage kind, summed over the iterations."""
    from synpo.compute import add_compute

    seconds, compute = {}, {}
    for r in rows:
        for k, v in r.get("seconds", {}).items():
            seconds[k] = seconds.get(k, 0.0) + v
        for k, v in (r.get("compute") or {}).items():
            compute[k] = add_compute(compute.get(k), v)
    return seconds, compute


def main() -> None:
    import torch

    from synpo.compute import flops, model_shape
    from synpo.modeling import resolve_model_path

    args = sys.argv[1:]
    keep = None
    if args[:1] == ["--keep"]:
        keep, args = Path(args[1]), args[2:]
        if keep.exists():
            sys.exit(f"--keep {keep}: it exists; the benchmark times a fresh run, so name a new directory")
    dtypes = ("float32", "bfloat16")
    peak_before = {d: matmul_flops_per_s(dtype=d) for d in dtypes}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = keep or Path(tmp) / "run"
        cmd = [sys.executable, "run.py", f"run_dir={run_dir}", f"hydra.run.dir={run_dir}/.hydra_out", *args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"main job failed:\n{proc.stderr[-4000:]}")
        results = json.loads((run_dir / "results.json").read_text())
        config = (run_dir / "config.yaml").read_text()
    peaks = {d: max(peak_before[d], matmul_flops_per_s(dtype=d)) for d in dtypes}
    from omegaconf import OmegaConf

    run_dtype = OmegaConf.create(config).model.dtype
    peak, other = peaks[run_dtype], next(d for d in dtypes if d != run_dtype)
    shape = model_shape(resolve_model_path(OmegaConf.create(config).model.name_or_path))
    seconds, compute = stage_totals(results["iterations"])
    print(f"command: {' '.join(cmd[1:2] + args)} (fresh run directory), torch threads {torch.get_num_threads()}")
    print(
        "matmul throughput measured now (best of before/after the job): "
        + ", ".join(f"{d} {peaks[d] / 1e9:.0f} GFLOP/s" for d in dtypes)
        + f"; the floor below is at the run's dtype, {run_dtype}"
    )
    print(f"model: {shape['matmul_params']:,} matmul parameters, {shape['layers']} layers, width {shape['width']}")
    print("| stage | wall s | GFLOP | floor s | wall / floor |")
    print("|---|---|---|---|---|")
    total_flops = 0.0
    for kind in sorted(seconds, key=lambda k: -seconds[k]):
        f = flops(compute[kind], shape) if kind in compute else 0.0
        total_flops += f
        ratio = f"{seconds[kind] / (f / peak):.1f}" if f else "-"
        print(f"| {kind} | {seconds[kind]:.1f} | {f / 1e9:.0f} | {f / peak:.2f} | {ratio} |")
    floor = total_flops / peak
    print(f"| **job** (process wall) | {wall:.1f} | {total_flops / 1e9:.0f} | {floor:.1f} | **{wall / floor:.1f}** |")
    print(
        f"the job against the {other} floor ({total_flops / peaks[other]:.1f} s): {wall * peaks[other] / total_flops:.1f}"
    )
    print(
        f"stages sum {sum(seconds.values()):.1f}s; overhead outside stages (imports, W&B, I/O) "
        f"{(wall - sum(seconds.values())) / wall:.2f} of wall; wall = {wall / BUDGET_S:.2f} x the {BUDGET_S:.0f}s budget"
    )
    print("val_score by iteration: " + " -> ".join(f"{r['val_score']:.3f}" for r in results["iterations"]))


if __name__ == "__main__":
    main()
