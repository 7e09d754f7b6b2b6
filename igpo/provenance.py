"""What a cached result depends on besides its inputs and config: the project's code and the library versions.

ZenML's cache key covers a step's own function, its parameters and its input artifacts, but not the code the
step calls: a change in ``igpo/`` (a sampler fix, a new model class) or a different transformers would
otherwise replay results computed by the old code. ``code_fingerprint`` is added to every step's cache key
(``pipelines/igpo.py``'s cache policy).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

# Libraries whose version can change a step's numbers (the rest of the lock only moves plumbing).
NUMERIC_LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "peft", "deepspeed", "numpy",
                     "math-verify", "datasets", "pyarrow", "pandas")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 of every source file of the ``igpo`` package and the versions of ``NUMERIC_LIBRARIES``."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for name in NUMERIC_LIBRARIES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}=={version}\n".encode())
    return digest.hexdigest()
