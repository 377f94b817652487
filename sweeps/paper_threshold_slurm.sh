#!/usr/bin/env bash
# Mistral setting: PairRM threshold sweep around the paper's 0.20, one SLURM job per value.
exec "${PYTHON:-python}" run.py -m hydra/launcher=slurm experiment=mistral_synpo scorer.threshold=0.1,0.2,0.3 "$@"
