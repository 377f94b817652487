#!/usr/bin/env bash
# Tiny world, the content study (LOG 2026-12-06): which of SynPO's mechanisms loses exact content. The paper's
# choices (improver_right_drafts=filter, rejected=initial) against an improver that keeps right drafts (copy) and
# pairs whose rejected side is pi_{t-1}'s own draft (previous), beta selected on exact content (val_exact), and only
# pairs with a right chosen answer (chosen_content=right), and gold-over-draft seed pairs added (seed_pairs), 3 seeds
# each; then the report with intervals.
set -euo pipefail
PY=${PYTHON:-python}
"$PY" run.py -m experiment=tiny_synpo seed=0,1,2 method.improver_right_drafts=filter,copy \
  method.rejected=initial,previous logger=none hydra.sweep.dir=multirun/tiny_content "$@"
# The third mechanism: beta selected on exact content instead of the form-weighted score (the paper's other choices)
"$PY" run.py -m experiment=tiny_synpo seed=0,1,2 trainer.select_on=val_exact logger=none \
  hydra.sweep.dir=multirun/tiny_content "$@"
# The diagnostic: only pairs whose chosen answer is right in content (an oracle: the verifier's exact), to test
# whether wrong chosen content is what SimPO learns (the paper's other choices)
"$PY" run.py -m experiment=tiny_synpo seed=0,1,2 method.chosen_content=right logger=none \
  hydra.sweep.dir=multirun/tiny_content "$@"
# A remedy to test: pairs that teach content (gold over pi_{t-1}'s own seed answer) added to each iteration's
# candidates (the paper's other choices)
"$PY" run.py -m experiment=tiny_synpo seed=0,1,2 method.seed_pairs=100 logger=none \
  hydra.sweep.dir=multirun/tiny_content "$@"
"$PY" -m synpo.report multirun/tiny_content/*/ --out reports/tiny_content
