#!/usr/bin/env bash
# Build a wheelhouse for an offline (air-gapped) install, on a machine that can reach PyPI:
# the tingxie wheel itself and every wheel it needs, the bundled model's two packages included.
#
#   bash scripts/wheelhouse.sh [DIR]                  # this machine's Python and platform (default DIR: wheelhouse/)
#   PY_VERSION=3.11 PLATFORM=manylinux_2_28_x86_64 bash scripts/wheelhouse.sh DIR   # for another target
#   EXTRAS=postgres,celery CUDA=12 bash scripts/wheelhouse.sh DIR                   # + extras, + CUDA 12 libraries
#
# Copy DIR to the offline machine with this repository, then: WHEELHOUSE=DIR bash scripts/install.sh
# PLATFORM may list several tags, comma-separated (e.g. manylinux_2_28_x86_64,manylinux2014_x86_64);
# for another target every dependency must exist as a wheel for it (pip download --only-binary).
# CUDA=12 adds NVIDIA's cuBLAS and cuDNN 9 wheels (what CTranslate2's CUDA build loads); leave it
# unset for a CPU server or where the CUDA 12 / cuDNN 9 libraries are installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIR=$(mkdir -p "${1:-wheelhouse}" && cd "${1:-wheelhouse}" && pwd)
EXTRAS=${EXTRAS:-}; EXTRAS=${EXTRAS#[}; EXTRAS=${EXTRAS%]}  # "postgres,celery" or install.sh's "[postgres,celery]"
SPEC="tingxie${EXTRAS:+[$EXTRAS]}"
PIP=("$PY" -m pip --disable-pip-version-check)
quiet() { grep -v "^WARNING: Location" || true; }  # pipefail keeps pip's own exit status

rm -f "$DIR"/tingxie-*.whl  # the project's own wheel is always rebuilt from this checkout
"${PIP[@]}" wheel -q --no-deps -w "$DIR" . 2>&1 | quiet
WHEEL=$(ls "$DIR"/tingxie-*.whl)
EXTRA_REQS=()
[ "${CUDA:-}" = 12 ] && EXTRA_REQS+=("nvidia-cublas-cu12" "nvidia-cudnn-cu12==9.*")

if [ -n "${PLATFORM:-}${PY_VERSION:-}" ]; then
  TARGET=(--only-binary=:all: --implementation cp)
  [ -n "${PY_VERSION:-}" ] && TARGET+=(--python-version "$PY_VERSION")
  IFS=, read -ra PLATS <<<"${PLATFORM:-}"
  for p in "${PLATS[@]}"; do
    [ -n "$p" ] || continue
    TARGET+=(--platform "$p")
    # pip matches tags literally: a glibc 2.N target also takes every older manylinux wheel
    if [[ $p =~ ^manylinux_2_([0-9]+)_(.+)$ ]]; then
      n=${BASH_REMATCH[1]} arch=${BASH_REMATCH[2]}
      for ((i = 5; i < n; i++)); do TARGET+=(--platform "manylinux_2_${i}_${arch}"); done
      [ "$n" -ge 17 ] && TARGET+=(--platform "manylinux2014_${arch}")
      [ "$n" -ge 12 ] && TARGET+=(--platform "manylinux2010_${arch}")
      TARGET+=(--platform "manylinux1_${arch}")
    fi
  done
  # pure-Python dependencies PyPI has only as source (jieba) are built here into
  # py3-none-any wheels, which install on any target; the download then finds them in DIR
  "${PIP[@]}" wheel -q --no-deps -w "$DIR" jieba 2>&1 | quiet
  "${PIP[@]}" download -q -d "$DIR" --find-links "$DIR" "${TARGET[@]}" "$SPEC @ file://$WHEEL" "${EXTRA_REQS[@]}" pip 2>&1 | quiet
else
  # pip wheel also turns any sdist-only dependency into a wheel for this platform
  "${PIP[@]}" wheel -q -w "$DIR" "$SPEC @ file://$WHEEL" "${EXTRA_REQS[@]}" pip 2>&1 | quiet
fi
n=$(ls "$DIR"/*.whl | wc -l)
[ "$n" -gt 10 ] || { echo "wheelhouse incomplete: only $n wheels in $DIR" >&2; exit 1; }
echo "wheelhouse: $n wheels, $(du -sh "$DIR" | cut -f1) in $DIR — offline install: WHEELHOUSE=$DIR bash scripts/install.sh"
