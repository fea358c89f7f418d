"""Print a pip constraints file pinning every `>=` floor in pyproject.toml's dependencies and `test` extra.

Used by .ci/run's "oldest supported" job: `pip install -c <(python .ci/floors.py) ".[test]"` installs
exactly the oldest versions the package claims, so the claim is tested. Runs on Python 3.10 (no tomllib).
"""
import pathlib
import re
import sys

text = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml").read_text()
project = text.split("[project]", 1)[1].split("\n[", 1)[0]
extras = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
deps = re.search(r"^dependencies\s*=\s*\[(.*?\"\s*)\]", project, re.S | re.M).group(1)
test = re.search(r"^test\s*=\s*\[(.*?\"\s*)\]", extras, re.S | re.M).group(1)
pins = {}
for spec in re.findall(r'"([^"]+)"', deps + test):
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)(,.*)?", spec.strip())
    if m is None:
        sys.exit(f"floors.py: no `>=` floor in {spec!r}")
    pins[m.group(1).lower().replace("_", "-")] = m.group(3)
for name, version in sorted(pins.items()):
    print(f"{name}=={version}")
