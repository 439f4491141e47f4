#!/usr/bin/env bash
# Builds the newest sqlite3 shell this build can reach, with a working
# `.recover`, for the salvage lab (scripts/salvage-lab.py):
#
#   build/sqlite-recover/sqlite3      one static binary: the shell's source
#                                     compiled with the newest amalgamation
#
# `.recover` reads pages through the sqlite_dbpage virtual table, which only
# exists in a library compiled with -DSQLITE_ENABLE_DBPAGE_VTAB: Debian's
# libsqlite3 and build/sqlite-current lack it (the stock /usr/bin/sqlite3
# answers `.recover` with "no such table: sqlite_dbpage"), hence this
# separate build.
#
# * the library: the amalgamation libsqlite3-sys bundles for the itest crate
#   (itest/Cargo.lock, from the Cargo registry; the same SQLite as
#   build/sqlite-current), with Debian's flags plus DBPAGE_VTAB;
# * the shell: src/shell.c of the newest SQLite release a package registry
#   ships whole. Crates and PyPI sdists carry only sqlite3.c (APSW's sdist
#   downloads SQLite at build time); the npm package `sqlite3` ships
#   sqlite-autoconf-<ver>.tar.gz, whose shell.c is the generated shell of
#   that release (pinned below). When npm is not there or the registry
#   refuses, the shell of Debian's 3.40.1 source package (scripts/
#   sqlite-src.sh, through tool/mkshellc.tcl) is used instead.
#
# The shell compares the library's source id with its header's, so it is
# compiled against the amalgamation's own sqlite3.h, never the one beside
# the shell's source.
#
#   scripts/build-sqlite-recover.sh     prints the path of the shell
#
# Skips what is already built. Everything lands in build/ (gitignored):
# none of SQLite's code is committed here.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/sqlite-recover
cc=${CC:-cc}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

# The npm package whose bundled sqlite-autoconf gives the shell's source.
NPM_SQLITE3=${NPM_SQLITE3:-sqlite3@6.0.1}

amalgamation=$("$root/scripts/sqlite-amalgamation.sh")
want=$(sed -n 's/^#define SQLITE_VERSION *"\(.*\)"/\1/p' "$amalgamation/sqlite3.h")

mkdir -p "$out"

# --- the shell's source ------------------------------------------------------
# build/sqlite-recover/shell.c and shell-origin.txt (one line: where it came from)
if [ ! -s "$out/shell.c" ] || [ ! -s "$out/shell-origin.txt" ]; then
  rm -f "$out/shell.c" "$out/shell-origin.txt" "$out/sqlite3"
  got_npm=""
  if command -v npm >/dev/null; then
    npm_dir=$out/npm
    rm -rf "$npm_dir" && mkdir -p "$npm_dir"
    if (cd "$npm_dir" && timeout 300 npm pack -q "$NPM_SQLITE3" >/dev/null 2>&1); then
      tgz=$(ls "$npm_dir"/*.tgz 2>/dev/null | head -n 1)
      inner=$(tar tzf "$tgz" | grep -E '^package/deps/sqlite-autoconf-[0-9]+\.tar\.gz$' | head -n 1 || true)
      if [ -n "$inner" ]; then
        tar xzf "$tgz" -C "$npm_dir" "$inner"
        auto=$(basename "$inner" .tar.gz)
        if tar xzf "$npm_dir/$inner" -C "$npm_dir" "$auto/shell.c" 2>/dev/null; then
          cp "$npm_dir/$auto/shell.c" "$out/shell.c.tmp"
          # The release the shell belongs to: sqlite-autoconf-3520000 is 3.52.0.
          num=${auto#sqlite-autoconf-}
          rel="$((10#${num:0:1})).$((10#${num:1:2})).$((10#${num:3:2}))"
          echo "shell.c of SQLite $rel ($auto from the npm package $NPM_SQLITE3)" >"$out/shell-origin.txt.tmp"
          got_npm=1
        fi
      fi
    fi
    rm -rf "$npm_dir"
  fi
  if [ -z "$got_npm" ]; then
    echo "build-sqlite-recover: no shell.c from npm ($NPM_SQLITE3); using Debian's 3.40.1 shell source" >&2
    command -v tclsh >/dev/null || {
      $SUDO apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tcl >&2
    }
    tree=$("$root/scripts/sqlite-src.sh")
    tclsh "$tree/tool/mkshellc.tcl" >"$out/shell.c.tmp"
    echo "shell.c of SQLite 3.40.1 (src/shell.c.in of Debian's ${tree##*/})" >"$out/shell-origin.txt.tmp"
  fi
  mv "$out/shell.c.tmp" "$out/shell.c"
  mv "$out/shell-origin.txt.tmp" "$out/shell-origin.txt"
fi

# --- the library, with sqlite_dbpage -----------------------------------------
# Debian's CFLAGS for libsqlite3-0 (as scripts/build-sqlite-current.sh) plus
# DBPAGE_VTAB, which `.recover` needs.
flags=(-O2 -fno-strict-aliasing
  -DSQLITE_SECURE_DELETE -DSQLITE_ENABLE_COLUMN_METADATA
  -DSQLITE_ENABLE_FTS3 -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS4 -DSQLITE_ENABLE_FTS5
  -DSQLITE_ENABLE_RTREE=1 -DSQLITE_SOUNDEX=1 -DSQLITE_ENABLE_UNLOCK_NOTIFY
  -DSQLITE_OMIT_LOOKASIDE=1 -DSQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_ALLOW_ROWID_IN_VIEW
  -DSQLITE_ENABLE_UPDATE_DELETE_LIMIT=1 -DSQLITE_ENABLE_LOAD_EXTENSION
  -DSQLITE_ENABLE_MATH_FUNCTIONS -DSQLITE_LIKE_DOESNT_MATCH_BLOBS -DSQLITE_THREADSAFE=1
  -DSQLITE_ENABLE_FTS3_TOKENIZER=1 -DSQLITE_USE_URI=1 -DSQLITE_MAX_SCHEMA_RETRY=25
  -DSQLITE_ENABLE_PREUPDATE_HOOK -DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_STMTVTAB
  -DSQLITE_MAX_VARIABLE_NUMBER=250000 -DSQLITE_MAX_DEFAULT_PAGE_SIZE=32768
  -DSQLITE_ENABLE_DBPAGE_VTAB)

obj=$out/sqlite3-$want.o
if [ ! -f "$obj" ]; then
  echo "building build/sqlite-recover: SQLite $want with DBPAGE_VTAB" >&2
  rm -f "$out"/sqlite3-*.o "$out/sqlite3"
  cp "$amalgamation/sqlite3.h" "$amalgamation/sqlite3ext.h" "$out/"
  "$cc" "${flags[@]}" -w -c -o "$obj.tmp" "$amalgamation/sqlite3.c"
  mv "$obj.tmp" "$obj"
fi

shell=$out/sqlite3
if [ ! -x "$shell" ]; then
  echo "building build/sqlite-recover/sqlite3: $(cat "$out/shell-origin.txt") on SQLite $want" >&2
  # -I$out first: the amalgamation's sqlite3.h, whose source id the library has.
  "$cc" -O2 -w -I"$out" -DSQLITE_ENABLE_DBPAGE_VTAB -DSQLITE_ENABLE_DBSTAT_VTAB \
    -DSQLITE_ENABLE_STMTVTAB -o "$shell.tmp" "$out/shell.c" "$obj" -lm -ldl -lpthread
  mv "$shell.tmp" "$shell"
fi
got=$("$shell" -version | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "error: build/sqlite-recover/sqlite3 reports $got, not $want" >&2
  exit 1
fi
echo "$shell"
