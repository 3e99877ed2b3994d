# Shared set-up for scripts/demo and scripts/test: a virtualenv with the pinned packages, and
# the system packages the tests need. Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

say() { printf '==> %s\n' "$*" >&2; }

have_root_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
  # apt_install PKG...: install Debian packages (as root); quiet, and update the lists once.
  if ! have_root_apt; then
    say "missing system packages: $* (install them with apt-get as root)"
    return 1
  fi
  if [ -z "${_APT_UPDATED:-}" ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    _APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_venv() {
  # ensure_venv [EXTRA]: create .venv and install incidentbot (with the extra) at the pinned
  # versions; reinstall only when pyproject.toml or constraints.txt changed.
  local extra="${1:-}"
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "incidentbot needs Python 3.11 or newer as '$PYTHON'"
    return 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv && "$PYTHON" -m venv "$VENV"
    fi
  fi
  local stamp want have digest
  stamp="$VENV/.incidentbot-installed"
  digest="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)"
  want="$extra $digest"
  have="$(cat "$stamp" 2>/dev/null || true)"
  # An install with the dev extra also serves a plain one.
  if [ "$have" = "$want" ] || { [ -z "$extra" ] && [ "$have" = "dev $digest" ]; }; then
    return 0
  fi
  say "installing incidentbot${extra:+[$extra]} and its pinned dependencies"
  local log
  log="$(mktemp)"
  if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip &&
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
      -c "$ROOT/constraints.txt" -e "$ROOT${extra:+[$extra]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    say "installing failed"
    return 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
}

ensure_lab_packages() {
  # The runbook lab (docs/lab.md): HAProxy from Debian, and anvil from npm at the version
  # package-lock.json pins (the binary ships in the package; nothing is fetched at run time).
  # `npm ci` runs again only when the lock changed since the last install. Then the consensus
  # lab's Lodestar (ensure_consensus_lab_packages).
  if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
    apt_install haproxy || return 1
  fi
  if ! command -v npm >/dev/null; then
    apt_install npm || return 1
  fi
  local stamp want
  stamp="$ROOT/node_modules/.incidentbot-lock"
  want="$(sha256sum "$ROOT/package-lock.json" | cut -c1-16)"
  if [ -d "$ROOT/node_modules/@foundry-rs/anvil" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    ensure_consensus_lab_packages
    return
  fi
  say "npm ci (anvil for the runbook lab)"
  local log
  log="$(mktemp)"
  if ! (cd "$ROOT" && npm ci --no-audit --no-fund) >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    say "npm ci failed"
    return 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
  ensure_consensus_lab_packages
}

ensure_consensus_lab_packages() {
  # The consensus lab (docs/lab.md): Lodestar from its own npm project in lab/consensus (its
  # package-lock.json pins 1.5.1 and the dependencies it runs with on Node 20), kept apart from
  # the anvil install at the root. Native modules build with node-gyp (make, g++, python3).
  # `npm ci` runs again only when that lock changed since the last install.
  local dir stamp want log
  dir="$ROOT/lab/consensus"
  stamp="$dir/node_modules/.incidentbot-lock"
  want="$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
  if [ -d "$dir/node_modules/@chainsafe/lodestar" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    return 0
  fi
  if ! command -v make >/dev/null || ! command -v g++ >/dev/null; then
    apt_install make g++ || return 1
  fi
  say "npm ci in lab/consensus (Lodestar for the consensus lab; a few minutes)"
  log="$(mktemp)"
  if ! (cd "$dir" && npm ci --no-audit --no-fund) >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    say "npm ci in lab/consensus failed"
    return 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
}

ensure_test_system_packages() {
  # The runbook lab's HAProxy and anvil: the lab tests run real ones.
  ensure_lab_packages || say "continuing without the runbook lab (those tests will be skipped outside CI)"
  # PostgreSQL server binaries: the suite starts its own throwaway cluster from them.
  local missing=()
  compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null ||
    missing+=(postgresql)
  # Prometheus Alertmanager: the alert ingestion test notifies the bot from a real one.
  command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  # Headless Chromium: the postmortem HTML is rendered in a real browser (DOM and screenshot).
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || say "continuing without: ${missing[*]} (those tests will be skipped outside CI)"
  fi
}

TOOLS_VENV="$ROOT/.venv-tools"

ensure_tools_venv() {
  # The deploy linters (scripts/lint-deploy: hadolint, kubernetes-validate, checkov) in a
  # virtualenv of their own at the versions deploy/lint-requirements.txt pins: checkov pins
  # packages that the application pins at other versions. Reinstalled only when the list changed.
  local req stamp want log
  req="$ROOT/deploy/lint-requirements.txt"
  stamp="$TOOLS_VENV/.incidentbot-installed"
  want="$(sha256sum "$req" | cut -c1-16)"
  if [ -x "$TOOLS_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$TOOLS_VENV/bin/python" ]; then
    say "creating $TOOLS_VENV"
    if ! "$PYTHON" -m venv "$TOOLS_VENV" 2>/dev/null; then
      rm -rf "$TOOLS_VENV"
      apt_install python3-venv && "$PYTHON" -m venv "$TOOLS_VENV"
    fi
  fi
  say "installing the deploy linters (hadolint, kubernetes-validate, checkov)"
  log="$(mktemp)"
  if ! "$TOOLS_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$req" \
    >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    say "installing the deploy linters failed"
    return 1
  fi
  rm -f "$log"
  echo "$want" >"$stamp"
}

ensure_deploy_lint_packages() {
  # systemd-analyze checks the systemd unit (scripts/lint-deploy).
  command -v systemd-analyze >/dev/null || apt_install systemd
}

ensure_image_builder() {
  # scripts/build-image and the image test: buildah builds, podman runs (with runc: crun
  # refuses hosts whose cgroups are in hybrid mode), debootstrap makes a local Debian base.
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || [ -x /usr/sbin/runc ] || missing+=(runc)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
}
