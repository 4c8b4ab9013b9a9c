#!/usr/bin/env bash
# Bench-only virtualenvs (git-ignored): .tools-venv (granian, py-spy) and .litellm-venv (LiteLLM
# proxy, for the comparison). Idempotent. The LiteLLM wheel pins certifi and litellm-proxy-extras
# newer than the package index here serves, so its dependencies are installed from its metadata
# with those two bounds relaxed, then the wheel itself with --no-deps.
set -euo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
if [ ! -x .tools-venv/bin/granian ]; then
  "$PY" -m venv .tools-venv
  .tools-venv/bin/pip install -q -r ../requirements-bench.txt
fi
if [ ! -x .litellm-venv/bin/litellm ]; then
  [ -d .litellm-venv ] || "$PY" -m venv .litellm-venv
  spec=$(grep -v '^#' requirements-litellm.txt | head -n1)
  tmp=$(mktemp -d)
  .litellm-venv/bin/pip download -q --no-deps -d "$tmp" "${spec%%[*}"
  reqs=$("$PY" - "$tmp"/*.whl <<'PY'
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
out = []
for line in z.read(meta).decode().splitlines():
    if not line.startswith("Requires-Dist: "):
        continue
    req = line[len("Requires-Dist: "):]
    name, _, marker = req.partition(";")
    if "extra ==" in marker and "'proxy'" not in marker:
        continue
    marker = re.sub(r"\s*and\s*extra == 'proxy'|extra == 'proxy'\s*(and)?", "", marker).strip()
    base = re.split(r"[<>=!~\[ ]", name.strip(), maxsplit=1)[0]
    if base in ("certifi", "litellm-proxy-extras"):  # pins newer than this index serves
        name = base
    out.append(name.strip() + (f"; {marker}" if marker else ""))
print("\n".join(out))
PY
)
  printf '%s\n' "$reqs" > "$tmp/deps.txt"
  .litellm-venv/bin/pip install -q -r "$tmp/deps.txt"
  .litellm-venv/bin/pip install -q --no-deps "$tmp"/*.whl
  rm -rf "$tmp"
fi
echo "bench venvs ready"
