#!/usr/bin/env bash
# Table 6 on the tiny world: one SynPO iteration from pi_0 with each prompt source (SynPO's generator, Self-Instruct,
# the world's own "manual" tasks), 3 seeds each, with the diversity of each source's prompts; then the report.
# Usage: bash sweeps/tiny_table6.sh [more overrides]   -> multirun/tiny_table6/..., report in reports/tiny_table6
set -euo pipefail
PY=${PYTHON:-python}
"$PY" run.py -m experiment=tiny_synpo method.iterations=1 method.prompt_source=generator,self_instruct,manual \
  method.manual_prompts=tinyworld seed=0,1,2 'eval=[validation,winrate,diversity,tinyharness]' \
  hydra.sweep.dir=multirun/tiny_table6 logger.mode=offline "$@"
"$PY" -m synpo.report multirun/tiny_table6/*/ --out reports/tiny_table6
