"""Project layout rules: the core never imports the orchestrator."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_core_has_no_zenml_import_statement():
    offenders = []
    for path in (ROOT / "igpo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "zenml"]
    assert not offenders, offenders


def test_importing_every_core_module_does_not_load_zenml():
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "igpo").rglob("*.py")
    )
    code = "import sys, importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "assert 'zenml' not in sys.modules, 'zenml was imported'\n"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_layout_folders_exist():
    for folder in ["igpo", "steps", "pipelines", "configs", "containers", "tests", "benchmarks", ".zen"]:
        assert (ROOT / folder).is_dir(), folder
    assert (ROOT / "pyproject.toml").is_file()
