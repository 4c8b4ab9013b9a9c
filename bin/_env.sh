# Shared by bin/run and bin/test: make sure the virtualenv exists and matches the pins.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
ensure_venv() {  # $1 = requirements file
  local req="$1" stamp=".venv/.installed-$(basename "$1")"
  if [ ! -x .venv/bin/python ]; then
    echo ">> creating .venv" >&2
    "$PY" -m venv .venv
    .venv/bin/pip install -q --upgrade pip >&2
  fi
  # Reinstall only when the pinned files changed since the last install.
  local sum; sum="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    echo ">> installing $req" >&2
    # Every package is pinned with its hashes (bin/lock regenerates them): nothing unverified installs.
    .venv/bin/pip install -q --disable-pip-version-check --require-hashes -r "$req" >&2
    echo "$sum" > "$stamp"
  fi
}
