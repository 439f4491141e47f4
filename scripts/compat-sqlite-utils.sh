#!/usr/bin/env bash
# sqlite-utils' own pytest suite (library and CLI over Python's stdlib
# sqlite3), run by Debian's /usr/bin/python3 in a venv under build/, twice:
#
#   plain    the system SQLite through the stock unix VFS
#   metadwr  the extension loaded at the start of every Python process of
#            the venv (scripts/metadwr_compat_pytest.py, installed with a
#            .pth file; active only when METADWR_COMPAT_SO is set) and
#            METADWR_ENABLE=1, so every file database the tests open, in
#            pytest and in the CLI subprocesses they start, is protected
#
# Every test must have the same outcome (pass, fail, error, skip, xfail,
# xpass) in both runs, except the tests of the EXPECTED list below, which
# must fail in the metadwr run for exactly the documented reason. Prints
# both runs' counts, every test whose outcome differs, and a last line
# "N passed, M failed": N tests with the plain run's outcome (or the
# documented expected failure), M with another outcome or missing from a
# run. Exits non-zero when M > 0 or when a probe says metadwr was not in
# use.
#
#   scripts/compat-sqlite-utils.sh [SO]       (SO defaults to ./libmetadwr.so)
#
# sqlite-utils comes from PyPI at run time, pinned: its sdist (which holds
# tests/ and docs/, read by tests/test_docs.py) is downloaded into
# build/sqlite-utils/, the package is installed from that same sdist into
# the venv, and the tests run from a copy of the sdist without its
# sqlite_utils/ directory, so they import the installed package.
set -euo pipefail

SQLITE_UTILS_VERSION=4.2.1
# Its test tools ([dependency-groups] dev of its pyproject.toml, the parts
# the tests import: pytest, hypothesis, cogapp), pinned too.
TEST_DEPS=(pytest==9.2.0 hypothesis==6.170.27 cogapp==3.6.1)

root=$(cd "$(dirname "$0")/.." && pwd)
so=${1:-$root/libmetadwr.so}
case $so in /*) ;; *) so=$(cd "$(dirname "$so")" && pwd)/$(basename "$so") ;; esac
python=${PYTHON:-/usr/bin/python3}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if [ ! -f "$so" ]; then
  echo "error: $so not found (run make build)" >&2
  exit 2
fi

# --- the venv ------------------------------------------------------------------
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "installing python3-venv"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
# SpatiaLite, for tests/test_gis.py (12 tests that skip without it; they
# load mod_spatialite into connections opened through metadwr and create
# its few dozen metadata tables and triggers, a schema of several pages).
if ! dpkg-query -W -f '${Status}' libsqlite3-mod-spatialite 2>/dev/null | grep -q 'install ok installed'; then
  echo "installing libsqlite3-mod-spatialite"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libsqlite3-mod-spatialite >/dev/null
fi
base=$root/build/sqlite-utils
venv=$base/venv
spec="sqlite-utils==$SQLITE_UTILS_VERSION ${TEST_DEPS[*]} $("$python" -c 'import sys; print(sys.version)' | head -1)"
sdist=$base/sqlite_utils-$SQLITE_UTILS_VERSION.tar.gz
src=$base/src-$SQLITE_UTILS_VERSION
mkdir -p "$base"
if [ ! -f "$sdist" ]; then
  "$python" -m venv "$base/dl-venv"
  "$base/dl-venv/bin/pip" download -q --no-deps --no-binary :all: -d "$base" "sqlite-utils==$SQLITE_UTILS_VERSION"
  rm -rf "$base/dl-venv"
fi
if [ ! -f "$venv/.spec" ] || [ "$(cat "$venv/.spec")" != "$spec" ]; then
  echo "creating $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$sdist" "${TEST_DEPS[@]}"
  echo "$spec" > "$venv/.spec"
fi
if [ ! -f "$src/tests/conftest.py" ]; then
  rm -rf "$src" && mkdir -p "$src"
  tar -xzf "$sdist" -C "$src" --strip-components=1 \
    "sqlite_utils-$SQLITE_UTILS_VERSION/tests" "sqlite_utils-$SQLITE_UTILS_VERSION/docs"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp "$root/scripts/metadwr_compat_pytest.py" "$site/metadwr_compat_pytest.py"
echo "import metadwr_compat_pytest" > "$site/metadwr_compat_pytest.pth"
# sqlite_utils prefers pysqlite3 (its own SQLite) when importable: it must
# not be, or neither run would use the system library.
if "$venv/bin/python" -c 'import pysqlite3' 2>/dev/null; then
  echo "error: pysqlite3 is installed in $venv; sqlite_utils would not use the stdlib sqlite3" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/metadwr-sqlite-utils.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A private copy of the extension: a rebuild during the run cannot pull it
# from under the interpreter.
cp "$so" "$work/libmetadwr.so"
so=$work/libmetadwr.so
mkdir "$work/plain" "$work/metadwr"

versions=$("$venv/bin/python" -c '
import importlib.metadata as m, sqlite3
from sqlite_utils.utils import find_spatialite
print("sqlite-utils", m.version("sqlite-utils"), "pytest", m.version("pytest"),
      "hypothesis", m.version("hypothesis"), "click", m.version("click"),
      "on SQLite", sqlite3.sqlite_version, "SpatiaLite", find_spatialite())')
echo "compat-sqlite-utils: $python $("$python" -c 'import platform; print(platform.python_version())'), $versions"

# --basetemp: each run's tmpdir/tmp_path directories stay until the end, for
# counting the -dwr files. --hypothesis-seed: the same examples in both runs.
pytest_args=(-q -p no:cacheprovider -p metadwr_compat_pytest --hypothesis-seed=0 --rootdir="$src" "$src/tests")
t0=$(date +%s)
(cd "$work/plain" && env -u METADWR_ENABLE -u METADWR_SYNC -u METADWR_COMPAT_SO \
  METADWR_COMPAT_OUT="$work/plain.json" \
  "$venv/bin/python" -m pytest "${pytest_args[@]}" --basetemp="$work/plain-tmp" >"$work/plain.log" 2>&1) || true
t1=$(date +%s)
(cd "$work/metadwr" && env -u METADWR_SYNC METADWR_ENABLE=1 METADWR_COMPAT_SO="$so" \
  METADWR_COMPAT_OUT="$work/metadwr.json" \
  "$venv/bin/python" -m pytest "${pytest_args[@]}" --basetemp="$work/metadwr-tmp" >"$work/metadwr.log" 2>&1) || true
t2=$(date +%s)
echo "plain run $((t1 - t0))s, metadwr run $((t2 - t1))s"
for run in plain metadwr; do
  if [ ! -f "$work/$run.json" ]; then
    echo "error: the $run run wrote no results; its log ends:" >&2
    tail -30 "$work/$run.log" >&2
    exit 1
  fi
  echo "$run: pytest says: $(tail -1 "$work/$run.log")"
done
if [ -n "${COMPAT_SQLITE_UTILS_KEEP:-}" ]; then
  cp "$work"/*.json "$work"/*.log "$COMPAT_SQLITE_UTILS_KEEP"/
fi

# --- probes: was metadwr in use where it should be, and only there -----------
# -dwr files the tests' databases left in their tmp directories.
dwr_plain=$(find "$work/plain-tmp" "$work/plain" -name '*-dwr' | wc -l)
dwr_md=$(find "$work/metadwr-tmp" "$work/metadwr" -name '*-dwr' | wc -l)
echo "-dwr files left by the tests: plain run $dwr_plain, metadwr run $dwr_md"
# The CLI as a separate process (the console script, as the tests' subprocess
# runs start it): goes through metadwr too. The first process gives the
# database a table, so that the second finds something to protect (an empty
# database answers "enabled (nothing to protect yet: ...)").
mkdir "$work/cli-probe"
cli_probe=$(cd "$work/cli-probe" && env -u METADWR_SYNC METADWR_ENABLE=1 METADWR_COMPAT_SO="$so" \
  "$venv/bin/sqlite-utils" create-table probe.db probe id integer >/dev/null 2>&1 \
  && cd "$work/cli-probe" && env -u METADWR_SYNC METADWR_ENABLE=1 METADWR_COMPAT_SO="$so" \
  "$venv/bin/sqlite-utils" query probe.db "PRAGMA meta_double_write" 2>&1 || true)
cli_dwr=no; [ -f "$work/cli-probe/probe.db-dwr" ] && cli_dwr=yes
echo "metadwr probe sqlite-utils CLI process: $cli_probe, -dwr exists: $cli_dwr"

# --- what the two expected failures cut short ---------------------------------
# Both stop at their first assertion that counts files, so the rest of their
# bodies is run here through metadwr, with the -dwr counted in.
cat >"$work/remainder.py" <<'PY'
import json, os, subprocess, sys
from click.testing import CliRunner
from sqlite_utils import Database, cli

# test_wal.py::test_enable_disable_wal, with the -dwr in the listing
d = os.path.join(sys.argv[1], "wal-remainder"); os.mkdir(d)
ls = lambda: sorted(os.listdir(d))
db = Database(os.path.join(d, "test.db"))
assert ls() == ["test.db", "test.db-dwr"], ls()
assert db.journal_mode == "delete"
db.enable_wal()
assert db.journal_mode == "wal"
db.table("test").insert({"foo": "bar"})
assert "test.db-wal" in ls(), ls()
db.disable_wal()
assert db.journal_mode == "delete"
assert "test.db-wal" not in ls(), ls()
assert db.execute("PRAGMA meta_double_write").fetchone()[0] == "enabled"
db.close()
assert ls() == ["test.db", "test.db-dwr"], ls()

# test_cli.py::test_query_memory_does_not_create_file, with the -dwr
d = os.path.join(sys.argv[1], "memory-remainder"); os.mkdir(d); os.chdir(d)
CliRunner().invoke(cli.cli, ["foo.db", "select sqlite_version()"])
result = CliRunner().invoke(cli.cli, [":memory:", "select sqlite_version()"])
assert ["sqlite_version()"] == list(json.loads(result.output)[0].keys())
assert ls() == ["foo.db", "foo.db-dwr"], ls()
print("ok")
PY
remainder=$(cd "$work/cli-probe" && env -u METADWR_SYNC METADWR_ENABLE=1 METADWR_COMPAT_SO="$so" \
  "$venv/bin/python" "$work/remainder.py" "$work" 2>&1 || echo "FAILED")
echo "the expected failures' remaining assertions through metadwr: $remainder"

"$venv/bin/python" - "$work/plain.json" "$work/metadwr.json" "$dwr_plain" "$dwr_md" "$cli_dwr" "$cli_probe" "$remainder" <<'PY'
import ast, collections, json, os, re, sys

plain = json.load(open(sys.argv[1]))
md = json.load(open(sys.argv[2]))
dwr_plain, dwr_md = int(sys.argv[3]), int(sys.argv[4])
cli_dwr, cli_probe, remainder = sys.argv[5], sys.argv[6], sys.argv[7]
kinds = ["pass", "fail", "error", "skip", "xfail", "xpass"]


def names_in_listdir_assert(detail, pattern):
    """The file names an assertion about a directory listing saw."""
    m = re.search(pattern, detail)
    if not m:
        return None
    return sorted(os.path.basename(p) for p in re.findall(r"'([^']*)'", m.group(1)))


# Tests that fail through metadwr, honestly: each counts the files in a
# directory, and the database's -dwr sidecar (which metadwr exists to keep)
# is one more. Each entry: the reason, and a check of the metadwr run's
# failure text that must hold, so that a failure for any other reason (or a
# pass) is still reported as a difference.
EXPECTED = {
    "tests/test_cli.py::test_query_memory_does_not_create_file": (
        "asserts os.listdir(tmpdir) == ['foo.db'] after the CLI opened foo.db "
        "and :memory:; through metadwr foo.db-dwr is there too (the :memory: "
        "database still creates no file)",
        lambda d: names_in_listdir_assert(d, r"AssertionError: assert \['foo\.db'\] == (\[[^\]]*\])")
        == ["foo.db", "foo.db-dwr"],
    ),
    "tests/test_wal.py::test_enable_disable_wal": (
        "asserts len(tmpdir.listdir()) == 1 right after Database(test.db); "
        "through metadwr the listing is test.db and test.db-dwr",
        lambda d: "AssertionError: assert 2 == 1" in d
        and names_in_listdir_assert(d, r"where 2 = len\((\[[^\]]*\])\)") == ["test.db", "test.db-dwr"],
    ),
}


def counts(run):
    c = collections.Counter(t["outcome"] for t in run["tests"].values())
    return f"{len(run['tests'])} tests: " + ", ".join(f"{c[k]} {k}" for k in kinds)


print(f"plain:   {counts(plain)}")
print(f"metadwr: {counts(md)}")

ok = True
for name, run, want in (("plain", plain, False), ("metadwr", md, True)):
    for p in run["probe"]:
        using = p["boot_loaded"] and p["meta_double_write"] == "enabled" and p["dwr_exists"]
        print(f"{name} probe {p['when']}: extension loaded {p['boot_loaded']}"
              f"{' (' + p['boot_error'] + ')' if p['boot_error'] else ''}, "
              f"PRAGMA meta_double_write = {p['meta_double_write']!r}, "
              f"-dwr {'exists' if p['dwr_exists'] else 'missing'}")
        if using != want or len(run["probe"]) != 2:
            print(f"error: the {name} run {'did not go' if want else 'went'} through metadwr")
            ok = False
if dwr_plain != 0 or dwr_md == 0:
    print(f"error: -dwr files plain {dwr_plain}, metadwr {dwr_md}: expected none, and some")
    ok = False
try:
    # SQLite names a VFS pragma's result column after its value
    cli_status = [list(r.values())[0] for r in json.loads(cli_probe)]
except ValueError:
    cli_status = cli_probe
if cli_dwr != "yes" or cli_status != ["enabled"]:
    print("error: the sqlite-utils CLI process did not go through metadwr")
    ok = False
for name, run in (("plain", plain), ("metadwr", md)):
    if len(run["tests"]) < 1000:
        print(f"error: the {name} run did not collect the suite ({len(run['tests'])} tests)")
        ok = False
if not ok:
    sys.exit(1)

ids = sorted(set(plain["tests"]) | set(md["tests"]))
missing = {"outcome": "missing", "detail": ""}
same = differ = 0
for tid in ids:
    a = plain["tests"].get(tid, missing)
    b = md["tests"].get(tid, missing)
    if tid in EXPECTED:
        reason, check = EXPECTED[tid]
        if a["outcome"] == "pass" and b["outcome"] == "fail" and check(b["detail"]):
            same += 1
            print(f"EXPECTED {tid}: plain pass, metadwr fail, as documented: {reason}")
            continue
        differ += 1
        print(f"DIFF {tid}: plain {a['outcome']}, metadwr {b['outcome']}; "
              f"expected plain pass, metadwr fail because {reason}")
    elif a["outcome"] == b["outcome"] and "missing" != a["outcome"]:
        same += 1
        continue
    else:
        differ += 1
        print(f"DIFF {tid}: plain {a['outcome']}, metadwr {b['outcome']}")
    for line in (b["detail"] or a["detail"]).strip().splitlines()[-15:]:
        print(f"     {line}")
if remainder.strip() != "ok":
    print("error: the remaining assertions of the expected failures failed through metadwr")
    differ += 1
for tid in ids:
    o = plain["tests"].get(tid, {}).get("outcome")
    if o in ("fail", "error") and md["tests"].get(tid, {}).get("outcome") == o:
        print(f"note: {tid} is a {o} in both runs: {plain['tests'][tid]['detail'].strip().splitlines()[-1]}")
print(f"{same} passed, {differ} failed")
sys.exit(1 if differ else 0)
PY
