"""Runs APSW's own test suite (apsw.tests, shipped in the wheel) and records
the outcome of every test.

    PYTHON scripts/apsw-run.py OUT.json [--load SO]

PYTHON is an interpreter that has apsw installed and can load extensions
(scripts/compat-apsw.sh uses a venv of Debian's /usr/bin/python3). Run it in
a scratch directory: the tests create their databases in the current
directory.

The suite runs as `python -m apsw.tests` runs it: the module
apsw.tests.__main__ is imported (not run as __main__, so its own
unittest.main() stays idle), its setup() is called (it drops the tests this
build cannot run, as the module's own main does), and every test the module
holds, its own and those it imports from apsw.tests.shelltest, ftstests,
sessiontests, jsonb, carray, aiotest and extratest, runs through a
TextTestRunner with a result class that records each outcome. Nothing of
APSW's is changed on disk.

--load SO  run the suite through the extension. Before every test
           (TestResult.startTest, which unittest calls before setUp), the
           runner makes sure metadwr is SQLite's default VFS. APSW's tests
           call apsw.shutdown() and apsw.initialize() (testConfig), which
           makes unix the default again and clears the automatic
           extensions; then the runner unregisters the stale metadwr
           (registered, no longer default: loading again would find it and
           leave it where it is) and loads the extension again through a
           throwaway :memory: connection, which registers it anew as the
           default and re-arms sqlite3_auto_extension. With
           METADWR_ENABLE=1 in the environment every main database the
           tests open is then protected.

The probe, in both runs, so that the plain run shows it never touched
metadwr and the metadwr run shows it went through it:
  * the default VFS at the start (after any restore) and at the end of
    every test;
  * for every test, whether a *-dwr file below the working directory (and
    TMPDIR, when it is below it) was created or rewritten while it ran;
  * with --load, before and after the whole suite: a new file database
    answers PRAGMA meta_double_write with "enabled" and has its -dwr.

OUT.json gets {"apsw", "sqlite", "probe", "tests": {id: {"outcome",
"detail", "vfs_start", "vfs_end", "restored", "dwr"}}} with outcome one of
pass, fail, error, skip, xfail, xpass. A test whose subtests fail is one
"fail".
"""

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import unittest

import apsw

LOAD = None  # path of the extension with --load
RESTORES = 0


def load_metadwr():
    """Makes metadwr the default VFS, loading the extension again if needed."""
    global RESTORES
    if apsw.vfs_names()[0] == "metadwr":
        return False
    if "metadwr" in apsw.vfs_names():
        # Still registered from before apsw.shutdown()/initialize() but no
        # longer the default: the extension's register() would find it and
        # keep it where it is. Files already open through it keep their
        # pointer to it; the extension keeps the library mapped.
        apsw.unregister_vfs("metadwr")
    boot = apsw.Connection(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(LOAD)
    boot.close()
    del boot
    gc.collect()
    if apsw.vfs_names()[0] != "metadwr":
        raise RuntimeError(f"loading {LOAD} did not make metadwr the default VFS: {apsw.vfs_names()}")
    RESTORES += 1
    return True


def probe(label):
    """What a new file database says about metadwr right now."""
    d = tempfile.mkdtemp(prefix="metadwr-probe-")
    path = os.path.join(d, "probe.db")
    try:
        con = apsw.Connection(path)
        try:
            con.execute("CREATE TABLE t(x); INSERT INTO t VALUES(1)")
            status = con.execute("PRAGMA meta_double_write").fetchall()
            status = status[0][0] if status else None
        except apsw.Error as e:
            status = f"error: {e}"
        vfs = con.vfsname("main")
        con.close()
        return {
            "when": label,
            "vfs": vfs,
            "meta_double_write": status,
            "dwr_exists": os.path.exists(path + "-dwr"),
        }
    finally:
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)


def dwr_files(roots):
    """{path: (mtime_ns, size)} of every *-dwr file below roots."""
    found = {}
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                if f.endswith("-dwr"):
                    p = os.path.join(dirpath, f)
                    try:
                        st = os.stat(p)
                    except OSError:
                        continue
                    found[p] = (st.st_mtime_ns, st.st_size)
    return found


class RecordingResult(unittest.TextTestResult):
    roots = ["."]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = {}
        self.info = {}

    def startTest(self, test):
        restored = load_metadwr() if LOAD else False
        self.info[test.id()] = {
            "vfs_start": apsw.vfs_names()[0],
            "restored": restored,
        }
        self._dwr_before = dwr_files(self.roots)
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        after = dwr_files(self.roots)
        changed = sorted(os.path.relpath(p) for p, v in after.items() if self._dwr_before.get(p) != v)
        info = self.info.setdefault(test.id(), {})
        info["vfs_end"] = apsw.vfs_names()[0]
        info["dwr"] = changed

    def _set(self, test, outcome, detail=""):
        tid = test.id()
        prev = self.outcomes.get(tid)
        # A failing subtest makes the whole test fail; never downgrade.
        if prev and prev["outcome"] in ("fail", "error") and outcome == "pass":
            return
        if prev and prev["outcome"] in ("fail", "error") and outcome in ("fail", "error"):
            prev["detail"] += "\n" + detail
            return
        self.outcomes[tid] = {"outcome": outcome, "detail": detail}

    def addSuccess(self, test):
        super().addSuccess(test)
        self._set(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._set(test, "fail", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._set(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._set(test, "skip", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._set(test, "xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set(test, "xpass")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._set(test, kind, f"{subtest.id()}: " + self._exc_info_to_string(err, test))


def main():
    global LOAD
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--load")
    ap.add_argument("-k", action="append", dest="patterns", help="only tests matching (as unittest -k)")
    args = ap.parse_args()
    LOAD = args.load and os.path.abspath(args.load)

    roots = [os.getcwd()]
    tmp = os.path.realpath(tempfile.gettempdir())
    if not tmp.startswith(os.path.realpath(os.getcwd()) + os.sep):
        print(f"note: TMPDIR {tmp} is outside the working directory; -dwr files there are not counted")
    RecordingResult.roots = roots

    probes = []
    if LOAD:
        load_metadwr()
        probes.append(probe("before the tests"))

    import apsw.tests.__main__ as suite_module

    log_path = os.path.splitext(args.out)[0] + ".log"
    with open(log_path, "w") as log, contextlib.redirect_stdout(log):
        # What `python -m apsw.tests` does before unittest.main(): version
        # information, and removal of tests this build cannot run.
        suite_module.setup()
        loader = unittest.TestLoader()
        if args.patterns:
            loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in args.patterns]
        suite = loader.loadTestsFromModule(suite_module)
        runner = unittest.TextTestRunner(stream=log, verbosity=2, resultclass=RecordingResult)
        result = runner.run(suite)
        log.flush()

    if LOAD:
        load_metadwr()
        probes.append(probe("after the tests"))

    tests = {}
    for tid, o in result.outcomes.items():
        tests[tid] = dict(o, **result.info.get(tid, {}))
    for tid, info in result.info.items():
        # A test that never reached an outcome (should not happen)
        tests.setdefault(tid, dict(info, outcome="missing", detail=""))

    with open(args.out, "w") as f:
        json.dump(
            {
                "apsw": apsw.apsw_version(),
                "sqlite": apsw.sqlite_lib_version(),
                "python": sys.version.split()[0],
                "probe": probes,
                "restores": RESTORES,
                "tests_run": result.testsRun,
                "tests": tests,
            },
            f,
            indent=1,
            sort_keys=True,
        )


if __name__ == "__main__":
    main()
