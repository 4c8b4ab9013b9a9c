#!/usr/bin/env bash
# Bench-only peers, each in a git-ignored folder beside this script; idempotent.
# - .litellm-venv: LiteLLM proxy, pinned in ../requirements-bench.txt. Its wheel pins a few
#   dependencies (certifi, litellm-proxy-extras, litellm-enterprise) at versions this package index
#   does not serve, so its dependencies are installed from its metadata with those bounds relaxed,
#   then the wheel itself with --no-deps.
# - .portkey: Portkey gateway (Node), pinned in portkey/package.json + package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
if [ ! -x .litellm-venv/bin/litellm ]; then
  [ -d .litellm-venv ] || "$PY" -m venv .litellm-venv
  spec=$(grep -v '^#' ../requirements-bench.txt | grep litellm | head -n1)
  tmp=$(mktemp -d)
  .litellm-venv/bin/pip download -q --no-deps -d "$tmp" "${spec%%[*}==${spec##*==}"
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
    if base in ("certifi", "litellm-proxy-extras", "litellm-enterprise"):  # pins this index lacks
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
# Portkey gateway 1.15.2 with @hono/node-server held at 1.13.5 (portkey/package.json + lock):
# newer node-server versions make every streamed chat completion fail with `TypeError: immutable`
# (Portkey-AI/gateway issue #1389). The gateway repo patches that version with one line
# (patches/@hono+node-server+1.13.5.patch: await the streamed response so its errors are caught);
# the same one-line change is applied here to the installed file, and checked.
if [ ! -f .portkey/.patched ]; then
  command -v npm >/dev/null || { echo "npm not found: Portkey is skipped" >&2; exit 0; }
  rm -rf .portkey && mkdir -p .portkey
  cp portkey/package.json portkey/package-lock.json .portkey/
  (cd .portkey && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  target=.portkey/node_modules/@hono/node-server/dist/index.mjs
  sed -i 's/^\(\s*\)return responseViaResponseObject(res, outgoing, options);/\1return await responseViaResponseObject(res, outgoing, options);/' "$target"
  grep -q 'return await responseViaResponseObject(res, outgoing, options);' "$target" \
    || { echo "Portkey: the @hono/node-server patch did not apply" >&2; exit 1; }
  touch .portkey/.patched
fi
echo "bench tools ready"
