#!/usr/bin/env bash
# Installs every Debian package that building, testing and the demo need.
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
)

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

# Debian starts the packaged Dovecot on install where an init system runs;
# the tests and the demo run their own instances on high ports and never
# touch the system one.
echo "setup: all packages present"
