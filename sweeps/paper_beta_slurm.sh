#!/usr/bin/env bash
# Mistral setting: one SLURM job (8 GPUs) per fixed beta, selection off. Set the partition for your cluster:
#   bash sweeps/paper_beta_slurm.sh hydra.launcher.partition=gpu data.path=... data.keyword_corpus=...
exec "${PYTHON:-python}" run.py -m hydra/launcher=slurm experiment=mistral_synpo trainer.beta=2,4,6,8,10,12 "$@"
