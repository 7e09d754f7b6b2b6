#!/usr/bin/env bash
# `make test-latest`: what a user gets who installs from pyproject.toml's ranges instead of the lock.
#
# Builds .venv-latest afresh with the newest versions the ranges allow (torch still pinned through
# constraints.txt), runs the test suite in it, and prints every package whose version differs from
# requirements/dev.lock. Exit status: the suite's.
#
#   TEST_LATEST_ARGS   pytest arguments (default: the suite without the slow end-to-end pipeline and browser
#                      tests, which exercise ZenML/Chromium more than the library versions)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV_LATEST:-.venv-latest}
PY=$VENV/bin/python
TORCH=$(sed -n 's/^torch==//p' constraints.txt)
rm -rf "$VENV"
python3 -m venv "$VENV"
"$PY" -m pip install -q --disable-pip-version-check --require-hashes -r requirements/bootstrap.lock
"$PY" -m pip install -q --disable-pip-version-check -c constraints.txt "torch==$TORCH"
# --refresh: today's newest releases, not the index pages uv cached earlier.
"$VENV/bin/uv" pip install -q --refresh --python "$PY" --resolution highest -c constraints.txt \
    --no-build-isolation-package deepspeed -e '.[test]'
"$VENV/bin/uv" pip check -q --python "$PY"

rc=0
# shellcheck disable=SC2086
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m pytest -q -p no:cacheprovider \
    ${TEST_LATEST_ARGS:---ignore=tests/pipelines --ignore=tests/dashboard --ignore=tests/faults -m "not slow"} || rc=$?

freeze=$(mktemp)
"$VENV/bin/uv" pip freeze -q --python "$PY" > "$freeze"
echo "== make test-latest: versions that differ from requirements/dev.lock (suite exit status $rc) =="
"$PY" requirements/lockfile.py diff requirements/dev.lock "$freeze"
rm -f "$freeze"
exit "$rc"
