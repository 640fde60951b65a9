#!/usr/bin/env bash
# The capacity report on a CUDA machine, in one command, within 10 minutes:
#
#   bash bench/gpu.sh                       # after `bash scripts/install.sh` (CUDA 12 + cuDNN 9 present)
#   EVAL=../shared/eval bash bench/gpu.sh   # Mandarin from an eval set instead of the bundled English
#
# Runs `tingxie bench` on device cuda twice — int8_float16, then float16 (the GPU default,
# so the plan `tingxie serve` takes from TINGXIE_HOME is the default compute type's) —
# sweeping batch sizes 8,16,32 × 1,2 instances per device, with paced streams up to 32 and
# 16 concurrent short requests. The serial reference runs once (float16). Reports:
# bench/results/capacity-gpu-<compute type>.{md,json,html}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${OUT:-bench/results}
# CTranslate2 loads cuBLAS/cuDNN for CUDA 12; take them from NVIDIA's wheels when installed there
LIBS=$("$PY" - <<'PY' 2>/dev/null || true
import os
dirs = []
for m in ("nvidia.cublas.lib", "nvidia.cudnn.lib"):
    try:
        mod = __import__(m, fromlist=["_"])
        dirs.append(os.path.dirname(mod.__file__) if mod.__file__ else list(mod.__path__)[0])
    except Exception:
        pass
print(":".join(dirs))
PY
)
[ -n "$LIBS" ] && export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$PY" -c 'import ctranslate2, sys; n = ctranslate2.get_cuda_device_count(); sys.exit(0 if n else "no CUDA device visible to CTranslate2: see the README (CUDA)")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
COMMON=(bench -q --device cuda --files 16 --duration 60 --repeats 2 --reference-runs 2
  --batch-sizes 8,16,32 --instances 1,2 --streams 4,16,32 --stream-seconds 10
  --concurrency 4,16 --slo-ms 1000 ${EVAL:+--eval-set "$EVAL"})
timeout 290 "$PY" -m tingxie "${COMMON[@]}" --compute-type int8_float16 --no-reference \
  --report "$OUT/capacity-gpu-int8_float16.html"
timeout 290 "$PY" -m tingxie "${COMMON[@]}" --compute-type float16 \
  --report "$OUT/capacity-gpu-float16.html"
head -8 "$OUT/capacity-gpu-float16.md"
