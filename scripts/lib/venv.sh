# Sourced by scripts/demo and scripts/test: make .venv and install the project into it.
# Usage: ensure_venv EXTRAS   (e.g. "" or "dev"); reinstalls only when pyproject.toml changed.
ensure_venv() {
  local extras="$1" root venv stamp want
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  venv="$root/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating virtualenv $venv"
    local py="" candidate
    for candidate in "${PYTHON:-}" python3 python3.11 python3.12 python3.13; do
      [ -n "$candidate" ] || continue
      if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
        py="$candidate"; break
      fi
    done
    [ -n "$py" ] || { echo "Python >= 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; return 1; }
    "$py" -m venv "$venv"
  fi
  stamp="$venv/.installed-${extras:-base}"
  want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing the project${extras:+ with [$extras]} into $venv"
    local log="$venv/pip-install.log"
    if ! { "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
           && "$venv/bin/python" -m pip install --disable-pip-version-check -e "$root${extras:+[$extras]}"; } >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      echo "pip install failed; the whole log is in $log" >&2
      return 1
    fi
    echo "$want" > "$stamp"
  fi
  export PATH="$venv/bin:$PATH"
  VENV_PY="$venv/bin/python"
}
