#!/usr/bin/env bash
# Install the project into a virtual environment from the locks and nothing else.
#
#   requirements/install.sh VENV [LOCK]      # LOCK: dev (default: runtime + test tools) | runtime | k8s
#
# 1. pip installs the pinned installers (requirements/bootstrap.lock, hash-checked);
# 2. pip installs torch==2.13.0 through constraints.txt: here the CPU wheel that lies in pip's find-links
#    directory; torch is the one package the locks leave out, so a GPU image keeps its own CUDA build;
# 3. uv makes the environment exactly the lock (hash-checked; packages that are not in it are removed, torch
#    and the project kept) and installs the project itself in editable mode, without dependencies.
# Idempotent: a second run changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:?usage: requirements/install.sh VENV [dev|runtime|k8s]}
LOCK=requirements/${2:-dev}.lock
[ -f "$LOCK" ] || { echo "install.sh: no lock $LOCK" >&2; exit 2; }
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
PY=$VENV/bin/python
"$PY" -m pip install -q --disable-pip-version-check --require-hashes -r requirements/bootstrap.lock
"$PY" -m pip install -q --disable-pip-version-check -c constraints.txt "torch==$(sed -n 's/^torch==//p' constraints.txt)"
# What the lock does not hold: torch (already installed, kept as it is) and the project (editable, no deps).
extra=$VENV/igpo-unlocked.txt
printf 'torch==%s\n-e %s\n' "$(sed -n 's/^torch==//p' constraints.txt)" "$(pwd)" > "$extra"
# DeepSpeed's sdist imports torch in its setup.py: it is built without isolation against the torch above, never
# with a second, CUDA-sized torch in an isolated build environment. `install` brings every pin; `sync` then
# removes what the lock does not hold (it builds nothing but the project: the rest is installed by then).
"$VENV/bin/uv" pip install -q --python "$PY" --no-deps --no-build-isolation-package deepspeed \
    -r requirements/bootstrap.lock -r "$LOCK"
"$VENV/bin/uv" pip sync -q --python "$PY" --no-build-isolation requirements/bootstrap.lock "$LOCK" "$extra"
"$VENV/bin/uv" pip check -q --python "$PY"
