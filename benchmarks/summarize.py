"""Write ``benchmarks/results/summary.md`` (the README's Performance section) from the latest results JSON.

python benchmarks/summarize.py [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

PHASES = ("rollout", "reward", "repair", "logprobs", "advantages", "update")


def rollout_section(data: dict[str, Any]) -> str:
    rows = [
        [
            r["model"],
            r["sequences"],
            r["gen_length"],
            r["block_length"],
            f"{r['completion_tokens_per_second']:,.1f}",
            f"{r['forwards_per_completion_token']:.2f}",
            f"{r['peak_ratio']:.0%}",
            f"{r['memory']['peak_mib']:,.0f}",
            "" if r["mode"] == "full" else "extrapolated",
        ]
        for r in data["rows"]
    ]
    skipped = ", ".join(
        f"{s['model']} B*G={s['sequences']} L={s['gen_length']} block={s['block_length']}"
        for s in data.get("skipped", [])
    )
    return (
        f"**Rollout throughput** (`{data['command']}`; {common.machine_line(data['machine'])})\n\n"
        + common.markdown_table(
            ["model", "B*G", "L", "block", "tokens/s", "fwd/token", "of matmul peak", "peak MiB", ""], rows
        )
        + "\n\nsteps = L/2, T = 1.2. 'of matmul peak' = analytic model FLOP/s / dense matmul FLOP/s measured just "
        "before and after the row (mean); 'extrapolated' rows were timed over their first iterations (every iteration costs the "
        "same) to fit the CPU budget."
        + (f" Skipped on this device (one forward > 250 GFLOP): {skipped}." if skipped else "")
        + "\n"
    )


def train_section(data: dict[str, Any]) -> str:
    rl = [
        [
            e["model"],
            e["algorithm"].upper(),
            f"{e['config']['batch_size']} x {e['config']['group_size']}",
            common.fmt_interval(e["step_seconds"], 2),
            *[f"{e['phase_seconds'][p]['mean']:.2f}" for p in PHASES],
            f"{e['all_wrong_fraction']['mean']:.2f}",
        ]
        for e in data["rl"]
    ]
    sft = [
        [
            e["model"],
            f"{e['parameters'] / 1e6:.1f}M",
            f"{e['batch_size']} x {e['sequence_length']}",
            f"{e['tokens_per_second']:,.0f}",
            f"{e['peak_ratio']:.0%}",
        ]
        for e in data["sft"]
    ]
    cfg = data["rl"][0]["config"] if data["rl"] else {"rollout": {}}
    return (
        f"**Training step** (`{data['command']}`; {common.machine_line(data['machine'])})\n\n"
        + common.markdown_table(["model", "algorithm", "B x G", "s/step [95% CI]", *PHASES, "all-wrong"], rl)
        + f"\n\nL = {cfg['rollout'].get('gen_length')}, block {cfg['rollout'].get('block_length')}, mu = "
        f"{cfg.get('mu')}, beta = {cfg.get('beta')}. all-wrong = fraction of groups that triggered IGPO's inpainting "
        "(1.00 with the default untrained model: IGPO's worst case, one extra rollout of every group).\n\n"
        + common.markdown_table(["SFT model", "params", "batch x length", "tokens/s", "of matmul peak"], sft)
        + "\n"
    )


def _in_readme(body: str) -> str:
    """Links to files next to a results markdown (its figures) made relative to the repository root."""
    return re.sub(r"\]\(([\w.-]+\.png)\)", r"](benchmarks/results/\1)", body)


def effect_section(data: dict[str, Any]) -> str:
    md = Path(data["_md"]).read_text()
    # The statistics table and the setup line of igpo_effect.md, without its title and machine lines.
    body = _in_readme(md.split("\n\n", 3)[3])
    return f"**The IGPO effect** (`{data['command']}`; {common.machine_line(data['machine'])})\n\n" + body


def comparison_section(title: str) -> Any:
    """A section made of one of igpo_effect.py's other results files (``--mode budget`` / ``--mode rollouts``):
    its tables and setup line, without its title, machine and command lines."""

    def section(data: dict[str, Any]) -> str:
        body = _in_readme(Path(data["_md"]).read_text().split("\n\n", 3)[3])
        return f"**{title}** (`{data['command']}`; {common.machine_line(data['machine'])})\n\n" + body

    return section


def fast_sampler_section_titled(title: str) -> Any:
    """A results file with ``##`` subsections (llada_sampler.py's): its body with the subsection titles in italics."""

    def section(data: dict[str, Any]) -> str:
        body = re.sub(r"^## (.+)$", r"*\1*", Path(data["_md"]).read_text().split("\n\n", 3)[3], flags=re.MULTILINE)
        return f"**{title}** (`{data['command']}`; {common.machine_line(data['machine'])})\n\n" + body

    return section


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    parts = [
        "## Performance\n",
        (
            "Measured with `make bench` (the scripts of `benchmarks/`, see "
            "`benchmarks/README.md`); the numbers below are the latest run. Each section names its machine; on a "
            "shared CPU (the load average is part of the machine line) absolute times move with other jobs, so "
            "read the ratio to the matmul peak and the paired statistics rather than single timings.\n"
        ),
    ]
    for name, section in (
        ("rollout_throughput", rollout_section),
        ("train_step", train_section),
        ("rl_step_revisions", comparison_section("One RL step's memory and log-prob passes, two code revisions")),
        ("rl_step_revisions_demo", comparison_section("An RL step on the demo model by phase, two code revisions")),
        ("igpo_effect", effect_section),
        ("igpo_ablations", comparison_section("IGPO ablations in miniature (partial vs full inpainting, entropy filter)")),
        ("dynamic_sampling", comparison_section("GRPO vs IGPO vs dynamic sampling at an equal sampling budget")),
        ("fast_rollouts_rl", comparison_section("RL with fast vs exact rollouts")),
        ("fast_sampler", fast_sampler_section_titled("Fast sampler")),
        ("llada_sampler", fast_sampler_section_titled("Exact sampler vs LLaDA's reference algorithm")),
        ("llada_sampler_demo", fast_sampler_section_titled("Sampler modes on the trained demo model")),
    ):
        path = args.results / f"{name}.json"
        if path.exists():
            data = json.loads(path.read_text()) | {"_md": str(path.with_suffix(".md"))}
            parts.append(section(data))
    text = "\n".join(parts)
    (args.results / "summary.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
