#!/usr/bin/env bash
# The test command (README): installs what is missing, builds, and runs every
# test twice -- against the normal build (build/, RelWithDebInfo) and against
# an ASan+UBSan build (build-asan/, Debug):
#
#   1. scripts/setup.sh                          (Debian packages, idempotent)
#      then node --test tests/miniprogram and pytest tests/test_phone_sim.py
#      and tests/test_wechat_standin.py (the local WeChat API stand-in)
#      (the mini program's logic and the phone simulator; no build needed)
#   2. cmake configure + build
#   3. ctest --test-dir DIR --output-on-failure   (C unit tests)
#   4. python3 -m pytest -q tests/integration     (real Dovecot, real clients;
#                                                   MFAGATE_BIN=DIR/mfagate)
#   5. python3 tests/browser/run.py               (release pass only: headless
#                                                   Chromium clicks through the
#                                                   pages; screenshots in
#                                                   tests/browser/out/)
#
#   scripts/test.sh            both passes
#   scripts/test.sh --quick    the normal build only (no sanitizer pass)
#   extra arguments after -- go to pytest, e.g.  scripts/test.sh --quick -- -k idle
#
# In the sanitizer pass ASAN_OPTIONS=detect_leaks=1 is set, and the
# integration harness fails a test whose mfagate printed a sanitizer report.
# Exits non-zero if any step fails; every step runs even after a failure
# (except the tests of a build that did not build).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0
pytest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --) shift; pytest_args=("$@"); break ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

PY=/usr/bin/python3
JOBS="$(nproc 2>/dev/null || echo 2)"
results=()
failed=0

step() {  # step NAME CMD...: runs CMD, records the outcome
  local name="$1"; shift
  echo
  echo "=== $name"
  if "$@"; then
    results+=("ok    $name")
  else
    results+=("FAIL  $name")
    failed=1
    return 1
  fi
}

build() {  # build DIR TYPE [cmake args...]
  local dir="$1" type="$2"; shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" --log-level=WARNING "$@" &&
    cmake --build "$dir" -j "$JOBS"
}

PASS_ENV=()   # extra environment for the tests of the current pass

unit() {
  env "${PASS_ENV[@]}" ctest --test-dir "$1" --output-on-failure -j "$JOBS"
}

integration() {
  env "${PASS_ENV[@]}" MFAGATE_BIN="$PWD/$1/mfagate" \
    "$PY" -m pytest -q tests/integration "${pytest_args[@]}"
}

browser() {
  MFAGATE_BIN="$PWD/$1/mfagate" "$PY" tests/browser/run.py
}

# The mini program's logic under node with a stand-in wx object, and the
# phone simulator; neither needs a build.
miniprogram() {
  node --test tests/miniprogram/ && "$PY" -m pytest -q tests/test_phone_sim.py tests/test_wechat_standin.py
}

one_pass() {  # one_pass LABEL DIR TYPE [cmake args...]
  local label="$1" dir="$2" type="$3"; shift 3
  built=0
  if step "$label: build ($dir, $type)" build "$dir" "$type" "$@"; then
    built=1
    step "$label: unit tests (ctest)" unit "$dir"
    step "$label: integration tests (pytest)" integration "$dir"
  else
    results+=("skip  $label: tests (no build)")
  fi
}

step "setup (Debian packages)" bash scripts/setup.sh || { echo "setup failed" >&2; exit 1; }
step "mini program and phone simulator (node --test, pytest)" miniprogram

one_pass "release" build RelWithDebInfo
# The pages are the same in both builds: the browser tests run once, here.
if [ "$built" -eq 1 ]; then
  step "release: browser tests (headless Chromium)" browser build
fi

if [ "$quick" -eq 0 ]; then
  PASS_ENV=(
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
  )
  one_pass "asan+ubsan" build-asan Debug -DMFA_SANITIZE=ON
fi

echo
echo "=== summary"
printf '  %s\n' "${results[@]}"
if [ "$failed" -ne 0 ]; then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all passed"
