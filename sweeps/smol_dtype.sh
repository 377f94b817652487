#!/usr/bin/env bash
# SmolLM2 in bf16 against float32 (issue 25 item 3; LOG 2026-12-06, fourth session): experiment=smol_synpo at each
# dtype and seed, one run at a time (the wall times are compared), each through the floor benchmark, which prints
# per-stage wall seconds against the matmul peak of both dtypes measured in the same run. Then the report.
# Both dtypes run today's code and config. The target compares bf16 with float32 as it was before the bf16
# work (2 x 8 batches, candidates in turn, 48 answers a loop: commit ec3327b, from a git worktree): LOG 2026-12-07
# (third session) has those commands.
#   bash sweeps/smol_dtype.sh [seeds...]      (default: 0 1; about 20 + 13 minutes a seed on 2 cores)
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-multirun/smol_dtype}
mkdir -p "$OUT"
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1)
for seed in "${seeds[@]}"; do
  for dtype in bfloat16 float32; do
    run="$OUT/${dtype}_s$seed"
    [ -f "$run/results.json" ] && continue   # finished earlier
    rm -rf "$run"                            # the benchmark times fresh runs only
    "$PY" experiments/benchmarks/main_job.py --keep "$run" experiment=smol_synpo model.dtype="$dtype" seed="$seed" \
      logger=none | tee "$OUT/${dtype}_s$seed.txt"
  done
done
"$PY" -m synpo.report "$OUT"/*/ --out reports/smol_dtype
