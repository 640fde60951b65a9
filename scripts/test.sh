#!/usr/bin/env bash
# Install system packages the tests use (idempotent), the project with its test extras,
# lint/format/type-check, then run the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
# pocketsphinx-testdata: real English recordings with transcripts (tingxie.bench.corpus.packaged_english)
for pkg in espeak-ng ffmpeg sox redis-server postgresql chromium fonts-wqy-microhei pocketsphinx-testdata; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
EXTRAS="[test]" bash scripts/install.sh
# checks a newcomer can trust, before the tests: lint, formatting, types (pyproject.toml)
.venv/bin/ruff check tingxie tests bench
.venv/bin/ruff format --check tingxie tests bench
.venv/bin/mypy tingxie
# three workers (pytest-xdist), a test file per worker so module fixtures (servers, clusters)
# start once: much of the suite waits on servers and real-time streams, not on the CPU, so a
# third worker on two cores fills that wait (measured on 2 cores: 351 s of tests vs 381 s
# with two workers, same CPU; a fresh-clone .ci/run with four: 1228 s vs 1178 s with three, session 14). TEST_WORKERS=0 runs in one process. --no-loadscope-reorder: files go out in the order
# tests/conftest.py gives (longest first), not xdist's (most tests first, which left the
# longest files for the end).
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder "$@"
