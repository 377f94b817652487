#!/usr/bin/env bash
# Table 2 at paper scale, one SLURM job (8 GPUs) per point:
#   - Mistral-Base: SynPO, Sampling-Ranking and Self-Rewarding (4 iterations, SynPO's prompts);
#   - Mistral-Base and Llama3-Base: SynPO (the Llama3 baselines are not in the paper), and the Manual row (SimPO on
#     UltraFeedback binarized, one round).
# Needs PREFERENCES=<UltraFeedback binarized as JSONL of {prompt, chosen, rejected}> and the data overrides, e.g.
#   PREFERENCES=data/uf_binarized.jsonl bash sweeps/paper_table2_slurm.sh hydra.launcher.partition=gpu \
#     data.path=data/ultrafeedback_gpt4turbo.jsonl data.keyword_corpus=data/keyword_corpus.txt
# Then: python -m synpo.report multirun/table2/*/ --out reports/table2
set -euo pipefail
: "${PREFERENCES:?set PREFERENCES to the UltraFeedback binarized JSONL (prompt, chosen, rejected)}"
PY=${PYTHON:-python}
"$PY" run.py -m hydra/launcher=slurm experiment=mistral_synpo method=synpo_paper,sampling_ranking_paper,self_rewarding_paper \
  hydra.sweep.dir=multirun/table2 "$@"
"$PY" run.py -m hydra/launcher=slurm experiment=llama3_synpo hydra.sweep.dir=multirun/table2 "$@"
"$PY" run.py -m hydra/launcher=slurm experiment=mistral_synpo,llama3_synpo method=offline method.iterations=1 \
  method.preference_file="$PREFERENCES" hydra.sweep.dir=multirun/table2 "$@"
