#!/usr/bin/env bash
# The paper's two settings side by side, one SLURM job each (multirun/<name>/experiment=<setting>/).
exec "${PYTHON:-python}" run.py -m hydra/launcher=slurm experiment=mistral_synpo,llama3_synpo "$@"
