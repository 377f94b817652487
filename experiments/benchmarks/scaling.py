"""One SynPO iteration of the main job at 1x, 2x and 4x the work: time linear, peak memory flat.

    python experiments/benchmarks/scaling.py [--factors 1 2 4] [extra overrides...]

Each point is a fresh `python run.py method.iterations=1` with ``method.n_prompts`` and
``method.pairs_per_iteration`` multiplied by the factor (600 and 400 at 1x). Printed per point: iteration 1's stage
seconds (the stages whose work grows with the factor, and those that do not), its model arithmetic
(``synpo.compute``), and the whole process's peak resident memory (``ru_maxrss`` of the child). The linearity check
fits ``seconds = a + b x factor`` through the 1x and 4x points of the growing stages and gives the 2x point's
deviation from that line, and each point's seconds per GFLOP; memory is given as a ratio to the 1x point.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BASE = {"method.n_prompts": 600, "method.pairs_per_iteration": 400}
FIXED = {"improver", "seed_policy"}  # iteration 1's stages whose work does not depend on n_prompts


def run_point(factor: int, extra: list[str]) -> dict:
    """One fresh run at ``factor``; its iteration-1 row and the child's peak RSS in MiB."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        overrides = [f"{k}={v * factor}" for k, v in BASE.items()]
        cmd = [
            sys.executable,
            "run.py",
            "method.iterations=1",
            "logger=none",
            *overrides,
            f"run_dir={run_dir}",
            f"hydra.run.dir={run_dir}/.hydra_out",
            *extra,
        ]
        # A fresh child per point: ru_maxrss of RUSAGE_CHILDREN is the largest child so far, so each point runs in
        # its own grandchild and reports its own maximum.
        probe = (
            "import resource,subprocess,sys; p=subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)"
        )
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", probe, *cmd], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"run at {factor}x failed:\n{proc.stderr[-4000:]}")
        row = json.loads((run_dir / "results.json").read_text())["iterations"][1]
    rss_mib = int(proc.stderr.strip().splitlines()[-1]) / 1024
    return {"factor": factor, "wall": wall, "row": row, "rss_mib": rss_mib}


def main() -> None:
    from synpo.compute import flops, model_shape
    from synpo.modeling import resolve_model_path

    args = sys.argv[1:]
    factors = [1, 2, 4]
    if args[:1] == ["--factors"]:
        factors = [int(x) for x in args[1:] if x.isdigit()]
        args = [x for x in args[1:] if not x.isdigit()]
    shape = model_shape(resolve_model_path("builtin:tiny-sft"))
    points = [run_point(f, args) for f in factors]
    kinds = sorted({k for p in points for k in p["row"]["seconds"]})
    print(
        "| factor | n_prompts | pairs kept | "
        + " | ".join(kinds)
        + " | growing s | growing GFLOP | s/GFLOP | peak RSS MiB |"
    )
    print("|---" * (len(kinds) + 7) + "|")
    for p in points:
        secs = p["row"]["seconds"]
        p["growing"] = sum(v for k, v in secs.items() if k not in FIXED)
        p["gflop"] = sum(flops(c, shape) for k, c in p["row"]["compute"].items() if k not in FIXED) / 1e9
        print(
            f"| {p['factor']}x | {p['row'].get('n_prompts')} | {p['row'].get('n_pairs_kept')} | "
            + " | ".join(f"{secs.get(k, 0.0):.1f}" for k in kinds)
            + f" | {p['growing']:.1f} | {p['gflop']:.0f} | {p['growing'] / p['gflop']:.4f} | {p['rss_mib']:.0f} |"
        )
    lo, hi = points[0], points[-1]
    b = (hi["growing"] - lo["growing"]) / (hi["factor"] - lo["factor"])
    a = lo["growing"] - b * lo["factor"]
    for p in points[1:-1]:
        line = a + b * p["factor"]
        print(
            f"linearity: the {p['factor']}x point is {p['growing']:.1f}s against {line:.1f}s on the line through "
            f"{lo['factor']}x and {hi['factor']}x ({(p['growing'] - line) / line:+.1%}); intercept {a:.1f}s"
        )
    print("peak RSS against 1x: " + ", ".join(f"{p['factor']}x {p['rss_mib'] / lo['rss_mib']:.2f}" for p in points))


if __name__ == "__main__":
    main()
