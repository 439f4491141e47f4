#!/usr/bin/env bash
# Builds a current SQLite next to the system's 3.40.1, so that the suites
# that use the system library can run unchanged on both generations:
#
#   build/sqlite-current/libsqlite3.so.0   the amalgamation rusqlite bundles
#                                          for the itest crate (libsqlite3-sys
#                                          in itest/Cargo.lock, from the Cargo
#                                          registry), compiled with the flags
#                                          of Debian's libsqlite3-0
#   build/sqlite-current/sqlite3           the stock shell's own source (src/
#                                          shell.c.in of Debian's 3.40.1
#                                          package, through tool/mkshellc.tcl)
#                                          compiled against that library
#
# With LD_LIBRARY_PATH=build/sqlite-current, any program linked with the
# system's libsqlite3.so.0 (Debian's python3, speedtest1, the C example)
# runs on the current SQLite instead. The stock /usr/bin/sqlite3 cannot:
# the shell refuses a library whose source id differs from its header's,
# hence the rebuilt shell, which is the same shell program.
#
#   scripts/build-sqlite-current.sh        prints the directory
#
# Needs tclsh (installed when missing) and Debian's sqlite3 source
# (scripts/sqlite-src.sh). Skips what is already built. Everything lands in
# build/ (gitignored).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/sqlite-current
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
cc=${CC:-cc}

amalgamation=$("$root/scripts/sqlite-amalgamation.sh")
want=$(sed -n 's/^#define SQLITE_VERSION *"\(.*\)"/\1/p' "$amalgamation/sqlite3.h")

# Debian's CFLAGS for libsqlite3-0 (debian/rules of 3.40.1-2).
flags=(-O2 -fno-strict-aliasing -fPIC
  -DSQLITE_SECURE_DELETE -DSQLITE_ENABLE_COLUMN_METADATA
  -DSQLITE_ENABLE_FTS3 -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS4 -DSQLITE_ENABLE_FTS5
  -DSQLITE_ENABLE_RTREE=1 -DSQLITE_SOUNDEX=1 -DSQLITE_ENABLE_UNLOCK_NOTIFY
  -DSQLITE_OMIT_LOOKASIDE=1 -DSQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_ALLOW_ROWID_IN_VIEW
  -DSQLITE_ENABLE_UPDATE_DELETE_LIMIT=1 -DSQLITE_ENABLE_LOAD_EXTENSION
  -DSQLITE_ENABLE_MATH_FUNCTIONS -DSQLITE_LIKE_DOESNT_MATCH_BLOBS -DSQLITE_THREADSAFE=1
  -DSQLITE_ENABLE_FTS3_TOKENIZER=1 -DSQLITE_USE_URI=1 -DSQLITE_MAX_SCHEMA_RETRY=25
  -DSQLITE_ENABLE_PREUPDATE_HOOK -DSQLITE_ENABLE_SESSION -DSQLITE_ENABLE_STMTVTAB
  -DSQLITE_MAX_VARIABLE_NUMBER=250000 -DSQLITE_MAX_DEFAULT_PAGE_SIZE=32768)

lib=$out/libsqlite3.so.0
have=""
[ -f "$lib" ] && have=$(LD_LIBRARY_PATH=$out /usr/bin/python3 -c 'import sqlite3; print(sqlite3.sqlite_version)' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  echo "building build/sqlite-current/libsqlite3.so.0: SQLite $want" >&2
  mkdir -p "$out"
  rm -f "$out/sqlite3"
  "$cc" "${flags[@]}" -w -shared -Wl,-soname,libsqlite3.so.0 -o "$lib.tmp" \
    "$amalgamation/sqlite3.c" -lm -lpthread -ldl
  mv "$lib.tmp" "$lib"
  cp "$amalgamation/sqlite3.h" "$amalgamation/sqlite3ext.h" "$out/"
fi

shell=$out/sqlite3
if [ ! -x "$shell" ]; then
  command -v tclsh >/dev/null || {
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tcl >&2
  }
  tree=$("$root/scripts/sqlite-src.sh")
  echo "building build/sqlite-current/sqlite3: the shell of ${tree##*/} on SQLite $want" >&2
  tclsh "$tree/tool/mkshellc.tcl" >"$out/shell.c"
  # The header of the library it runs on: the shell compares source ids.
  "$cc" -O2 -w -I"$out" -DSQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_ENABLE_STMTVTAB \
    -o "$shell.tmp" "$out/shell.c" -L"$out" -l:libsqlite3.so.0 \
    -Wl,-rpath,'$ORIGIN' -lm -ldl -lpthread
  mv "$shell.tmp" "$shell"
fi
got=$("$shell" -version | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "error: build/sqlite-current/sqlite3 reports $got, not $want" >&2
  exit 1
fi
echo "$out"
