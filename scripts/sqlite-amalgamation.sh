#!/usr/bin/env bash
# Prints the directory of the SQLite amalgamation (sqlite3.c, sqlite3.h)
# that rusqlite bundles for the itest crate: libsqlite3-sys at the version
# itest/Cargo.lock pins, from the Cargo registry, fetched when missing.
# The current-SQLite builds (build-sqlite-current.sh, build-sqlite-recover.sh)
# compile it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
sys_ver=$(awk '/^name = "libsqlite3-sys"$/ { getline; gsub(/"/, "", $3); print $3; exit }' "$root/itest/Cargo.lock")
find_amalgamation() {
  ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"libsqlite3-sys-$sys_ver"/sqlite3 2>/dev/null | head -n 1
}
amalgamation=$(find_amalgamation || true)
if [ -z "$amalgamation" ]; then
  (cd "$root/itest" && cargo fetch -q) >&2
  amalgamation=$(find_amalgamation)
fi
[ -n "$amalgamation" ] || { echo "error: no amalgamation of libsqlite3-sys $sys_ver" >&2; exit 2; }
echo "$amalgamation"
