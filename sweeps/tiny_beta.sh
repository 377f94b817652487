#!/usr/bin/env bash
# Tiny world: one run per fixed beta (no selection), one after another on this machine.
# Usage: bash sweeps/tiny_beta.sh [more overrides]   -> multirun/tiny_synpo/trainer.beta=<b>/
exec "${PYTHON:-python}" run.py -m experiment=tiny_synpo trainer.beta=2,4,6,8,10,12 "$@"
