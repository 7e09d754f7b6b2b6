"""Print the dependencies of pyproject.toml (plus the optional groups named in $IGPO_EXTRAS, comma
separated) one per line: the image installs them in a layer of their own, before the code is copied."""

import os
import sys
import tomllib

project = tomllib.load(open(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml", "rb"))["project"]
requirements = list(project["dependencies"])
for extra in filter(None, (e.strip() for e in os.environ.get("IGPO_EXTRAS", "").split(","))):
    groups = project.get("optional-dependencies", {})
    if extra not in groups:
        sys.exit(f"IGPO_EXTRAS: pyproject.toml has no optional-dependencies group {extra!r} (has {sorted(groups)})")
    requirements += groups[extra]
print("\n".join(requirements))
