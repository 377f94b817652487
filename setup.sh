#!/usr/bin/env bash
# Creates ./.venv (or $VENV) with the CPU build of torch 2.13.0 and synpo (editable) with its dev tools.
# torch is pinned first: an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e ".[dev]"
echo "synpo is installed in $VENV"
