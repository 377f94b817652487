"""The SPIN-limits study on the tiny world: 4 methods x 3 iterations x seeds, with exact labels from the verifier.

    python experiments/spin_study.py --seeds 0 1 2 --out /tmp/spin_study

Runs `python run.py experiment=tiny_<method> seed=<s>` for each method and seed (resuming finished runs), then prints
one Markdown table per method: per iteration, the label-issue rate (share of pairs whose generated answer the verifier
rates above the SFT answer), swap / noise rates, val_score and val_win_rate against pi_0, as mean and range over seeds.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("spin", "spin_judged", "spin_noised", "spin_adaptive")
COLUMNS = ("label_issue_rate", "swap_rate", "noise_rate", "val_score", "val_score_sampled", "val_win_rate")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/spin_study"))
    args = parser.parse_args()
    results = {}
    for method in METHODS:
        for seed in args.seeds:
            run_dir = args.out / f"{method}_seed{seed}"
            cmd = [
                sys.executable,
                "run.py",
                f"experiment=tiny_{method}",
                f"seed={seed}",
                "logger=none",
                f"run_dir={run_dir}",
                f"hydra.run.dir={run_dir}/.hydra_out",
            ]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
            results[method, seed] = json.loads((run_dir / "results.json").read_text())["iterations"]
    for method in METHODS:
        print(f"\n### {method} (seeds {', '.join(map(str, args.seeds))}: mean [min, max])\n")
        print("| iteration | " + " | ".join(COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 1) + "|")
        n_iter = len(results[method, args.seeds[0]])
        for t in range(n_iter):
            cells = []
            for col in COLUMNS:
                vals = [results[method, s][t].get(col) for s in args.seeds]
                vals = [v for v in vals if v is not None]
                cells.append(f"{statistics.mean(vals):.3f} [{min(vals):.3f}, {max(vals):.3f}]" if vals else "-")
            print(f"| {t} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
