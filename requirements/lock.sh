#!/usr/bin/env bash
# Regenerate the locks from pyproject.toml (`make lock`). Newest versions that pyproject.toml's ranges allow,
# except where an existing lock already pins a version that still fits (uv keeps it; `make lock
# LOCK_ARGS=--upgrade` moves everything to the newest).
#
#   bootstrap.lock  pip, setuptools, uv themselves (from bootstrap.in)
#   runtime.lock    [project.dependencies]             -> the step image
#   dev.lock        runtime + the `test` extra          -> make demo, make test, CI
#   k8s.lock        runtime + the `k8s` extra           -> the step image with IGPO_EXTRAS=k8s
#
# All are universal (Python 3.10-3.12, any platform) and carry sha256 hashes. dev and k8s are constrained
# to runtime's pins, so the image and the test environment run the same versions.
#
# torch is resolved but not written: its CPU wheel (TORCH_FIND_LINKS, default: pip's find-links of this
# machine) gives the resolver torch's own dependencies without the CUDA ones; a GPU image brings its own
# torch build, a CPU machine gets torch==2.13.0 through constraints.txt (requirements/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
PY=${PY:-.venv/bin/python}
TORCH=$(sed -n 's/^torch==//p' constraints.txt)
TORCH_FIND_LINKS=${TORCH_FIND_LINKS:-${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}}
[ -n "$TORCH_FIND_LINKS" ] || { echo "lock.sh: set TORCH_FIND_LINKS to a folder or page with the torch $TORCH CPU wheel" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "torch==$TORCH+cpu" > "$tmp/torch-cpu.txt"

compile() {  # compile OUT [uv pip compile args...]
    local out=$1; shift
    "$UV" pip compile -q --universal --generate-hashes --no-emit-package torch --custom-compile-command "make lock" \
        --find-links "$TORCH_FIND_LINKS" --overrides "$tmp/torch-cpu.txt" ${LOCK_ARGS:-} "$@" -o "$out"
    # The inputs this lock was made from; tests/test_lock.py fails when pyproject.toml moved on without it.
    "$PY" requirements/lockfile.py stamp "$out"
}
"$UV" pip compile -q --universal --generate-hashes --custom-compile-command "make lock" ${LOCK_ARGS:-} \
    requirements/bootstrap.in -o requirements/bootstrap.lock
compile requirements/runtime.lock pyproject.toml -c requirements/bootstrap.in
compile requirements/dev.lock pyproject.toml --extra test -c requirements/runtime.lock
compile requirements/k8s.lock pyproject.toml --extra k8s -c requirements/runtime.lock
"$PY" requirements/lockfile.py check
