#!/usr/bin/env bash
# Table 6 at paper scale (Llama3-Base, one iteration, 20k prompts): SynPO's self-prompt generator vs Self-Instruct vs
# the manual UltraFeedback prompts, one SLURM job (8 GPUs) per source, each with the prompt-diversity metric.
# Needs MANUAL_PROMPTS=<UltraFeedback prompts as JSONL of {prompt}> and the data overrides, e.g.
#   MANUAL_PROMPTS=data/uf_prompts.jsonl bash sweeps/paper_table6_slurm.sh hydra.launcher.partition=gpu data.path=...
# Then: python -m synpo.report multirun/table6/*/ --out reports/table6
set -euo pipefail
: "${MANUAL_PROMPTS:?set MANUAL_PROMPTS to a JSONL of UltraFeedback prompts ({prompt} per line)}"
exec "${PYTHON:-python}" run.py -m hydra/launcher=slurm experiment=llama3_synpo method.iterations=1 \
  method.n_prompts=20000 method.prompt_source=generator,self_instruct,manual method.manual_prompts="$MANUAL_PROMPTS" \
  'eval=[validation,diversity,export]' hydra.sweep.dir=multirun/table6 "$@"
