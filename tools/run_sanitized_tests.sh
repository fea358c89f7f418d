#!/usr/bin/env bash
# Build fastxent with AddressSanitizer + UndefinedBehaviorSanitizer (FASTXENT_SANITIZE=1, -O1 -g)
# in a temporary copy of the tree (the checkout's own extension is left alone), then run the test
# suite with the sanitizer runtimes preloaded into the (uninstrumented) Python interpreter.
#
# Fails when the build or any test fails, or when any sanitizer report is written, including
# reports from child processes (every report goes to a file under $LOGS; see below).
#
#   tools/run_sanitized_tests.sh                 # whole suite
#   tools/run_sanitized_tests.sh -k hardening    # extra arguments go to pytest
#   FUZZ_SECONDS=60 tools/run_sanitized_tests.sh # then also fuzz/fuzz_fastxent.py (plain seeded loop,
#                                                # FUZZ_SEED, default 0) for 60 s under the sanitizers
#   TEST_PATHS="tests/test_losses.py tests/test_exp.py" tools/run_sanitized_tests.sh   # those only
#   FASTXENT_SIMDE=1 tools/run_sanitized_tests.sh   # the AVX-512 variant emulated (setup.py), sanitized
#
# Leak checking is OFF (ASAN_OPTIONS=detect_leaks=0): CPython keeps interned objects, module
# state and NumPy caches alive until exit by design, so LeakSanitizer reports thousands of
# "leaks" that are not fastxent's.  Heap/stack overflows, use-after-free and every UBSan check
# (signed overflow, misaligned access, shifts, float->int overflow, ...) stay on.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
CC_="${CC:-gcc}"

ASAN_LIB="$("$CC_" -print-file-name=libasan.so)"
UBSAN_LIB="$("$CC_" -print-file-name=libubsan.so)"
if [[ "$ASAN_LIB" != /* || ! -e "$ASAN_LIB" ]]; then
    echo "run_sanitized_tests: libasan.so not found by '$CC_ -print-file-name=libasan.so'" >&2
    exit 2
fi
PRELOAD="$ASAN_LIB"
[[ "$UBSAN_LIB" == /* && -e "$UBSAN_LIB" ]] && PRELOAD="$PRELOAD:$UBSAN_LIB"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastxent-asan.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
SRC="$WORK/src"
LOGS="$WORK/reports"
mkdir -p "$SRC" "$LOGS"

echo "== sanitizer build (FASTXENT_SANITIZE=1) in $SRC"
cp -r "$ROOT/setup.py" "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/LICENSE" "$ROOT/src_c" "$ROOT/fastxent" \
      "$ROOT/tests" "$SRC/"
rm -f "$SRC"/fastxent/_core.c "$SRC"/fastxent/_core.*.so "$SRC"/fastxent/_core.*.pyd
for d in fuzz docs bench; do [[ -d "$ROOT/$d" ]] && cp -r "$ROOT/$d" "$SRC/"; done
(cd "$SRC" && FASTXENT_SANITIZE=1 "$PY" setup.py -q build_ext --inplace --force > "$WORK/build.log" 2>&1) || {
    cat "$WORK/build.log" >&2; echo "run_sanitized_tests: build failed" >&2; exit 1; }
grep -q -- "-fsanitize=address,undefined" "$WORK/build.log" || {
    echo "run_sanitized_tests: the build did not use the sanitizer flags" >&2; exit 1; }

export LD_PRELOAD="$PRELOAD"
# ASan: log_path writes one file per reporting process (children of the tests included), checked
# below.  UBSan (GCC's runtime) reports on stderr whatever log_path says: halt_on_error=1 makes the
# reporting process exit with status 1, and the pytest output is searched for reports as well.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:log_path=$LOGS/asan:${ASAN_OPTIONS_EXTRA:-}"
# tools/ubsan.supp lists the known, reported UBSan findings (see there) so that new ones still fail.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$ROOT/tools/ubsan.supp"
export PYTHONPATH="$SRC"
export FASTXENT_SANITIZED=1   # tests may skip what is pointless under ASan (huge real allocations)

echo "== tests under ASan + UBSan (LD_PRELOAD=$LD_PRELOAD)"
# The extension must be the sanitized copy, not an installed fastxent.
(cd "$SRC" && "$PY" -c "import fastxent._core as c, sys; sys.exit(0 if c.__file__.startswith('$SRC') else 1)") || {
    echo "run_sanitized_tests: fastxent was not imported from the sanitized copy" >&2; exit 1; }
status=0
(cd "$SRC" && "$PY" -m pytest ${TEST_PATHS:-tests} -q -p no:cacheprovider -x "$@" 2>&1 | tee "$WORK/pytest.log"; exit "${PIPESTATUS[0]}") \
    || status=$?

if [[ $status -eq 0 && "${FUZZ_SECONDS:-0}" != "0" ]]; then
    echo "== fuzz/fuzz_fastxent.py --plain for ${FUZZ_SECONDS} s under ASan + UBSan"
    # the plain loop (no libFuzzer): atheris' own runtime does not mix with GCC's libasan
    (cd "$WORK" && "$PY" "$SRC/fuzz/fuzz_fastxent.py" --plain -max_total_time="$FUZZ_SECONDS" \
        -seed="${FUZZ_SEED:-0}" -artifact_prefix="$WORK/" 2>&1 | tee "$WORK/fuzz.log"; exit "${PIPESTATUS[0]}") \
        || status=$?
    if [[ $status -ne 0 ]]; then  # keep the failing input (the last one run, after a hard crash)
        kept="$(ls "$WORK"/crash-* 2>/dev/null | head -1)"
        [[ -z "$kept" && -e "$WORK/fuzz-last-input" ]] && kept="$WORK/fuzz-last-input"
        if [[ -n "$kept" ]]; then
            cp "$kept" "$ROOT/"
            echo "run_sanitized_tests: the failing input is $ROOT/$(basename "$kept"); replay with" \
                 "python fuzz/fuzz_fastxent.py --plain --repro $(basename "$kept")" >&2
        fi
    fi
fi

if grep -E -q "(: runtime error: |ERROR: AddressSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer)" \
        "$WORK/pytest.log" "$WORK"/fuzz.log 2>/dev/null; then
    echo "== sanitizer reports in the test output" >&2
    grep -E -h -A3 "(: runtime error: |ERROR: AddressSanitizer)" "$WORK/pytest.log" "$WORK"/fuzz.log 2>/dev/null \
        | head -60 >&2
    echo "run_sanitized_tests: FAILED: sanitizer reports above" >&2
    exit 1
fi
if compgen -G "$LOGS/*" > /dev/null; then
    echo "== sanitizer reports" >&2
    for f in "$LOGS"/*; do echo "--- $f" >&2; cat "$f" >&2; done
    echo "run_sanitized_tests: FAILED: sanitizer reports above" >&2
    exit 1
fi
if [[ $status -ne 0 ]]; then
    echo "run_sanitized_tests: FAILED: pytest exit status $status" >&2
    exit "$status"
fi
echo "run_sanitized_tests: OK (no sanitizer reports)"
