#!/usr/bin/env bash
# Brings Debian's sqlite3 source package (the release of the installed
# libsqlite3) into build/sqlite-src/ and prints the path of its tree.
#
#   dir=$(scripts/sqlite-src.sh)
#
# apt-get source needs a `deb-src` entry: scripts/add-deb-src.sh adds one
# (deb822, repeating the Debian entry's Signed-By) when there is none.
# Nothing is done twice: an existing entry or tree is used as it is.
# build/ is gitignored: none of SQLite's code is committed here.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src_dir=$root/build/sqlite-src
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

find_tree() {
  find "$src_dir" -mindepth 3 -maxdepth 3 -name shell.c.in -path '*/src/*' 2>/dev/null |
    head -n 1 | sed 's|/src/shell.c.in$||'
}
tree=$(find_tree || true)
if [ -n "$tree" ]; then
  echo "$tree"
  exit 0
fi

# --- a deb-src entry (apt-get update when it adds one) -----------------------
"$root/scripts/add-deb-src.sh"

# --- the source package ------------------------------------------------------
if ! command -v dpkg-source >/dev/null; then
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dpkg-dev >&2
fi
if ! apt-get source --print-uris sqlite3 >/dev/null 2>&1; then
  $SUDO apt-get update -qq >&2
fi
mkdir -p "$src_dir"
# The installed library's release when its source is still published.
version=$(dpkg-query -W -f '${source:Version}' libsqlite3-0 2>/dev/null || true)
(
  cd "$src_dir"
  if [ -n "$version" ] && apt-get source --print-uris "sqlite3=$version" >/dev/null 2>&1; then
    apt-get source -q "sqlite3=$version"
  else
    apt-get source -q sqlite3
  fi
) 2>&1 | grep -vE 'unsandboxed|^dpkg-source: info: applying' >&2 || true
tree=$(find_tree || true)
if [ -z "$tree" ]; then
  echo "error: no SQLite source tree under $src_dir" >&2
  exit 1
fi
echo "$tree"
