#!/usr/bin/python3
"""metadwr from Python's standard sqlite3 module.

    /usr/bin/python3 scripts/test-python.py /abs/path/libmetadwr.so

Debian's /usr/bin/python3 is built with extension loading; a Python whose
sqlite3 module lacks enable_load_extension cannot run this.

The extension is loaded once, into a throwaway in-memory connection: that
makes metadwr the default VFS of the process and registers it for every
later connection, which is how an application would use it.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import unittest

SO = None  # absolute path of libmetadwr.so, from the command line


def load_extension_once():
    loader = sqlite3.connect(":memory:")
    loader.enable_load_extension(True)
    loader.load_extension(SO)
    loader.close()


def connect(path):
    # isolation_level=None: autocommit, every statement is its own
    # transaction unless the test says BEGIN.
    return sqlite3.connect(path, isolation_level=None)


def one(conn, sql, *params):
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def schema_pages(conn, schema="main"):
    """Page numbers of sqlite_schema (page 1 and its B-tree), from dbstat."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT pageno FROM dbstat(?) WHERE name = 'sqlite_schema' ORDER BY pageno",
            (schema,),
        )
    ]


def smash(path, pgno, page_size=4096, fill=b"\0"):
    """Overwrites one page of a database file in place."""
    with open(path, "r+b") as f:
        f.seek((pgno - 1) * page_size)
        f.write((fill * page_size)[:page_size])


def create_tables(conn, n_tables, n_rows, prefix="t"):
    conn.execute("BEGIN")
    for i in range(1, n_tables + 1):
        conn.execute(
            f"CREATE TABLE {prefix}{i}(id INTEGER PRIMARY KEY, label TEXT NOT NULL, value REAL)"
        )
        conn.execute(f"CREATE INDEX {prefix}{i}_label ON {prefix.split('.')[-1]}{i}(label)")
        conn.executemany(
            f"INSERT INTO {prefix}{i}(label, value) VALUES (?, ?)",
            [(f"row {r} of {prefix}{i}", r * 0.5) for r in range(n_rows)],
        )
    conn.execute("COMMIT")


def table_rows(conn, schema="main"):
    """{table name: row count} for every table of a schema."""
    names = [
        r[0]
        for r in conn.execute(
            f"SELECT name FROM {schema}.sqlite_schema WHERE type = 'table' ORDER BY name"
        )
    ]
    return {n: one(conn, f"SELECT count(*) FROM {schema}.{n}") for n in names}


class MetadwrTestCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="metadwr-python.")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)


class LoadTest(MetadwrTestCase):
    def test_new_connections_go_through_metadwr(self):
        conn = connect(self.path("app.db"))
        # The pragma exists only for files opened through metadwr; on any
        # other VFS SQLite ignores it and returns no row.
        self.assertEqual(one(conn, "PRAGMA meta_double_write"), "disabled")
        self.assertEqual(one(conn, "PRAGMA meta_double_write_sync"), "periodic")
        conn.close()

    def test_load_again_with_or_without_suffix(self):
        # Loading a second time is harmless, whichever name is used.
        for name in (SO, SO[: -len(".so")]):
            c = sqlite3.connect(":memory:")
            c.enable_load_extension(True)
            c.load_extension(name)
            c.close()
        conn = connect(self.path("app.db"))
        self.assertEqual(one(conn, "PRAGMA meta_double_write"), "disabled")
        conn.close()


class ProtectRecoverTest(MetadwrTestCase):
    N_TABLES = 40
    N_ROWS = 250

    def test_enable_disable(self):
        db = self.path("app.db")
        conn = connect(db)
        self.assertEqual(one(conn, "PRAGMA meta_double_write=enabled"), "enabled")
        self.assertTrue(os.path.exists(db + "-dwr"))
        conn.execute("CREATE TABLE t(x)")
        self.assertRegex(
            one(conn, "PRAGMA meta_double_write_stats"),
            r"^generations=\d+ pages=\d+ bytes=\d+ fsyncs=\d+ flag_updates=\d+$",
        )
        self.assertEqual(one(conn, "PRAGMA meta_double_write_sync=full"), "full")
        self.assertRegex(
            one(conn, "SELECT meta_recover()"),
            r"^nothing to restore: the database matches generation \d+$",
        )
        self.assertEqual(one(conn, "PRAGMA meta_double_write=disabled"), "disabled")
        self.assertFalse(os.path.exists(db + "-dwr"))
        self.assertEqual(one(conn, "PRAGMA meta_double_write"), "disabled")
        conn.close()

    def test_page1_and_schema_page_healed_on_read(self):
        db = self.path("app.db")
        conn = connect(db)
        self.assertEqual(one(conn, "PRAGMA meta_double_write=enabled"), "enabled")
        create_tables(conn, self.N_TABLES, self.N_ROWS)
        before = table_rows(conn)
        self.assertEqual(len(before), self.N_TABLES)
        pages = schema_pages(conn)
        self.assertEqual(pages[0], 1)
        self.assertGreater(len(pages), 1, "40 tables and indexes need more than page 1")
        page_size = one(conn, "PRAGMA page_size")
        conn.close()

        victim = pages[-1]
        smash(db, 1, page_size)
        smash(db, victim, page_size, fill=b"\xa5")

        # Plain SQLite (a process that never loads the extension) fails.
        plain = subprocess.run(
            [sys.executable, "-c",
             "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM t1')", db],
            capture_output=True, text=True,
        )
        self.assertNotEqual(plain.returncode, 0)
        self.assertIn("file is not a database", plain.stderr)

        # Through metadwr the damage is healed on read: no error, no call.
        conn = connect(db)
        self.assertEqual(one(conn, "SELECT count(*) FROM t1"), self.N_ROWS)
        status = one(conn, "PRAGMA meta_double_write")
        self.assertRegex(
            status,
            rf"^enabled \(recovered: healed pages 1,{victim} from generation \d+ on read; "
            rf"file repaired: restored 2 pages \(1,{victim}\) from generation \d+\)$",
        )
        self.assertEqual(table_rows(conn), before)
        self.assertEqual(one(conn, "PRAGMA integrity_check"), "ok")
        # The damaged pages were kept: two records of 20 + page_size bytes.
        self.assertEqual(
            os.path.getsize(db + "-dwr-quarantine"), 2 * (20 + page_size)
        )
        self.assertRegex(
            one(conn, "SELECT meta_recover()"),
            r"^nothing to restore: the database matches generation \d+$",
        )
        conn.close()

        # Stock SQLite reads the repaired file: a fresh process that never
        # loads the extension.
        out = subprocess.run(
            [sys.executable, "-c",
             "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
             "print(c.execute('SELECT count(*) FROM t40').fetchone()[0],"
             " c.execute('PRAGMA integrity_check').fetchone()[0])", db],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        self.assertEqual(out, [str(self.N_ROWS), "ok"])

    def test_enable_on_damaged_database_recovers(self):
        # A schema page other than page 1: nothing reads it before the
        # pragma (page 1 would be healed by the header read at open).
        db = self.path("app.db")
        conn = connect(db)
        conn.execute("PRAGMA meta_double_write=enabled")
        create_tables(conn, 40, 20)
        victim = schema_pages(conn)[-1]
        conn.close()
        smash(db, victim)
        conn = connect(db)
        answer = one(conn, "PRAGMA meta_double_write=enabled")
        self.assertRegex(answer, rf"^recovered: restored 1 page \({victim}\) from generation \d+$")
        self.assertEqual(one(conn, "SELECT count(*) FROM t40"), 20)
        conn.close()

    def test_protection_persists(self):
        db = self.path("app.db")
        conn = connect(db)
        conn.execute("PRAGMA meta_double_write=enabled")
        conn.execute("CREATE TABLE t(x)")
        conn.close()
        conn = connect(db)
        self.assertEqual(one(conn, "PRAGMA meta_double_write"), "enabled")
        conn.close()

    def test_attached_database(self):
        main_db, b_db = self.path("app.db"), self.path("b.db")
        conn = connect(main_db)
        conn.execute("CREATE TABLE m(x)")
        conn.execute("ATTACH ? AS b", (b_db,))
        self.assertEqual(one(conn, "PRAGMA b.meta_double_write=enabled"), "enabled")
        self.assertEqual(one(conn, "PRAGMA main.meta_double_write"), "disabled")
        create_tables(conn, 12, 30, prefix="b.u")
        before = table_rows(conn, "b")
        self.assertEqual(len(before), 12)
        pages = schema_pages(conn, "b")

        # Damage b while it is attached (no lock is held between statements).
        for p in pages:
            smash(b_db, p)
        with self.assertRaisesRegex(sqlite3.OperationalError, r"^meta_recover: no copy: "):
            conn.execute("SELECT meta_recover()").fetchall()
        report = one(conn, "SELECT meta_recover('b')")
        listed = ",".join(map(str, pages))
        self.assertRegex(
            report,
            rf"^restored {len(pages)} pages? \({listed}\) from generation \d+$",
        )
        # Smashed again, and this time met by a query: healed on read.
        for p in pages:
            smash(b_db, p)
        self.assertEqual(one(conn, "SELECT count(*) FROM b.u1"), 30)
        self.assertRegex(
            one(conn, "PRAGMA b.meta_double_write"),
            rf"^enabled \(recovered: healed pages? {listed} from generation \d+ on read; file repaired: ",
        )
        self.assertEqual(table_rows(conn, "b"), before)
        self.assertEqual(one(conn, "PRAGMA b.integrity_check"), "ok")
        conn.close()

    def test_errors(self):
        conn = connect(self.path("app.db"))
        conn.execute("CREATE TABLE t(x)")
        cases = [
            ("SELECT meta_recover()", r"^meta_recover: no copy: "),
            ("SELECT meta_recover('nosuch')", r"^meta_recover: no such database: nosuch$"),
            ("PRAGMA meta_double_write=maybe", r"^meta_double_write: unknown value 'maybe'"),
            ("PRAGMA meta_double_write_sync=never", r"^meta_double_write_sync: unknown value"),
        ]
        for sql, pattern in cases:
            with self.subTest(sql=sql):
                with self.assertRaisesRegex(sqlite3.DatabaseError, pattern):
                    conn.execute(sql).fetchall()
        conn.execute("CREATE TEMP TABLE scratch(x)")
        with self.assertRaisesRegex(
            sqlite3.OperationalError, r"^meta_recover: database 'temp' is in memory or temporary"
        ):
            conn.execute("SELECT meta_recover('temp')").fetchall()
        conn.close()

    def test_read_only_connection(self):
        db = self.path("app.db")
        conn = connect(db)
        conn.execute("PRAGMA meta_double_write=enabled")
        conn.execute("CREATE TABLE t(x)")
        conn.close()
        ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        self.assertEqual(
            one(ro, "PRAGMA meta_double_write"),
            "enabled (read-only connection: damaged pages are served from the copy, not repaired)",
        )
        with self.assertRaisesRegex(sqlite3.DatabaseError, r"^meta_double_write: "):
            ro.execute("PRAGMA meta_double_write=enabled").fetchall()
        with self.assertRaisesRegex(sqlite3.OperationalError, r"^meta_recover: "):
            ro.execute("SELECT meta_recover()").fetchall()
        ro.close()


# Runs in a fresh interpreter: the connection must exist before the
# extension is loaded anywhere in the process.
ALREADY_OPEN = textwrap.dedent(
    """
    import os, sqlite3, sys
    so, db = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    # Notes with some text: with page 1 destroyed, a data page's checksum
    # is what ties the copy to this file (two one-letter rows prove nothing).
    conn.executemany("INSERT INTO notes(body) VALUES (?)",
                     [("a: the first note, long enough to be told apart",), ("b",)])
    # The extension is loaded into this very connection; its database is
    # re-opened through metadwr in place.
    conn.enable_load_extension(True)
    conn.load_extension(so[: -len(".so")])  # the loader adds .so itself
    print(conn.execute("PRAGMA meta_double_write=enabled").fetchone()[0])
    conn.execute("INSERT INTO notes(body) VALUES ('c')")
    print(os.path.exists(db + "-dwr"))
    with open(db, "r+b") as f:
        f.write(bytes(4096))
    try:
        print("rows:", conn.execute("SELECT count(*) FROM notes").fetchone()[0])
    except sqlite3.DatabaseError as e:
        print("damaged:", e)
    print(conn.execute("PRAGMA meta_double_write").fetchone()[0])
    print(conn.execute("SELECT group_concat(body) FROM notes").fetchone()[0])
    print(conn.execute("PRAGMA integrity_check").fetchone()[0])
    """
)


class SalvageTest(MetadwrTestCase):
    def test_salvage_after_data_page_damage(self):
        db = self.path("app.db")
        conn = connect(db)
        self.assertEqual(one(conn, "PRAGMA meta_double_write=enabled"), "enabled")
        create_tables(conn, 6, 400)
        before = {
            n: conn.execute(f"SELECT rowid, * FROM {n} ORDER BY rowid").fetchall()
            for n in table_rows(conn)
        }
        # t3's pages, from dbstat: its root is an interior page.
        t3 = [r[0] for r in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 't3' ORDER BY pageno")]
        root = one(conn, "SELECT rootpage FROM sqlite_schema WHERE name = 't3'")
        page_size = one(conn, "PRAGMA page_size")
        conn.close()
        self.assertGreater(len(t3), 2)
        smash(db, 1, page_size)
        smash(db, root, page_size, fill=b"\x5a")

        conn = connect(db)
        # Page 1 is healed on the first read (the heal's job); the
        # salvage itself must then leave the file as it finds it.
        self.assertEqual(one(conn, "SELECT count(*) FROM sqlite_schema"), 12)
        with open(db, "rb") as f:
            damaged = f.read()
        out = self.path("saved.db")
        summary = one(conn, "PRAGMA meta_salvage=" + "'" + out + "'")
        self.assertRegex(summary, r"^salvaged 2400 rows into 6 tables \(\d+ from unreachable pages\)")
        with open(db, "rb") as f:
            self.assertEqual(f.read(), damaged, "the damaged file was written to")
        with self.assertRaises(sqlite3.OperationalError) as e:
            conn.execute("SELECT meta_salvage(?)", (out,))
        self.assertIn("already exists", str(e.exception))
        conn.close()

        saved = sqlite3.connect(out)
        for name, rows in before.items():
            self.assertEqual(
                saved.execute(f"SELECT rowid, * FROM {name} ORDER BY rowid").fetchall(), rows, name
            )
        self.assertEqual(one(saved, "SELECT count(*) FROM lost_and_found"), 0)
        self.assertGreater(
            one(saved, "SELECT rows_from_orphan_pages FROM metadwr_salvage_report WHERE name = 't3'"), 0
        )
        self.assertEqual(one(saved, "PRAGMA integrity_check"), "ok")
        saved.close()


class AlreadyOpenTest(MetadwrTestCase):
    def test_connection_opened_before_load(self):
        db = self.path("pre.db")
        proc = subprocess.run(
            [sys.executable, "-c", ALREADY_OPEN, SO, db],
            capture_output=True, text=True,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertEqual(len(lines), 6, proc.stdout)
        self.assertEqual(lines[0], "enabled")
        self.assertEqual(lines[1], "True")
        self.assertEqual(lines[2], "rows: 3")
        self.assertRegex(lines[3], r"^enabled \(recovered: healed page 1 from generation \d+ on read; ")
        self.assertEqual(lines[4], "a: the first note, long enough to be told apart,b,c")
        self.assertEqual(lines[5], "ok")


def main():
    global SO
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} /abs/path/libmetadwr.so", file=sys.stderr)
        return 2
    SO = os.path.abspath(sys.argv[1])
    if not SO.endswith(".so") or not os.path.isfile(SO):
        print(f"error: no extension at {SO}", file=sys.stderr)
        return 2
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        print(f"error: {sys.executable}'s sqlite3 cannot load extensions", file=sys.stderr)
        return 2
    for var in ("METADWR_ENABLE", "METADWR_SYNC"):
        os.environ.pop(var, None)
    print(f"python-test: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {SO}")
    load_extension_once()
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2)
    program = unittest.main(argv=[sys.argv[0]], testRunner=runner, exit=False)
    result = program.result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    print(f"{passed} passed, {failed} failed")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
