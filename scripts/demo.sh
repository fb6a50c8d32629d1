#!/usr/bin/env bash
# The README's first command: mfagate in front of a real Dovecot, on this
# machine, in one terminal.  Ctrl-C stops everything.
#
#   scripts/demo.sh              setup, build, certificates, Dovecot, mfagate
#   scripts/demo.sh --no-build   use the existing build/mfagate
#
# What it does:
#   1. scripts/setup.sh (Debian packages), cmake build into build/
#   2. certs/mkcert.sh certs     (self-signed EC P-256 pair for 127.0.0.1/localhost)
#   3. a private Dovecot (tests/integration/harness/dovecot.py) in var/demo/dovecot,
#      on free loopback ports, users alice/alicepw, bob/bobpw, carol/carolpw and
#      the master user mfagate
#   4. var/demo/mfagate.conf, then bob gets a TOTP factor and an app password
#   5. mfagate serve in the foreground
# Ports (override with the environment): DEMO_IMAPS=10993 DEMO_IMAP=10143
# DEMO_POP3S=10995 DEMO_POP3=10110 DEMO_SMTPS=10994 DEMO_SMTP=10025
# DEMO_HTTPS=10443 (the web pages).
# MFAGATE_BIN=PATH runs another binary (with --no-build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

build=1
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

IMAPS_PORT="${DEMO_IMAPS:-10993}"
IMAP_PORT="${DEMO_IMAP:-10143}"
POP3S_PORT="${DEMO_POP3S:-10995}"
POP3_PORT="${DEMO_POP3:-10110}"
SMTPS_PORT="${DEMO_SMTPS:-10994}"
SMTP_PORT="${DEMO_SMTP:-10025}"
HTTPS_PORT="${DEMO_HTTPS:-10443}"
VAR="$ROOT/var/demo"
BIN="${MFAGATE_BIN:-$ROOT/build/mfagate}"
CONF="$VAR/mfagate.conf"
PY=/usr/bin/python3

bash scripts/setup.sh
if [ "$build" -eq 1 ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo --log-level=WARNING
  cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
fi
[ -x "$BIN" ] || { echo "demo: no $BIN (build failed?)" >&2; exit 1; }
bash certs/mkcert.sh certs

mkdir -p "$VAR"
[ -f "$ROOT/var/.gitignore" ] || echo '*' > "$ROOT/var/.gitignore"

for p in "$IMAPS_PORT" "$IMAP_PORT" "$POP3S_PORT" "$POP3_PORT" "$SMTPS_PORT" "$SMTP_PORT" \
         "$HTTPS_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p is in use (another demo still running?); set DEMO_IMAPS, DEMO_IMAP," \
         "DEMO_POP3S, DEMO_POP3, DEMO_SMTPS, DEMO_SMTP or DEMO_HTTPS" >&2
    exit 1
  fi
done

# --- Dovecot ---------------------------------------------------------------
DC_PID=""
MG_PID=""
stop_pid() {  # stop_pid PID SECONDS: SIGTERM, wait, SIGKILL
  local pid="$1" secs="$2"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((secs * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$MG_PID" ] && kill -0 "$MG_PID" 2>/dev/null; then
    echo "demo: stopping mfagate"
    stop_pid "$MG_PID" 10
  fi
  if [ -n "$DC_PID" ] && kill -0 "$DC_PID" 2>/dev/null; then
    echo "demo: stopping Dovecot"
    stop_pid "$DC_PID" 15
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -f "$VAR/dovecot/ports.env"
"$PY" tests/integration/harness/dovecot.py --dir "$VAR/dovecot" > "$VAR/dovecot.out" 2>&1 &
DC_PID=$!
for _ in $(seq 1 200); do
  [ -f "$VAR/dovecot/ports.env" ] && break
  if ! kill -0 "$DC_PID" 2>/dev/null; then
    echo "demo: Dovecot did not start:" >&2; cat "$VAR/dovecot.out" >&2; exit 1
  fi
  sleep 0.1
done
[ -f "$VAR/dovecot/ports.env" ] || { echo "demo: Dovecot not ready after 20 s" >&2; exit 1; }
# shellcheck disable=SC1091
. "$VAR/dovecot/ports.env"
echo "demo: Dovecot on 127.0.0.1: IMAP $DOVECOT_IMAP_PORT, POP3 $DOVECOT_POP3_PORT," \
     "submission $DOVECOT_SUBMISSION_PORT (log: $DOVECOT_LOG);" \
     "SMTP sink (relay and inbound MTA) $DOVECOT_SINK_PORT"
SINK_DIR="$VAR/dovecot/sink"

# --- mfagate config ----------------------------------------------------------
# Relative paths are relative to this file's folder (var/demo).
cat > "$CONF" <<CONF
; mfagate demo configuration, written by scripts/demo.sh
[server]
workers = 2
state_dir = ./state
allow_plaintext_auth = no
log_level = info

[tls]
cert = ../../certs/server.crt
key  = ../../certs/server.key

[listen]
imaps = 127.0.0.1:$IMAPS_PORT
imap  = 127.0.0.1:$IMAP_PORT
pop3s = 127.0.0.1:$POP3S_PORT
pop3  = 127.0.0.1:$POP3_PORT
smtps = 127.0.0.1:$SMTPS_PORT
smtp  = 127.0.0.1:$SMTP_PORT
https = 127.0.0.1:$HTTPS_PORT

[backend]
host = 127.0.0.1
imap = $DOVECOT_IMAP_PORT
pop3 = $DOVECOT_POP3_PORT
smtp = $DOVECOT_SUBMISSION_PORT
imap_tls = no
pop3_tls = no
smtp_tls = no
; unauthenticated SMTP (inbound mail) goes to the demo's SMTP sink
smtp_inbound = $DOVECOT_SINK_PORT
master_user = $DOVECOT_MASTER_USER
master_password_file = dovecot/master-password
forward_client_addr = yes

[smtp]
unauthenticated = relay

[limits]
preauth_timeout = 60s
idle_timeout = 30m
backend_timeout = 5s
shutdown_grace = 5s
CONF
chmod 600 "$CONF"
"$BIN" check-config -c "$CONF"

# --- bob: a second factor and an app password ---------------------------------
if "$BIN" factor list -c "$CONF" bob 2>/dev/null | grep -qi totp; then
  echo "demo: bob already has a TOTP factor (state in $VAR/state)"
  TOTP_URI="(enrolled by an earlier run)"
else
  TOTP_URI="$("$BIN" totp enroll -c "$CONF" bob | tail -n 1)"
fi
APP_PW="$("$BIN" app-password create -c "$CONF" bob --name "Demo mail client" | tail -n 1)"

cat <<INFO

==============================================================================
 mfagate demo on 127.0.0.1 -- IMAPS $IMAPS_PORT, IMAP+STARTTLS $IMAP_PORT,
   POP3S $POP3S_PORT, POP3+STLS $POP3_PORT, SMTPS $SMTPS_PORT, SMTP+STARTTLS $SMTP_PORT
==============================================================================
 the web pages (sign in, two-step verification, client-specific passwords):
   https://127.0.0.1:$HTTPS_PORT/   (accept the self-signed certificate;
   sign in as carol/carolpw and bind an authenticator app, or as bob/bobpw
   with a code from the authenticator URI below)

 alice (no second factor): account password works
   curl --cacert certs/server.crt imaps://127.0.0.1:$IMAPS_PORT/INBOX -u alice:alicepw

 bob has a TOTP factor, so his account password is refused:
   curl --cacert certs/server.crt imaps://127.0.0.1:$IMAPS_PORT/INBOX -u bob:bobpw
 bob's authenticator URI:   $TOTP_URI
 bob's app password (shown once, spaces optional):   $APP_PW
   curl --cacert certs/server.crt imaps://127.0.0.1:$IMAPS_PORT/INBOX -u 'bob:$APP_PW'
   curl --cacert certs/server.crt --ssl-reqd imap://127.0.0.1:$IMAP_PORT/INBOX -u 'bob:$APP_PW'

 POP3 (a listing; add a message number to the URL to fetch one):
   curl --cacert certs/server.crt pop3s://127.0.0.1:$POP3S_PORT/ -u 'bob:$APP_PW'
   curl --cacert certs/server.crt --ssl-reqd pop3://127.0.0.1:$POP3_PORT/ -u alice:alicepw

 SMTP (Dovecot submission relays to the demo's sink: messages land in
 $SINK_DIR/):
   swaks --server 127.0.0.1:$SMTP_PORT --tls --auth PLAIN --auth-user bob \\
         --auth-password '$APP_PW' --from bob@localhost --to carol@example.com
   swaks --server 127.0.0.1:$SMTPS_PORT --tlsc --auth LOGIN --auth-user alice \\
         --auth-password alicepw --from alice@localhost --to carol@example.com
   curl --cacert certs/server.crt smtps://127.0.0.1:$SMTPS_PORT -u 'bob:$APP_PW' \\
         --mail-from bob@localhost --mail-rcpt carol@example.com -T message.eml   (any message file)
 inbound mail (another server, no AUTH) is relayed unchanged to the sink:
   swaks --server 127.0.0.1:$SMTP_PORT --ehlo mx.example.org \\
         --from someone@example.org --to alice@localhost

 by hand:
   openssl s_client -quiet -CAfile certs/server.crt -connect 127.0.0.1:$IMAPS_PORT
   openssl s_client -quiet -CAfile certs/server.crt -starttls imap -connect 127.0.0.1:$IMAP_PORT
   then:  a LOGIN alice alicepw   /   b SELECT INBOX   /   c LOGOUT
   openssl s_client -quiet -CAfile certs/server.crt -starttls pop3 -connect 127.0.0.1:$POP3_PORT
   openssl s_client -quiet -CAfile certs/server.crt -starttls smtp -connect 127.0.0.1:$SMTP_PORT

 Thunderbird: incoming IMAP, server 127.0.0.1, port $IMAPS_PORT, SSL/TLS
   (or $IMAP_PORT, STARTTLS; POP3: $POP3S_PORT / $POP3_PORT), outgoing SMTP
   $SMTPS_PORT SSL/TLS (or $SMTP_PORT, STARTTLS), normal password; accept the
   self-signed certificate (certs/server.crt) when asked.

 manage:  $BIN app-password list -c $CONF bob
          $BIN app-password revoke -c $CONF bob --all
          $BIN audit -c $CONF bob
 logs:    mfagate below; Dovecot in $DOVECOT_LOG
 Ctrl-C stops mfagate and Dovecot.
==============================================================================

INFO

# In the background so that Ctrl-C (or SIGTERM to this script) runs the
# trap at once; the trap stops mfagate, then Dovecot.
"$BIN" serve -c "$CONF" &
MG_PID=$!
status=0
wait "$MG_PID" || status=$?
MG_PID=""
echo "demo: mfagate exited with status $status"
exit "$status"
