#!/usr/bin/env bash
# The GPU smoke check (experiments/benchmarks/gpu_smoke.py) on a machine with one GPU, no internet and no vLLM.
#
#   bash experiments/benchmarks/gpu_smoke.sh prepare   # here: the wheels (.whl/) and SmolLM2's shape (.carry/smol)
#   bash experiments/benchmarks/gpu_smoke.sh           # there, with .whl and .carry carried: install, then run
#
# The machine's image has python3 3.12 with torch, accelerate, tokenizers, safetensors, scipy and psutil; what synpo
# needs beyond them travels as wheels (about 20 MiB: transformers and accelerate at the versions CI tests, TRL,
# DeepSpeed built here as a pure-Python wheel, Hydra and OmegaConf, datasets and their small dependencies).
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=(
  transformers==5.25.0 accelerate==1.16.0 trl==1.16.0 datasets==5.2.0 hydra-core==1.3.8 omegaconf==2.3.1
  dill==0.4.1 multiprocess==0.70.19 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 hjson==3.1.0
)
if [[ "${1:-run}" == "prepare" ]]; then
  grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
  grep -qx '/.carry/' .git/info/exclude || echo /.carry/ >> .git/info/exclude
  PY=${PYTHON:-.venv/bin/python}
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  # Source-only on PyPI: built here into pure-Python wheels (DeepSpeed's ops compile at run time, and none is used).
  DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.8 antlr4-python3-runtime==4.9.3
  "$PY" experiments/benchmarks/gpu_smoke.py prepare .carry/smol
  du -sh .whl .carry
  exit 0
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 -c "import torch, transformers, trl, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'deepspeed', deepspeed.__version__, 'cuda', torch.cuda.is_available())"
mkdir -p "${OUT:-gpu_smoke_out}"  # the plan's activation model under CUDA's attention kernel (about a minute)
python3 experiments/benchmarks/activation_bytes.py --device cuda | tee "${OUT:-gpu_smoke_out}/activation_bytes.md" || true
exec python3 experiments/benchmarks/gpu_smoke.py run .carry/smol --out "${OUT:-gpu_smoke_out}" "${@:2}"
