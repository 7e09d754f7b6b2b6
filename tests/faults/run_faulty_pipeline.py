"""Run the igpo pipeline from a YAML in this process, with one fault injected (a helper of test_pipeline_faults.py).

    python tests/faults/run_faulty_pipeline.py CONFIG.yaml [--kill-at STEP_NAME:N] [--readonly-store ARTIFACT]

--kill-at train_sft:5     SIGKILL this process right after that training step reported step 5 (its
                          metrics row is written; pick a step that is not a checkpoint step): a crash mid-run.
--readonly-store NAME     every write into the local artifact store under an artifact named NAME fails with
                          EROFS, as if the store went read-only while the run was going on.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def kill_at(spec: str) -> None:
    from steps import _io

    step_name, at = spec.split(":")
    record = _io.MetricsLog.__call__

    def call(self, step, metrics):
        record(self, step, metrics)
        if self.path.parent.name.startswith(step_name + "-") and step == int(at):
            os.kill(os.getpid(), signal.SIGKILL)

    _io.MetricsLog.__call__ = call


def readonly_store(artifact_name: str) -> None:
    import inspect

    from zenml.artifact_stores.local_artifact_store import LocalArtifactStore

    def refuse(name, method, static):
        def wrapped(*args, **kwargs):
            path, rest = (args[0], args[1:]) if static else (args[1], args[2:])
            mode = rest[0] if rest and name == "open" else kwargs.get("mode", "r")
            writes = name in ("makedirs", "mkdir", "copyfile") or any(c in mode for c in "wax+")
            if writes and artifact_name in str(path) + str(rest):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return method(*args, **kwargs)

        return staticmethod(wrapped) if static else wrapped

    for name in ("open", "makedirs", "mkdir", "copyfile"):
        static = isinstance(inspect.getattr_static(LocalArtifactStore, name), staticmethod)
        setattr(LocalArtifactStore, name, refuse(name, getattr(LocalArtifactStore, name), static))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--kill-at")
    parser.add_argument("--readonly-store")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from pipelines.igpo import igpo_pipeline
    from pipelines.stack import ensure_local_stack

    ensure_local_stack()
    if args.kill_at:
        kill_at(args.kill_at)
    if args.readonly_store:
        readonly_store(args.readonly_store)
    run = igpo_pipeline.with_options(config_path=args.config)()
    print(f"RUN_ID={run.id}")


if __name__ == "__main__":
    main()
