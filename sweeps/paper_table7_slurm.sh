#!/usr/bin/env bash
# Table 7 at paper scale (Llama3-Base): Seed SFT, Seed PO and Seed SFT + PO, one round each, one SLURM job (8 GPUs)
# per ablation; SynPO's row is the Table 2 sweep's Llama3 run.
#   bash sweeps/paper_table7_slurm.sh hydra.launcher.partition=gpu data.path=... data.keyword_corpus=...
# Then: python -m synpo.report multirun/table7/*/ multirun/table2/experiment=llama3_synpo*/ --out reports/table7
exec "${PYTHON:-python}" run.py -m hydra/launcher=slurm experiment=llama3_synpo method=seed_sft,seed_po,seed_sft_po \
  method.iterations=1 'eval=[validation,export]' hydra.sweep.dir=multirun/table7 "$@"
