#!/usr/bin/env bash
# Runs a command on the current SQLite instead of the system's 3.40.1:
#
#   scripts/with-sqlite-current.sh COMMAND [ARG...]
#
# builds build/sqlite-current (scripts/build-sqlite-current.sh; skipped when
# built) and runs COMMAND with LD_LIBRARY_PATH naming it first, so every
# program linked with the system's libsqlite3.so.0 (Debian's python3,
# speedtest1, the C example) loads the current library, and with SQLITE3 set
# to the shell rebuilt on it (the stock shell refuses another library).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi
dir=$("$root/scripts/build-sqlite-current.sh")
export LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SQLITE3=$dir/sqlite3
version=$(/usr/bin/python3 -c 'import sqlite3; print(sqlite3.sqlite_version)')
echo "with-sqlite-current: SQLite $version from $dir (LD_LIBRARY_PATH), shell $SQLITE3"
exec "$@"
