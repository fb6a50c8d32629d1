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
#   4. a stand-in for WeChat's server API (tests/wechat_standin.py) on a
#      loopback port, so that WeChat works without WeChat: the phone is
#      tests/phone_sim.py (the mini program from the command line)
#   5. var/demo/mfagate.conf, then bob gets a TOTP factor and an app password
#   6. mfagate serve in the foreground
# Ports (override with the environment): DEMO_IMAPS=10993 DEMO_IMAP=10143
# DEMO_POP3S=10995 DEMO_POP3=10110 DEMO_SMTPS=10994 DEMO_SMTP=10025
# DEMO_HTTPS=10443 (the web pages) DEMO_WECHAT=10088 (the WeChat stand-in).
# MFAGATE_BIN=PATH runs another binary (with --no-build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

build=1
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
WX_PORT="${DEMO_WECHAT:-10088}"
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
         "$HTTPS_PORT" "$WX_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p is in use (another demo still running?); set DEMO_IMAPS, DEMO_IMAP," \
         "DEMO_POP3S, DEMO_POP3, DEMO_SMTPS, DEMO_SMTP, DEMO_HTTPS or DEMO_WECHAT" >&2
    exit 1
  fi
done

# --- Dovecot ---------------------------------------------------------------
DC_PID=""
MG_PID=""
WX_PID=""
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
  if [ -n "$WX_PID" ] && kill -0 "$WX_PID" 2>/dev/null; then
    echo "demo: stopping the WeChat stand-in"
    stop_pid "$WX_PID" 5
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

# --- the WeChat stand-in -------------------------------------------------------
# tests/wechat_standin.py answers WeChat's server API (wx.login codes,
# access tokens, mini-program codes, subscribe messages) on loopback; its
# control API (/_standin/) mints a phone's login codes and lists the
# messages sent, which is what phone_sim.py's --standin uses.
WX_APPID=wxstandin00000001
WX_SECRET=standin-secret
WX_TEMPLATE=demo-template-1
WX_BASE="http://127.0.0.1:$WX_PORT"
rm -f "$VAR/wechat.port"
"$PY" tests/wechat_standin.py --port "$WX_PORT" --port-file "$VAR/wechat.port" \
  --appid "$WX_APPID" --secret "$WX_SECRET" --template-id "$WX_TEMPLATE" \
  > "$VAR/wechat_standin.log" 2>&1 &
WX_PID=$!
for _ in $(seq 1 100); do
  [ -f "$VAR/wechat.port" ] && break
  if ! kill -0 "$WX_PID" 2>/dev/null; then
    echo "demo: the WeChat stand-in did not start:" >&2; cat "$VAR/wechat_standin.log" >&2; exit 1
  fi
  sleep 0.1
done
[ -f "$VAR/wechat.port" ] || { echo "demo: the WeChat stand-in not ready after 10 s" >&2; exit 1; }
echo "demo: WeChat stand-in on $WX_BASE (log: $VAR/wechat_standin.log)"

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

; WeChat against the local stand-in (tests/wechat_standin.py), never the real
; api.weixin.qq.com.  qr = wxacode (the default, as in production): the QR
; comes from the stand-in's wxa/getwxacodeunlimit, which draws a plain QR of
; "pages/confirm/confirm?scene=<id>" that any QR reader decodes.
[wechat]
appid = $WX_APPID
secret = $WX_SECRET
api_base = $WX_BASE
qr = wxacode
template_id = $WX_TEMPLATE
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

 WeChat, without WeChat: the stand-in above plays WeChat's servers and
 tests/phone_sim.py plays the phone (the mini program).  Two phones, i.e.
 two WeChat users (o-demo-A, o-demo-B); paste into bash, in any folder:
   phoneA() { $PY '$ROOT/tests/phone_sim.py' --base https://127.0.0.1:$HTTPS_PORT \\
     --cafile '$ROOT/certs/server.crt' --standin $WX_BASE \\
     --state '$VAR/phone-A.json' --openid o-demo-A "\$@"; }
   phoneB() { $PY '$ROOT/tests/phone_sim.py' --base https://127.0.0.1:$HTTPS_PORT \\
     --cafile '$ROOT/certs/server.crt' --standin $WX_BASE \\
     --state '$VAR/phone-B.json' --openid o-demo-B "\$@"; }
   phoneA login      (WeChat's wx.login; with --standin/--openid phone_sim has the
                     stand-in mint the code, and does so again whenever needed)
 SCENE below is the "二维码编号" (QR code ID) printed under each QR and push on
 the page; a QR reader's text (pages/confirm/confirm?scene=...) works as well.
 bind: sign in as carol/carolpw, then 微信 -> 绑定 (WeChat -> Bind):
   phoneA show SCENE                 kind=bind mailbox=carol ...
   phoneA answer SCENE confirm       the page says 绑定成功 (bound)
 sign in by scan: 退出登录 (sign out), sign in as carol/carolpw; on 扫码授权 (scan):
   phoneA answer SCENE temporary     signed in, this time only
   phoneA answer SCENE trust         signed in, and this browser skips the step
                                     next time (remove it under 可信设备, trusted devices)
   phoneA answer SCENE deny          refused (重新扫码 for a new QR)
 sign in by code: the 验证码 (code) tab, with the code from
   phoneA accounts                   carol<TAB>123456<TAB>21s
 push: 发送到我的微信 (send to my WeChat); the page shows a two-digit number:
   phoneA inbox                      the pushed requests: SCENE and the message
   phoneA show SCENE                 ... numbers=17,42,88 (three to pick from)
   phoneA answer SCENE temporary --number NN    NN: the page's number; a wrong
                                     one denies the request
 unbind: 微信 -> 解绑 (unbind), then verify: phoneA answer SCENE confirm
   (or the 验证码 tab with phoneA accounts' code)
 rebind to another WeChat user: 微信 -> 修改 (change), verify with
   phoneA answer SCENE confirm, then the new QR:  phoneB answer SCENE confirm
   (phoneB accounts now lists carol, phoneA accounts no more; after an unbind,
   绑定 with phoneB works the same)
 WeChat down:  curl -d '{"mode":"http500","count":1000000}' $WX_BASE/_standin/fail
   back up:    curl -d '{"mode":"none"}' $WX_BASE/_standin/fail

 manage:  $BIN app-password list -c $CONF bob
          $BIN app-password revoke -c $CONF bob --all
          $BIN audit -c $CONF bob
 logs:    mfagate below; Dovecot in $DOVECOT_LOG; WeChat stand-in in $VAR/wechat_standin.log
 Ctrl-C stops mfagate, the WeChat stand-in and Dovecot.
==============================================================================

INFO

# In the background so that Ctrl-C (or SIGTERM to this script) runs the
# trap at once; the trap stops mfagate, then the WeChat stand-in, then Dovecot.
"$BIN" serve -c "$CONF" &
MG_PID=$!
status=0
wait "$MG_PID" || status=$?
MG_PID=""
echo "demo: mfagate exited with status $status"
exit "$status"
