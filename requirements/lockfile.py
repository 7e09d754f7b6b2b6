"""The locks of requirements/ against pyproject.toml: stamp, check, and diff against an installed environment.

    python requirements/lockfile.py stamp requirements/dev.lock   # record the inputs a lock was made from
    python requirements/lockfile.py check                          # every lock agrees with pyproject.toml
    python requirements/lockfile.py diff requirements/dev.lock FREEZE   # installed versions the lock pins otherwise

A lock agrees with pyproject.toml when (1) its stamp is the digest of the pyproject inputs it was compiled from
(requires-python, the dependencies and its extras: any edit there without `make lock` shows), and (2) every
requirement of those inputs has a pinned version in the lock that its specifier allows.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# Lock name -> the optional-dependency groups of pyproject.toml it holds besides [project.dependencies].
LOCK_EXTRAS: dict[str, tuple[str, ...]] = {"runtime": (), "dev": ("test",), "k8s": ("k8s",)}
STAMP_PREFIX = "# pyproject inputs sha256: "
# Left out of every lock on purpose: installed through constraints.txt (CPU here, the image's own CUDA build).
UNLOCKED = {"torch"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_inputs(pyproject: dict, extras: tuple[str, ...]) -> dict:
    project = pyproject["project"]
    groups = project.get("optional-dependencies", {})
    return {
        "requires-python": project.get("requires-python", ""),
        "dependencies": list(project["dependencies"]),
        "extras": {extra: list(groups[extra]) for extra in extras},
    }


def inputs_digest(pyproject: dict, extras: tuple[str, ...]) -> str:
    blob = json.dumps(lock_inputs(pyproject, extras), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def pins(lock_text: str) -> dict[str, list[Version]]:
    """Package name -> the versions the lock pins (a universal lock may pin one per environment marker)."""
    out: dict[str, list[Version]] = {}
    for line in lock_text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            out.setdefault(canonical(m.group(1)), []).append(Version(m.group(2)))
    return out


def stamp_of(lock_text: str) -> str | None:
    for line in lock_text.splitlines():
        if line.startswith(STAMP_PREFIX):
            return line[len(STAMP_PREFIX) :].split()[0]
    return None


def load_pyproject(root: Path = ROOT) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text())


def lock_errors(name: str, lock_text: str, pyproject: dict) -> list[str]:
    """Why the lock `name` (runtime, dev, k8s) disagrees with pyproject.toml; empty when it agrees."""
    extras = LOCK_EXTRAS[name]
    errors = []
    want, have = inputs_digest(pyproject, extras), stamp_of(lock_text)
    if have != want:
        errors.append(
            f"{name}.lock: made from other pyproject.toml inputs (stamp {have}, now {want}): run `make lock`"
        )
    pinned = pins(lock_text)
    inputs = lock_inputs(pyproject, extras)
    for spec in inputs["dependencies"] + [r for group in inputs["extras"].values() for r in group]:
        req = Requirement(spec)
        key = canonical(req.name)
        if key in UNLOCKED:
            continue
        versions = pinned.get(key)
        if not versions:
            errors.append(f"{name}.lock: pyproject.toml requires {spec!r}, the lock pins no {req.name}")
        elif not any(req.specifier.contains(v, prereleases=True) for v in versions):
            errors.append(
                f"{name}.lock: pins {req.name}=={','.join(map(str, versions))}, outside pyproject.toml's {spec!r}"
            )
    for key in UNLOCKED & set(pinned):
        errors.append(f"{name}.lock: pins {key}, which is installed through constraints.txt instead")
    return errors


def bootstrap_errors(root: Path = ROOT) -> list[str]:
    """The pinned installers, and the same version of each as the runtime lock where it pins one too (the
    environment holds one setuptools: the one DeepSpeed's sdist and this project build with)."""
    boot = pins((root / "requirements" / "bootstrap.lock").read_text())
    runtime = pins((root / "requirements" / "runtime.lock").read_text())
    errors = [f"bootstrap.lock: pins no {key}" for key in ("pip", "setuptools", "uv") if key not in boot]
    for key in sorted(set(boot) & set(runtime)):
        if boot[key] != runtime[key]:
            errors.append(f"bootstrap.lock pins {key} {boot[key][0]}, runtime.lock {runtime[key][0]}: edit bootstrap.in")
    return errors


def all_errors(root: Path = ROOT) -> list[str]:
    pyproject = load_pyproject(root)
    errors = bootstrap_errors(root)
    for name in LOCK_EXTRAS:
        errors += lock_errors(name, (root / "requirements" / f"{name}.lock").read_text(), pyproject)
    return errors


def stamp(path: Path, root: Path = ROOT) -> None:
    name = path.name.removesuffix(".lock")
    digest = inputs_digest(load_pyproject(root), LOCK_EXTRAS[name])
    extras = "+".join(LOCK_EXTRAS[name]) or "none"
    line = f"{STAMP_PREFIX}{digest} (requires-python, dependencies, extras: {extras})"
    lines = [x for x in path.read_text().splitlines() if not x.startswith(STAMP_PREFIX)]
    path.write_text("\n".join([line, *lines]) + "\n")


def differences(lock_text: str, freeze_text: str) -> list[str]:
    """'name: lock X -> installed Y' for every locked package installed at another version."""
    pinned = pins(lock_text)
    out = []
    for name, versions in sorted(pins(freeze_text).items()):
        if name in pinned and versions[0] not in pinned[name]:
            out.append(f"{name}: lock {','.join(map(str, pinned[name]))} -> installed {versions[0]}")
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["stamp"] and len(argv) == 2:
        stamp(Path(argv[1]))
        return 0
    if argv == ["check"]:
        errors = all_errors()
        print("\n".join(errors) or "locks agree with pyproject.toml")
        return 1 if errors else 0
    if argv[:1] == ["diff"] and len(argv) == 3:
        diff = differences(Path(argv[1]).read_text(), Path(argv[2]).read_text())
        print(f"{len(diff)} package(s) differ from {argv[1]}" + "".join(f"\n  {d}" for d in diff))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
