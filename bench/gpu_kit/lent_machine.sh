#!/usr/bin/env bash
# The one command on the lent GPU machine (docs/gpu-kit.md): unpack what it lacks from .gpu-kit/ (built here by
# `python -m bench.gpu_kit.payload build`, carried with the call), then the kit at full scale. Extra arguments
# go to the kit, e.g. --families hunyuan_video --json "$OUT/gpu_kit.json".
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
unpacked="$("$PYTHON" -m bench.gpu_kit.payload unpack)"
echo "payload: $unpacked"
comfyui="$("$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])["comfyui"])' "$unpacked")"
site="$("$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])["site"])' "$unpacked")"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export HV_COMFYUI_PATH="$comfyui"
exec "$PYTHON" -m bench.gpu_kit --scale full "$@"
