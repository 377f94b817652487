#!/usr/bin/env bash
# Table 2 on the tiny world: SynPO, Sampling-Ranking, Self-Rewarding (4 iterations each) and the Manual row
# (offline, one round), 3 seeds each, one after another on this machine; then the report with the paper's rows.
# Usage: bash sweeps/tiny_table2.sh [more overrides]   -> multirun/tiny_table2/<overrides>/, report in reports/tiny_table2
set -euo pipefail
PY=${PYTHON:-python}
"$PY" run.py -m experiment=tiny_synpo,tiny_sampling_ranking,tiny_self_rewarding,tiny_offline seed=0,1,2 \
  'eval=[validation,winrate,diversity,tinyharness]' hydra.sweep.dir=multirun/tiny_table2 logger.mode=offline "$@"
"$PY" -m synpo.report multirun/tiny_table2/*/ --out reports/tiny_table2
