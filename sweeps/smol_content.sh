#!/usr/bin/env bash
# SmolLM2, the content study (issue 24 item 7; LOG 2026-12-07, second session): the paper's choices against each
# option of docs/methods.md, 2 seeds each. Each option's run directory starts as a copy of the paper's choices' run
# of the same seed, so the stages the option does not change (seed split, pi_0's validation, the generator's SFT,
# iteration 1's prompts and answers) are resumed from it, as rerunning a directory with a changed setting does;
# everything after the first stage the option changes is redone. Then the content/form report.
#   bash sweeps/smol_content.sh [seeds...]      (default: 0 1; about 9 + 4 x 6 minutes a seed on 2 cores)
set -euo pipefail
PY=${PYTHON:-python}
OUT=${OUT:-multirun/smol_content}
mkdir -p "$OUT"
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1)
options=(
  "copy method.improver_right_drafts=copy"
  "previous method.rejected=previous"
  "valexact trainer.select_on=val_exact"
  "right method.chosen_content=right"
  "seedpairs method.seed_pairs=100"
)
groups=()
for seed in "${seeds[@]}"; do
  "$PY" run.py experiment=smol_synpo seed="$seed" logger=none run_dir="$OUT/paper_s$seed"
  groups+=("paper=$OUT/paper_s$seed")
  for option in "${options[@]}"; do
    read -r name setting <<< "$option"
    run="$OUT/${name}_s$seed"
    [ -d "$run" ] || cp -a "$OUT/paper_s$seed" "$run"
    "$PY" run.py experiment=smol_synpo seed="$seed" "$setting" logger=none run_dir="$run"
    groups+=("$name=$run")
  done
done
"$PY" experiments/tiny_world_content.py "${groups[@]}"
