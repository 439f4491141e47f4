"""Loads metadwr into every Python process of a venv, and records pytest outcomes.

Used by scripts/compat-sqlite-utils.sh, which copies this file into the
venv's site-packages as metadwr_compat_pytest.py, next to a .pth file whose
one line is "import metadwr_compat_pytest". Two roles:

* boot, at every interpreter start in the venv (the .pth): when
  METADWR_COMPAT_SO names the extension, a throwaway :memory: connection
  loads it (enable_load_extension + load_extension), which makes metadwr the
  process's default VFS, before any test, fixture or library opens a
  database. The pytest process and every Python subprocess the tests start
  (the sqlite-utils CLI) inherit the variable, so all of them go through
  metadwr. Without the variable nothing happens: the plain run.

* pytest plugin (pytest -p metadwr_compat_pytest), with METADWR_COMPAT_OUT
  naming a JSON file: every test's outcome by node id (pass, fail, error,
  skip, xfail, xpass; setup or teardown failures are "error") with the
  failure text, and a probe at session start and end: a new file database
  in a scratch directory, what it answers to PRAGMA meta_double_write and
  whether its -dwr exists, and whether this process loaded the extension.
"""

import os

BOOT = {"loaded": False, "error": None}


def _boot():
    so = os.environ.get("METADWR_COMPAT_SO")
    if not so:
        return
    try:
        import sqlite3

        con = sqlite3.connect(":memory:")
        con.enable_load_extension(True)
        con.load_extension(so)
        con.close()
        BOOT["loaded"] = True
    except Exception as e:  # reported by the probe; the run then fails
        BOOT["error"] = f"{type(e).__name__}: {e}"


_boot()

_RESULTS = {}
_PROBES = []


def _probe(label):
    import shutil
    import sqlite3
    import tempfile

    d = tempfile.mkdtemp(prefix="metadwr-probe-")
    path = os.path.join(d, "probe.db")
    try:
        con = sqlite3.connect(path)
        try:
            con.execute("CREATE TABLE t(x)")
            con.commit()
            row = con.execute("PRAGMA meta_double_write").fetchone()
            status = None if row is None else row[0]
        except sqlite3.Error as e:
            status = f"error: {e}"
        con.close()
        return {
            "when": label,
            "boot_loaded": BOOT["loaded"],
            "boot_error": BOOT["error"],
            "meta_double_write": status,
            "dwr_exists": os.path.exists(path + "-dwr"),
        }
    finally:
        shutil.rmtree(d, ignore_errors=True)


def pytest_sessionstart(session):
    if os.environ.get("METADWR_COMPAT_OUT"):
        _PROBES.append(_probe("session start"))


def pytest_runtest_logreport(report):
    if not os.environ.get("METADWR_COMPAT_OUT"):
        return
    prev = _RESULTS.get(report.nodeid)
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            outcome = "xfail" if report.skipped else "xpass"
        else:
            outcome = {"passed": "pass", "failed": "fail", "skipped": "skip"}[report.outcome]
    elif report.failed:
        outcome = "error"
    elif report.skipped:
        outcome = "xfail" if hasattr(report, "wasxfail") else "skip"
    else:
        return  # a passing setup or teardown says nothing new
    detail = report.longreprtext if not report.passed else ""
    if prev and prev["outcome"] in ("fail", "error"):
        # never downgrade; an error in teardown after a failure keeps both texts
        prev["detail"] += "\n" + detail
        return
    _RESULTS[report.nodeid] = {"outcome": outcome, "detail": detail}


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("METADWR_COMPAT_OUT")
    if not out:
        return
    import json
    import sqlite3

    _PROBES.append(_probe("session end"))
    with open(out, "w") as f:
        json.dump(
            {
                "sqlite_version": sqlite3.sqlite_version,
                "exitstatus": int(exitstatus),
                "probe": _PROBES,
                "tests": _RESULTS,
            },
            f,
            indent=1,
        )
