#!/usr/bin/env bash
# bench/run.sh - the one command: builds the generator and the fast backend,
# then runs bench/bench.py (Dovecot, nginx's mail proxy and mfagate side by
# side on loopback; see bench/README.md).
#
#   bash bench/run.sh --quick        # ~5 minutes, 1 repeat
#   bash bench/run.sh                # ~24 minutes, 3 repeats, medians (scenarios 1-7)
#   bash bench/run.sh --only 2,4     # some scenarios
#
# MFAGATE_BIN picks the mfagate binary (default: built here in build-bench/,
# or build/mfagate when the tree does not build right now).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
bdir="$repo/build-bench"

bash "$repo/scripts/setup.sh" --bench >/dev/null
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cmake -S "$repo" -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$bdir" -j2 --target mfa-loadgen mfa-fastback mfa-hog >/dev/null
mfagate="${MFAGATE_BIN:-}"
if [ -z "$mfagate" ]; then
  if cmake --build "$bdir" -j2 --target mfagate >"$bdir/mfagate-build.log" 2>&1; then
    mfagate="$bdir/mfagate"
  elif [ -x "$repo/build/mfagate" ]; then
    echo "bench: mfagate does not build now (see $bdir/mfagate-build.log); using build/mfagate" >&2
    mfagate="$repo/build/mfagate"
  else
    echo "bench: no mfagate binary" >&2
    exit 1
  fi
fi

# bench.py stops every server it started (finally + signals); this trap is
# for the case where python itself is killed: its children are in their own
# process groups, recorded nowhere else, so end bench.py's group politely.
py_pid=""
cleanup() { [ -n "$py_pid" ] && kill -TERM "$py_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
/usr/bin/python3 "$here/bench.py" --loadgen "$bdir/bench/mfa-loadgen" \
  --fastback "$bdir/bench/mfa-fastback" --hog "$bdir/bench/mfa-hog" --mfagate "$mfagate" "$@" &
py_pid=$!
wait "$py_pid"
rc=$?
py_pid=""
exit $rc
