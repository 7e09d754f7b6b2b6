"""The README's demo table is the one `make demo` wrote (benchmarks/results/demo_tiny_cpu.txt), verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_RESULTS = ROOT / "benchmarks" / "results" / "demo_tiny_cpu.txt"


def _first_code_block_after(text: str, heading: str) -> str:
    section = text[text.index(heading) :]
    match = re.search(r"^```[a-z]*\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert match, f"no code block after {heading!r}"
    return match.group(1)


def test_readme_quotes_the_demo_results_file():
    readme = (ROOT / "README.md").read_text()
    assert _first_code_block_after(readme, "## The demo's results") == DEMO_RESULTS.read_text()


def test_the_makefile_writes_the_file_the_readme_quotes():
    makefile = (ROOT / "Makefile").read_text()
    assert f"pipelines.show_results --out {DEMO_RESULTS.relative_to(ROOT)}" in makefile


def test_readme_performance_section_is_the_one_rendered_from_the_results(tmp_path):
    """The Performance section is benchmarks/summarize.py's rendering of the committed results files, verbatim."""
    import shutil
    import sys

    sys.path.insert(0, str(ROOT))
    from benchmarks import summarize

    results = ROOT / "benchmarks" / "results"
    for path in results.glob("*.*"):
        shutil.copy(path, tmp_path / path.name)
    rendered = summarize.main(["--results", str(tmp_path)])
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Performance")
    assert readme[start : start + len(rendered)] == rendered
    assert rendered == (results / "summary.md").read_text()
