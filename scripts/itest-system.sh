#!/usr/bin/env bash
# The itest suite against the system SQLite (Debian 12: 3.40.1) instead of
# the SQLite rusqlite bundles: the itest crate's `system` feature (no
# `bundled`), so rusqlite links /usr/lib's libsqlite3 through pkg-config.
# Its own target directory, itest/target/system, keeps the bundled build of
# `make matrix` intact.
#
#   scripts/itest-system.sh [SO] [-- cargo test arguments...]
#
# Prints cargo's per-binary results and a last line "N passed, M failed"
# summed over every test binary.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
so=$root/libmetadwr.so
if [ $# -gt 0 ] && [ "$1" != -- ]; then
  so=$1
  shift
fi
[ "${1:-}" = -- ] && shift
case $so in /*) ;; *) so=$(cd "$(dirname "$so")" && pwd)/$(basename "$so") ;; esac
if [ ! -f "$so" ]; then
  echo "error: $so not found (run make build)" >&2
  exit 2
fi
lib_version=$(pkg-config --modversion sqlite3 2>/dev/null || echo unknown)
echo "itest-system: rusqlite linked with the system libsqlite3 $lib_version, extension $so"

log=$(mktemp "${TMPDIR:-/tmp}/metadwr-itest-system.XXXXXX")
snap=$(mktemp -d "${TMPDIR:-/tmp}/metadwr-itest-system-so.XXXXXX")
trap 'rm -rf "$log" "$snap"' EXIT
# A private copy of the extension: a rebuild during the run cannot pull it
# from under the tests.
cp "$so" "$snap/libmetadwr.so"
so=$snap/libmetadwr.so
cd "$root/itest" || exit 2
# The reliability harness finds dwr-inspect next to the extension; the
# private copy has none beside it.
export DWR_INSPECT=${DWR_INSPECT:-$root/target/release/dwr-inspect}
METADWR_SO=$so CARGO_TARGET_DIR=$root/itest/target/system \
  cargo test --release --no-default-features --features system --no-fail-fast "$@" -- --test-threads=2 \
  2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# The library each test binary really uses, from one of them.
bin=$(find "$root/itest/target/system/release/deps" -maxdepth 1 -type f -executable -name 'sql_surface-*' 2>/dev/null | head -n 1)
[ -n "$bin" ] && echo "test binaries link: $(ldd "$bin" | awk '/sqlite3/ {print $3}')"
passed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")
echo "itest against SQLite $lib_version:"
echo "$passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
