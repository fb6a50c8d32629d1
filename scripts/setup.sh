#!/usr/bin/env bash
# Installs every Debian package that building, testing and the demo need.
# `setup.sh --bench` adds the benchmark's extra packages (bench/README.md).
# Idempotent: when everything is present it installs nothing and asks no
# mirror.  Used by both README commands and by .ci/run.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config
  libuv1-dev libssl-dev libsqlite3-dev libcurl4-openssl-dev node-llhttp
  libargon2-dev libinih-dev libcjson-dev libqrencode-dev libcmocka-dev
  # tests and demo: a real Dovecot and real clients
  dovecot-imapd dovecot-pop3d dovecot-submissiond
  python3 python3-pytest curl swaks openssl sqlite3 procps
  # browser tests (tests/browser): headless Chromium driven by playwright-core
  # from node; CJK fonts so Chinese pages render in the screenshots
  chromium fonts-noto-cjk
)
# node and npm: Debian's unless the machine already has them (e.g. from
# NodeSource, whose nodejs package conflicts with Debian's npm).
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

# --bench: also what bench/run.sh compares against (nginx's mail proxy) and
# plots with.  The default list above stays as it is.
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(nginx libnginx-mod-mail gnuplot-nox linux-perf)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The browser tests' node packages (playwright-core, pinned by
# tests/browser/package-lock.json), once: npm ci only when they are missing.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -d "$REPO/tests/browser/node_modules/playwright-core" ]; then
  echo "setup: npm ci --prefix tests/browser"
  npm ci --prefix "$REPO/tests/browser" --no-audit --no-fund
fi

# Debian starts the packaged Dovecot on install where an init system runs;
# the tests and the demo run their own instances on high ports and never
# touch the system one.
echo "setup: all packages present"
