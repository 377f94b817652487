"""Time the README's main job (the default `python run.py`) from a fresh run directory, stage by stage.

    python experiments/benchmarks/main_job.py [extra overrides...]

Prints the wall time of the whole job (process start to exit, imports included), the per-iteration stage seconds
recorded in results.json, and each as a share of the whole job and of the issue's 5-minute budget. The baseline
measured in the same run is the job itself: stage times are printed as ratios to it.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = 300.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "run.py", f"run_dir={run_dir}", f"hydra.run.dir={run_dir}/.hydra_out", *sys.argv[1:]]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"main job failed:\n{proc.stderr[-4000:]}")
        results = json.loads((run_dir / "results.json").read_text())
    rows = results["iterations"]
    stages = sorted({k for r in rows for k in r["seconds"]})
    print(f"command: {' '.join(cmd[1:2] + sys.argv[1:])} (fresh run directory)")
    print(f"wall: {wall:.1f}s = {wall / BUDGET_S:.2f} x the {BUDGET_S:.0f}s budget")
    print("| iteration | val_score | " + " | ".join(stages) + " | sum |")
    print("|---" * (len(stages) + 3) + "|")
    for r in rows:
        secs = [r["seconds"].get(s, 0.0) for s in stages]
        print(
            f"| {r['iteration']} | {r['val_score']:.3f} | "
            + " | ".join(f"{x:.1f}" for x in secs)
            + f" | {sum(secs):.1f} |"
        )
    totals = {s: sum(r["seconds"].get(s, 0.0) for r in rows) for s in stages}
    print(
        "share of wall time: "
        + ", ".join(f"{s} {v / wall:.2f}" for s, v in sorted(totals.items(), key=lambda kv: -kv[1]))
    )
    print(f"overhead (imports, W&B, I/O): {(wall - sum(totals.values())) / wall:.2f}")


if __name__ == "__main__":
    main()
