#!/usr/bin/env bash
# Tiny world: the verifier's pair threshold.
exec "${PYTHON:-python}" run.py -m experiment=tiny_synpo scorer.threshold=0.05,0.1,0.2,0.3 "$@"
