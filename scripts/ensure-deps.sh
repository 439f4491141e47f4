#!/usr/bin/env bash
# Installs what the test suites need if a machine lacks it: the stock
# sqlite3 shell, SQLite's headers (C example), Debian's python3 (it can
# load extensions) and a C compiler.
set -euo pipefail
missing=()
command -v sqlite3 >/dev/null || missing+=(sqlite3)
[ -f /usr/include/sqlite3.h ] || missing+=(libsqlite3-dev)
[ -x /usr/bin/python3 ] || missing+=(python3)
command -v cc >/dev/null || missing+=(gcc)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
