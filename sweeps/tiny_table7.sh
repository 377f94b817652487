#!/usr/bin/env bash
# Table 7 on the tiny world: the seed ablations (Seed SFT, Seed PO, Seed SFT + PO), 3 seeds each, beside SynPO's
# last iteration from the Table 2 sweep when it has run (multirun/tiny_table2); then the report.
# Usage: bash sweeps/tiny_table7.sh [more overrides]   -> multirun/tiny_table7/..., report in reports/tiny_table7
set -euo pipefail
PY=${PYTHON:-python}
"$PY" run.py -m experiment=tiny_synpo method=seed_sft,seed_po,seed_sft_po seed=0,1,2 \
  'eval=[validation,winrate,diversity,tinyharness]' hydra.sweep.dir=multirun/tiny_table7 logger.mode=offline "$@"
"$PY" -m synpo.report multirun/tiny_table7/*/ $(ls -d multirun/tiny_table2/*experiment=tiny_synpo,*/ 2>/dev/null) \
  --out reports/tiny_table7
