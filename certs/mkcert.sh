#!/usr/bin/env bash
# Makes a self-signed EC P-256 certificate and key for 127.0.0.1 / localhost
# (with subjectAltName) into a folder: DIR/server.crt and DIR/server.key.
#
#   certs/mkcert.sh [DIR]        (default: the folder this script is in)
#   certs/mkcert.sh --force DIR  (make a new pair even if one exists)
#
# Idempotent: if DIR already holds a pair whose key matches its certificate
# and which is valid for at least another day, it does nothing.  For demos and
# tests only: a self-signed certificate is trusted by nobody unless the client
# is told to (curl --cacert DIR/server.crt).
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
dir="${1:-$(cd "$(dirname "$0")" && pwd)}"
days="${MKCERT_DAYS:-825}"
cn="${MKCERT_CN:-localhost}"

mkdir -p "$dir"
crt="$dir/server.crt"
key="$dir/server.key"

if [ "$force" -eq 0 ] && [ -s "$crt" ] && [ -s "$key" ]; then
  if openssl x509 -in "$crt" -noout -checkend 86400 >/dev/null 2>&1 &&
     [ "$(openssl x509 -in "$crt" -noout -pubkey 2>/dev/null | openssl sha256)" = \
       "$(openssl pkey -in "$key" -pubout 2>/dev/null | openssl sha256)" ]; then
    echo "mkcert: $crt and $key exist and match; nothing to do"
    exit 0
  fi
  echo "mkcert: existing pair in $dir is expired, expiring or mismatched; replacing it"
fi

umask 077
tmp="$(mktemp -d "$dir/.mkcert.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -new -nodes \
  -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$tmp/server.key" -out "$tmp/server.crt" \
  -days "$days" -sha256 \
  -subj "/CN=$cn/O=mfagate test" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
  -addext "basicConstraints=critical,CA:true" \
  -addext "keyUsage=critical,digitalSignature,keyCertSign" \
  -addext "extendedKeyUsage=serverAuth" >/dev/null 2>&1

chmod 600 "$tmp/server.key"
chmod 644 "$tmp/server.crt"
mv -f "$tmp/server.key" "$key"
mv -f "$tmp/server.crt" "$crt"
echo "mkcert: wrote $crt and $key (EC P-256, SAN localhost,127.0.0.1,::1, $days days)"
