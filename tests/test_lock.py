"""The locks of requirements/ agree with pyproject.toml, and every install of the project goes through them."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lockfile", ROOT / "requirements" / "lockfile.py")
lockfile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lockfile)


def test_locks_agree_with_pyproject():
    assert lockfile.all_errors() == []


@pytest.fixture()
def copy(tmp_path) -> Path:
    (tmp_path / "requirements").mkdir()
    for name in ("bootstrap", *lockfile.LOCK_EXTRAS):
        shutil.copy(ROOT / "requirements" / f"{name}.lock", tmp_path / "requirements")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_a_dependency_edited_without_relocking_is_caught(copy):
    _edit(copy / "pyproject.toml", '"tqdm>=4.70,<5",', '"tqdm>=4.70,<5",\n    "cowsay>=6",')
    errors = lockfile.all_errors(copy)
    assert any("runtime.lock: made from other pyproject.toml inputs" in e and "make lock" in e for e in errors)
    assert any("pins no cowsay" in e for e in errors)


def test_an_extra_edited_without_relocking_is_caught_in_its_lock_only(copy):
    _edit(copy / "pyproject.toml", '"pytest>=9.2,<10",', '"pytest>=9.2,<10",\n    "hypothesis>=6",')
    errors = lockfile.all_errors(copy)
    assert errors and all(e.startswith("dev.lock") for e in errors)


def test_a_pin_outside_the_range_is_caught(copy):
    lock = copy / "requirements" / "runtime.lock"
    version = lockfile.pins(lock.read_text())["transformers"][0]
    major = version.major
    _edit(lock, f"transformers=={version} ", f"transformers=={major + 1}.0.0 ")
    assert any("pins transformers==" in e and "outside" in e for e in lockfile.lock_errors(
        "runtime", lock.read_text(), lockfile.load_pyproject(copy)))


def test_torch_is_left_to_constraints_txt(copy):
    lock = copy / "requirements" / "dev.lock"
    assert "torch" not in lockfile.pins(lock.read_text())
    lock.write_text(lock.read_text() + "torch==2.13.0 \\\n    --hash=sha256:00\n")
    assert any("pins torch" in e for e in lockfile.lock_errors("dev", lock.read_text(), lockfile.load_pyproject(copy)))


def test_bootstrap_and_runtime_share_setuptools(copy):
    boot = copy / "requirements" / "bootstrap.lock"
    version = lockfile.pins(boot.read_text())["setuptools"][0]
    _edit(boot, f"setuptools=={version}", "setuptools==1.0")
    assert any("setuptools" in e for e in lockfile.bootstrap_errors(copy))


def test_every_lock_is_hashed():
    for name in ("bootstrap", *lockfile.LOCK_EXTRAS):
        text = (ROOT / "requirements" / f"{name}.lock").read_text()
        pinned = re.findall(r"^[A-Za-z0-9][\w.-]*==\S+", text, re.MULTILINE)
        blocks = re.split(r"^(?=[A-Za-z0-9][\w.-]*==)", text, flags=re.MULTILINE)[1:]
        assert pinned and len(blocks) == len(pinned)
        assert all("--hash=sha256:" in block for block in blocks), name


def test_differences_lists_versions_off_the_lock():
    lock = "numpy==2.4.6 \\\n    --hash=sha256:aa\nzenml==0.98.0 \\\n    --hash=sha256:bb\n"
    freeze = "numpy==2.5.0\nzenml==0.98.0\ntorch==2.13.0+cpu\n-e file:///x\n"
    assert lockfile.differences(lock, freeze) == ["numpy: lock 2.4.6 -> installed 2.5.0"]


def test_every_install_goes_through_the_lock():
    """make setup (demo, test, CI) installs with requirements/install.sh from dev.lock; the step image from
    runtime.lock (or k8s.lock) with hashes; nothing installs from pyproject.toml's ranges but test-latest."""
    makefile = (ROOT / "Makefile").read_text()
    assert "requirements/install.sh $(VENV) dev" in makefile
    assert "-e '.[test]'" not in makefile
    install = (ROOT / "requirements" / "install.sh").read_text()
    assert "--require-hashes -r requirements/bootstrap.lock" in install and "pip sync" in install
    dockerfile = (ROOT / "containers" / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "requirements/" in dockerfile
    assert "requirements_from_pyproject" not in dockerfile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
