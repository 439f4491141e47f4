#!/usr/bin/python3
"""Runs CPython's test.test_sqlite3 and records the outcome of every test.

    /usr/bin/python3 scripts/cpython-sqlite3-run.py OUT.json [--tests DIR] [--load SO]

--tests DIR  a directory named test holding test_sqlite3/, used as
             test.test_sqlite3
             (for a Python whose installed test package lacks it)
--load SO    load the extension first, the way an application would: a
             throwaway :memory: connection with enable_load_extension and
             load_extension, which registers the metadwr VFS as the
             process's default VFS. With METADWR_ENABLE=1 in the
             environment, every main database opened afterwards is
             protected; the run checks that before and after the tests.

OUT.json gets {"sqlite_version", "probe", "tests": {id: {"outcome", "detail"}}}
with outcome one of pass, fail, error, skip, xfail, xpass. A test whose
subtests fail is one "fail". The unittest log goes to OUT.json's name
with .log instead of .json. Run it in a scratch directory: the tests create
files in the current directory.
"""

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import unittest


def probe(label):
    """What a new file database says about metadwr right now."""
    d = tempfile.mkdtemp(prefix="metadwr-probe-")
    path = os.path.join(d, "probe.db")
    try:
        con = sqlite3.connect(path)
        try:
            con.execute("CREATE TABLE t(x)")
            con.commit()
            status = con.execute("PRAGMA meta_double_write").fetchone()
        except sqlite3.Error as e:
            status = (f"error: {e}",)
        con.close()
        return {
            "when": label,
            "meta_double_write": None if status is None else status[0],
            "dwr_exists": os.path.exists(path + "-dwr"),
        }
    finally:
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)


class RecordingResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = {}

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
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tests")
    ap.add_argument("--load")
    args = ap.parse_args()

    if args.tests:
        import test

        test.__path__.insert(0, os.path.abspath(args.tests))

    probes = []
    if args.load:
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension(args.load)
        boot.enable_load_extension(False)
        boot.close()
        probes.append(probe("before the tests"))

    if args.tests:
        # test_sqlite3's load_tests discovers its modules relative to
        # test.support.STDLIB_DIR; point it at DIR's parent while loading.
        import test.support

        saved = test.support.STDLIB_DIR
        test.support.STDLIB_DIR = os.path.dirname(os.path.abspath(args.tests))
        try:
            suite = unittest.defaultTestLoader.loadTestsFromName("test.test_sqlite3")
        finally:
            test.support.STDLIB_DIR = saved
    else:
        suite = unittest.defaultTestLoader.loadTestsFromName("test.test_sqlite3")
    log_path = os.path.splitext(args.out)[0] + ".log"
    with open(log_path, "w") as log:
        log.write(f"sqlite3 {sqlite3.sqlite_version}, test_sqlite3 from "
                  f"{os.path.dirname(sys.modules['test.test_sqlite3'].__file__)}\n")
        runner = unittest.TextTestRunner(stream=log, verbosity=2, resultclass=RecordingResult)
        result = runner.run(suite)
    if args.load:
        probes.append(probe("after the tests"))

    with open(args.out, "w") as f:
        json.dump(
            {
                "sqlite_version": sqlite3.sqlite_version,
                "python": sys.version.split()[0],
                "tests_from": os.path.dirname(sys.modules["test.test_sqlite3"].__file__),
                "probe": probes,
                "tests_run": result.testsRun,
                "tests": result.outcomes,
            },
            f,
            indent=1,
            sort_keys=True,
        )


if __name__ == "__main__":
    main()
