# Shared by the scripts: make or update .venv with the project and the given extras.
# Usage: source scripts/_env.sh EXTRAS   (EXTRAS: dev or examples)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
extras="${1:-dev}"

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "arborist needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  py="$(pick_python)"
  echo "==> creating .venv with $($py --version)" >&2
  "$py" -m venv .venv
fi
# Exactly the locked versions (constraints.txt; ./scripts/lock refreshes it). Reinstall only
# when the dependencies, the lock or the extras asked for changed.
stamp=".venv/.arborist-$extras-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing arborist[$extras] into .venv (first run takes a few minutes; log: .venv/install.log)" >&2
  if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -c constraints.txt -e ".[$extras]"; } \
      > .venv/install.log 2>&1; then
    tail -n 40 .venv/install.log >&2
    echo "installing arborist[$extras] failed; the whole log is .venv/install.log" >&2
    exit 1
  fi
  rm -f .venv/.arborist-"$extras"-*
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
# The trial sandbox (trials/sandbox.py) is bubblewrap; its tests need the real one. Installed
# only for development, only where we may (root with apt-get); otherwise those tests say why
# they skip.
if [ "$extras" = "dev" ] && ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing bubblewrap (the trial sandbox) with apt-get" >&2
    # A fresh machine may have no package lists yet: update once, only when the install needs it.
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap ||
           { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap; }; } \
        > .venv/bwrap-install.log 2>&1; then
      echo "could not install bubblewrap (log: .venv/bwrap-install.log); sandbox tests will be skipped" >&2
    fi
  else
    echo "bubblewrap (bwrap) is missing; install it (apt-get install bubblewrap) or sandbox tests will be skipped" >&2
  fi
fi
# The web view's tests (tests/web) drive a real headless chromium through chromedriver; installed
# for development the same way as bubblewrap.
if [ "$extras" = "dev" ] && ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium and chromium-driver (the web view's browser tests) with apt-get" >&2
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver ||
           { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }; } \
        > .venv/chromium-install.log 2>&1; then
      echo "could not install chromium (log: .venv/chromium-install.log); the web view's browser tests will fail" >&2
    fi
  else
    echo "chromium/chromedriver are missing; install them (apt-get install chromium chromium-driver) for tests/web" >&2
  fi
fi
