"""What every benchmark script shares: threads, the machine it ran on, the matmul peak it is compared
with, the benchmark models, analytic model FLOPs, peak memory, 95% intervals, and result files.

Results are honest about noise: the CPU machines this project runs on are shared, so achieved FLOP/s
is always reported next to (and as a ratio of) a dense-matmul peak measured in the same process
moments before. Both suffer the same contention, so the ratio holds where the raw numbers do not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CACHE_DIR = RESULTS_DIR / "tmp"  # git-ignored


def set_threads(threads: int) -> None:
    """One thread unless asked (two threads on a busy 2-core machine are slower). Call before heavy imports:
    OMP_NUM_THREADS is read when torch loads its OpenMP runtime."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars would drown the numbers

    torch.set_num_threads(threads)


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda (cuda: larger default settings; untested here)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="minimal settings (smoke test, seconds)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory of the JSON and markdown results"
    )
    return parser


# --------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, Any]:
    """The machine a result came from: CPU model, cores, threads, torch/transformers versions, device, load."""
    import torch
    import transformers

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": device,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One line for logs and tables: CPU model, cores, threads, torch version, device."""
    line = (
        f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch thread(s), torch {info['torch']}, "
        f"device {info['device']}"
    )
    if "gpu" in info:
        line += f" ({info['gpu']}, CUDA {info['cuda']})"
    if info.get("load_average_1m") is not None:
        line += f", load average {info['load_average_1m']:.1f} at start"
    return line


def resolve_device(name: str) -> str:
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return name


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------- peak


def matmul_peak(device: str, dtype: Any = None, size: int | None = None, repeats: int = 5) -> float:
    """Best dense-matmul FLOP/s of ``repeats`` timed [size, size] @ [size, size] products (one warm-up).

    The machine's own ceiling for the dtype the models run in, measured in the same process as the
    benchmark; the best of a few runs is the least disturbed by other processes.
    """
    import torch

    dtype = dtype or torch.float32
    size = size or (8192 if device.startswith("cuda") else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# --------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelShape:
    """What the analytic FLOP count needs (Gemma-3 style: q/k/v/o, gated MLP, tied LM head)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def of(cls, hf_model: Any) -> ModelShape:
        c = hf_model.config
        return cls(
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.intermediate_size,
            c.vocab_size,
        )

    def forward_flops(
        self, sequences: int, length: int, head_positions: int, kv_length: int | None = None
    ) -> float:
        """Matmul FLOPs of one forward pass: ``sequences`` x ``length`` tokens through every layer (bidirectional
        attention over the whole sequence) and ``head_positions`` per sequence through the LM head.
        ``kv_length``: keys each query attends to when they are not just the ``length`` inputs (a KV-cached
        forward: the inputs plus the cached keys).

        Counts 2 FLOPs per multiply-add of the projections, the attention scores and the attention-weighted
        values; norms, softmax and activations are left out (as in the usual MFU accounting).
        """
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        keys = length if kv_length is None else kv_length
        projections = self.hidden * (q + 2 * kv) + q * self.hidden + 3 * self.hidden * self.intermediate
        per_layer = 2 * length * projections + 2 * 2 * length * keys * q
        return sequences * (self.layers * per_layer + 2 * head_positions * self.hidden * self.vocab)


# The models the scripts measure. "tiny" is the CPU demo model (igpo.models.tiny defaults, as in
# configs/demo_tiny_cpu.yaml); "medium" (about 50M parameters, 32k vocabulary like a small real
# tokenizer) is built from a Gemma-3 config the same way: the sampler only needs token ids, so the
# character tokenizer drives it and the extra vocabulary rows are just never prompted.
# "base100m" is the same at about 110M parameters (the fast sampler benchmark's larger model).
# The benchmarks' models are Gemma-3 shaped (the README's tables were measured on them; the analytic FLOP count
# below is Gemma's); moving them to the native LLaDA class is the rollout-speed issue's work.
MODEL_SPECS: dict[str, dict[str, int | str]] = {
    "tiny": {"num_layers": 4, "hidden_size": 64, "num_heads": 4, "head_dim": 16, "intermediate_size": 256,
             "architecture": "gemma3"},
    "medium": {
        "num_layers": 8,
        "hidden_size": 512,
        "num_heads": 8,
        "head_dim": 64,
        "intermediate_size": 2048,
        "vocab_size": 32768,
    },
    # GPT-2-small-like width and depth (about 110M parameters, 25M of them the tied 32k embedding).
    "base100m": {
        "num_layers": 12,
        "hidden_size": 768,
        "num_heads": 12,
        "head_dim": 64,
        "intermediate_size": 2048,
        "vocab_size": 32768,
    },
}


def build_model(name: str, device: str, dtype: Any = None, max_positions: int = 1024) -> Any:
    """A freshly initialised benchmark model wrapped as ``DiffusionLM`` (weights seeded, eval mode)."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from igpo.models import wrap_model
    from igpo.models.tiny import TinyModelConfig, build_tiny_model, build_tiny_tokenizer

    spec = dict(MODEL_SPECS[name])
    tokenizer = build_tiny_tokenizer()
    vocab = spec.pop("vocab_size", None)
    if vocab is None:
        model = build_tiny_model(tokenizer, TinyModelConfig(**spec, max_position_embeddings=max_positions))
    else:
        assert vocab >= len(tokenizer), "the special token ids of the tokenizer must be valid model ids"
        config = Gemma3TextConfig(
            vocab_size=vocab,
            hidden_size=spec["hidden_size"],
            intermediate_size=spec["intermediate_size"],
            num_hidden_layers=spec["num_layers"],
            num_attention_heads=spec["num_heads"],
            num_key_value_heads=spec["num_heads"],
            head_dim=spec["head_dim"],
            query_pre_attn_scalar=spec["head_dim"],
            max_position_embeddings=max_positions,
            use_bidirectional_attention=True,
            layer_types=["full_attention"] * spec["num_layers"],
            sliding_window=max_positions,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = Gemma3ForCausalLM(config)
    model = model.to(device=device, dtype=dtype or torch.float32).eval()
    return wrap_model(model, tokenizer)


class ForwardBudgetReached(Exception):
    """Raised by ``ForwardCounter`` when a forward beyond its cap is attempted (a timed generation cut short)."""


class ForwardCounter:
    """Counts the calls of the HF model's forward (every full or cached forward of a sampler) and the fewest rows
    one ran on, for the ``with`` block; with a cap (``start(cap)``) the forward after the cap-th raises
    ``ForwardBudgetReached``. Installed on the module instance only, with the forward's signature (the KV-cache
    support check reads it)."""

    def __init__(self, lm: Any):
        import functools

        self.lm = lm
        self.cap: int | None = None
        self.calls = 0
        self.min_rows: int | None = None
        inner = lm.model.forward

        @functools.wraps(inner)
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self.cap is not None and self.calls >= self.cap:
                raise ForwardBudgetReached
            self.calls += 1
            rows = kwargs["input_ids"].shape[0] if "input_ids" in kwargs else args[0].shape[0]
            self.min_rows = rows if self.min_rows is None else min(self.min_rows, rows)
            return inner(*args, **kwargs)

        self._counted = counted

    def __enter__(self) -> Self:
        self.lm.model.forward = self._counted
        return self

    def __exit__(self, *exc: object) -> None:
        del self.lm.model.forward  # the instance attribute; the class's forward shows through again

    def start(self, cap: int | None = None) -> None:
        """Zero the counts; ``cap``: the most forwards allowed from here (None: no limit)."""
        self.cap, self.calls, self.min_rows = cap, 0, None


def parameter_count(lm: Any) -> int:
    return sum(p.numel() for p in lm.model.parameters())


# --------------------------------------------------------------------------------------------- memory


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on GPU; on CPU the peak resident set size, sampled every
    ``interval`` seconds by a thread, reported with its rise over the RSS when the block began (glibc keeps
    freed pages, so the rise can under-state a block that reuses memory an earlier block freed)."""

    def __init__(self, device: str, interval: float = 0.005):
        self.device, self.interval = device, interval
        self.peak_bytes = 0
        self.baseline_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def rss_bytes() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, self.rss_bytes())

    def __enter__(self) -> Self:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
        else:
            self.baseline_bytes = self.peak_bytes = self.rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, self.rss_bytes())

    def as_dict(self) -> dict[str, float]:
        kind = "cuda_max_allocated" if self.device.startswith("cuda") else "cpu_peak_rss"
        return {
            "kind": kind,
            "peak_mib": self.peak_bytes / 2**20,
            "rise_mib": (self.peak_bytes - self.baseline_bytes) / 2**20,
        }


# --------------------------------------------------------------------------------------------- statistics


def interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean with a two-sided t-distribution interval (scipy); n < 2 gives no interval."""
    import numpy as np
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    if n < 2:
        return {"n": n, "mean": mean, "low": None, "high": None, "half_width": None, "std": None}
    sem = float(x.std(ddof=1) / np.sqrt(n))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * sem)
    return {
        "n": n,
        "mean": mean,
        "low": mean - half,
        "high": mean + half,
        "half_width": half,
        "std": float(x.std(ddof=1)),
    }


def paired_difference(
    after: Sequence[float], before: Sequence[float], confidence: float = 0.95
) -> dict[str, Any]:
    """``after - before`` over paired seeds: mean with its t interval, the two-sided paired t-test p-value,
    and the relative change of the means (``after / before - 1``)."""
    import numpy as np
    from scipy import stats

    a, b = np.asarray(after, dtype=float), np.asarray(before, dtype=float)
    out = interval(a - b, confidence)
    out["p_value"] = float(stats.ttest_rel(a, b).pvalue) if len(a) >= 2 and np.any(a != b) else None
    out["relative"] = float(a.mean() / b.mean() - 1) if b.mean() != 0 else None
    return out


def fmt_interval(stat: dict[str, Any], digits: int = 3) -> str:
    """``0.412 [0.380, 0.444]``."""
    if stat.get("low") is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"


# --------------------------------------------------------------------------------------------- output


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def write_results(out_dir: Path, name: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """``<out>/<name>.json`` (the payload as given) and ``<out>/<name>.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path

