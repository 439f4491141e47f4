#!/usr/bin/python3
"""metadwr alongside Litestream: a protected WAL database replicated by the
real `litestream replicate` to a local file replica, processes stopped in a
random order, then page 1 and the schema destroyed; and databases restored
from the replica over (or in place of) a protected database whose `-dwr`
is still there. Every reopen through metadwr must be exact (a legitimate
committed / restored state, integrity ok) or refused (SQLite's error, a
`stale` status, the file unchanged, PRAGMA meta_recover refusing too);
anything else is WRONG.

    /usr/bin/python3 scripts/compat-litestream.py run SO LITESTREAM

Environment: LITESTREAM_ROUNDS (default 30), LITESTREAM_SEED (default 1;
round i uses seed SEED*1000+i), LITESTREAM_ONLY=<round seed> (that round
alone; the processes' timing makes a replay similar, not identical),
SQLITE3 (the stock shell, for dbstat), LITESTREAM_KEEP=1 (keep every
round's directory, not only the failing ones).

Internal subcommands (run as child processes): `init`, `writer`, `check`.
"""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

SELF = os.path.abspath(__file__)
PY = sys.executable
LS_TABLES = ("_litestream_seq", "_litestream_lock")


# ---------------------------------------------------------------- helpers

def load_metadwr(so):
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(so)
    c.close()


def connect(path, uri=False):
    c = sqlite3.connect(path, isolation_level=None, uri=uri, timeout=20)
    return c


def logical_state(conn):
    """Schema (without root pages) and, per user table, row count and a hash
    of every row. Litestream's own tables are in the schema, their rows are
    not (Litestream updates them whenever it likes)."""
    schema = [
        list(r)
        for r in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name"
        )
    ]
    tables = {}
    for typ, name, _tbl, _sql in schema:
        if typ != "table" or name.startswith("sqlite_") or name in LS_TABLES:
            continue
        h = hashlib.sha256()
        n = 0
        for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid'):
            h.update(repr(row).encode())
            n += 1
        tables[name] = [n, h.hexdigest()[:16]]
    for typ, name, _tbl, _sql in schema:
        if typ == "view":
            conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()
    return {"schema": schema, "tables": tables}


def file_hash(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def describe_state(s):
    if s is None:
        return "None"
    names = [f"{t}:{n}" for t, n, _, _ in s["schema"]]
    return f"schema {names} rows {{{', '.join(f'{k}={v[0]}' for k, v in sorted(s['tables'].items()))}}}"


def diff_states(got, want):
    """What differs between two logical states, briefly."""
    if got is None or want is None:
        return f"got {describe_state(got)}"
    out = []
    g = {tuple(x) for x in got["schema"]}
    w = {tuple(x) for x in want["schema"]}
    for x in sorted(g - w):
        out.append(f"extra schema row {x[0]} {x[1]}: {str(x[3])[:120]!r}")
    for x in sorted(w - g):
        out.append(f"missing schema row {x[0]} {x[1]}: {str(x[3])[:120]!r}")
    for t in sorted(set(got["tables"]) | set(want["tables"])):
        if got["tables"].get(t) != want["tables"].get(t):
            out.append(f"table {t}: {got['tables'].get(t)} instead of {want['tables'].get(t)}")
    return "; ".join(out) or "same"


def state_key(s):
    return json.dumps(s, sort_keys=True)


# ---------------------------------------------------------------- children

def cmd_init(so, db, page_size):
    load_metadwr(so)
    c = connect(db)
    c.execute(f"PRAGMA page_size={int(page_size)}")
    mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert mode == "wal", mode
    st = c.execute("PRAGMA meta_double_write=enabled").fetchone()[0]
    assert st.startswith("enabled"), st
    c.execute("BEGIN")
    c.execute("CREATE TABLE t0(id INTEGER PRIMARY KEY, a TEXT, b BLOB)")
    c.executemany("INSERT INTO t0(a, b) VALUES (?, randomblob(?))",
                  [(f"init {i}", 50 + i * 7) for i in range(40)])
    c.execute("COMMIT")
    c.close()


class Workload:
    def __init__(self, conn, rng):
        self.c = conn
        self.rng = rng
        self.n = 1

    def names(self, typ):
        return [r[0] for r in self.c.execute(
            "SELECT name FROM sqlite_schema WHERE type=? AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE '_litestream_%' ORDER BY name", (typ,))]

    def columns(self, table):
        return [r[1] for r in self.c.execute(f'PRAGMA table_info("{table}")')]

    def step(self):
        """One transaction's statements (inside BEGIN IMMEDIATE); returns a label."""
        r, c = self.rng, self.c
        tables = self.names("table")
        self.n += 1
        n = self.n
        kind = r.choices(
            ["rows", "update", "delete", "create", "add_column", "index", "view",
             "drop_table", "drop_index", "drop_view"],
            [40, 8, 6, 8, 10, 6, 5, 3, 3, 3])[0]
        if not tables:
            kind = "create"
        t = r.choice(tables)
        if kind == "rows":
            k = r.randint(1, 25)
            c.executemany(f'INSERT INTO "{t}"(a, b) VALUES (?, randomblob(?))',
                          [(f"r{n}.{i} " + "x" * r.randint(0, 300), r.randint(0, 1500))
                           for i in range(k)])
        elif kind == "update":
            c.execute(f'UPDATE "{t}" SET a = a || ? WHERE rowid % ? = 0', (f"u{n}", r.randint(2, 7)))
        elif kind == "delete":
            c.execute(f'DELETE FROM "{t}" WHERE rowid % ? = 1', (r.randint(3, 9),))
        elif kind == "create":
            c.execute(f"CREATE TABLE t{n}(id INTEGER PRIMARY KEY, a TEXT, b BLOB) -- {'c' * r.randint(0, 400)}")
            c.executemany(f"INSERT INTO t{n}(a, b) VALUES (?, randomblob(?))",
                          [(f"new {i}", r.randint(0, 900)) for i in range(r.randint(0, 30))])
            t = f"t{n}"
        elif kind == "add_column":
            c.execute(f'ALTER TABLE "{t}" ADD COLUMN c{n} DEFAULT {r.randint(0, 999)}')
        elif kind == "index":
            cols = [x for x in self.columns(t) if x != "id"]
            c.execute(f'CREATE INDEX i{n} ON "{t}"("{r.choice(cols)}")')
        elif kind == "view":
            c.execute(f'CREATE VIEW v{n} AS SELECT id, a FROM "{t}" WHERE id % {r.randint(2, 5)} = 0')
        elif kind == "drop_table" and len(tables) > 1:
            views = [v for (v, sql) in c.execute(
                "SELECT name, sql FROM sqlite_schema WHERE type='view'") if f'"{t}"' in sql]
            for v in views:
                c.execute(f'DROP VIEW "{v}"')
            c.execute(f'DROP TABLE "{t}"')
        elif kind == "drop_index" and self.names("index"):
            c.execute(f'DROP INDEX "{r.choice(self.names("index"))}"')
        elif kind == "drop_view" and self.names("view"):
            c.execute(f'DROP VIEW "{r.choice(self.names("view"))}"')
        else:
            kind = "rows"
            c.execute(f'INSERT INTO "{t}"(a, b) VALUES (?, randomblob(?))', (f"r{n}", 100))
        return f"{kind} {t}"


def cmd_writer(so, db, seed, ops, states_path, autockpt):
    load_metadwr(so)
    rng = random.Random(int(seed))
    c = connect(db)
    c.execute("PRAGMA busy_timeout=20000")
    c.execute(f"PRAGMA wal_autocheckpoint={int(autockpt)}")
    deadline = time.time() + 30
    while True:
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_schema")}
        if all(t in names for t in LS_TABLES):
            break
        if time.time() > deadline:
            print("writer: Litestream never created its tables", file=sys.stderr)
            sys.exit(3)
        time.sleep(0.05)
    out = open(states_path, "a")

    def record(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    # The state the writer starts from is a committed state too.
    c.execute("BEGIN")
    record({"k": 0, "op": "start", "state": logical_state(c)})
    c.execute("COMMIT")
    record({"k": 0, "committed": True})
    w = Workload(c, rng)
    for k in range(1, int(ops) + 1):
        c.execute("BEGIN IMMEDIATE")
        label = w.step()
        if rng.random() < 0.3:
            w.step()
        record({"k": k, "op": label, "state": logical_state(c)})
        c.execute("COMMIT")
        record({"k": k, "committed": True})
        time.sleep(rng.random() * 0.06)
    c.close()
    record({"closed": True})


def cmd_check(so, db, want_recover):
    """Open through metadwr after damage; JSON on stdout."""
    load_metadwr(so)
    res = {"hash_before": file_hash(db)}
    c = connect(db)
    try:
        res["state"] = logical_state(c)
        res["integrity"] = [r[0] for r in c.execute("PRAGMA integrity_check")]
        res["ok"] = True
    except sqlite3.Error as e:
        res["ok"] = False
        res["code"] = getattr(e, "sqlite_errorcode", None)
        res["error"] = str(e)
    try:
        res["status"] = c.execute("PRAGMA meta_double_write").fetchone()[0]
    except sqlite3.Error as e:
        res["status"] = f"<error: {e}>"
    c.close()
    res["hash_after"] = file_hash(db)
    if not res["ok"] and want_recover == "1":
        c = connect(db)
        try:
            res["recover"] = c.execute("PRAGMA meta_recover").fetchone()[0]
            res["recover_ok"] = True
            try:
                res["recover_state"] = logical_state(c)
                res["recover_integrity"] = [r[0] for r in c.execute("PRAGMA integrity_check")]
            except sqlite3.Error as e:
                res["recover_error"] = str(e)
        except sqlite3.Error as e:
            res["recover_ok"] = False
            res["recover"] = str(e)
        c.close()
        res["hash_after_recover"] = file_hash(db)
    print(json.dumps(res))


def cmd_plain(db):
    """The logical state of a database read by plain SQLite (no metadwr)."""
    c = connect(db)
    try:
        res = {"ok": True, "state": logical_state(c),
               "integrity": [r[0] for r in c.execute("PRAGMA integrity_check")]}
    except sqlite3.Error as e:
        res = {"ok": False, "error": str(e)}
    c.close()
    print(json.dumps(res))


# ---------------------------------------------------------------- harness

class Harness:
    def __init__(self, so, ls):
        self.so = so
        self.ls = ls
        self.sqlite3 = os.environ.get("SQLITE3", "sqlite3")
        self.counts = {}
        self.failures = []
        self.notes = {}

    def count(self, scenario, outcome):
        self.counts.setdefault(scenario, {"exact": 0, "refused": 0, "WRONG": 0, "error": 0, "skipped": 0})
        self.counts[scenario][outcome] += 1

    def note(self, what):
        self.notes[what] = self.notes.get(what, 0) + 1

    def child(self, *args, check=True, timeout=120):
        p = subprocess.run([PY, SELF, *args], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"child {args[0]} failed ({p.returncode}): {p.stderr[-2000:]}")
        return p

    def schema_pages(self, db, tmp):
        """Pages of sqlite_schema in the main file (the WAL is not applied):
        dbstat of the stock shell on a copy whose header says rollback mode."""
        copy = os.path.join(tmp, "dbstat-copy.db")
        shutil.copyfile(db, copy)
        with open(copy, "r+b") as f:
            f.seek(18)
            f.write(b"\x01\x01")
        p = subprocess.run(
            [self.sqlite3, copy,
             "SELECT pageno FROM dbstat WHERE name='sqlite_schema' ORDER BY pageno"],
            capture_output=True, text=True)
        os.unlink(copy)
        pages = [int(x) for x in p.stdout.split()] if p.returncode == 0 else []
        if 1 not in pages:
            self.note("dbstat could not read the schema tree: page 1 only")
            pages = [1] + pages
        return pages

    @staticmethod
    def page_size(db):
        with open(db, "rb") as f:
            h = f.read(100)
        ps = int.from_bytes(h[16:18], "big")
        return 65536 if ps == 1 else ps

    def destroy(self, db, pages, rng):
        ps = self.page_size(db)
        size = os.path.getsize(db)
        with open(db, "r+b") as f:
            for p in sorted(pages, reverse=True):  # page 1 last
                if p * ps > size:
                    continue
                f.seek((p - 1) * ps)
                f.write(rng.randbytes(ps))

    def classify(self, scenario, db, allowed, rng, tmp, what, pages_mode="schema"):
        """Destroy and reopen; allowed: list of legitimate states."""
        if not os.path.exists(db) or os.path.getsize(db) < 512:
            self.count(scenario, "skipped")
            self.note(f"{scenario}: database missing or empty")
            return
        if pages_mode == "schema":
            pages = self.schema_pages(db, tmp)
        else:
            pages = [1]
        self.destroy(db, pages, rng)
        damaged = file_hash(db)
        snap = os.path.join(tmp, f"before-check-{scenario}")
        os.makedirs(snap, exist_ok=True)
        for sfx in ("", "-wal", "-shm", "-dwr"):
            if os.path.exists(db + sfx):
                shutil.copyfile(db + sfx, os.path.join(snap, "app.db" + sfx))
        p = self.child("check", self.so, db, "1", check=False)
        try:
            r = json.loads(p.stdout)
        except ValueError:
            self.fail(scenario, "error", f"{what}: check crashed ({p.returncode}): {p.stderr[-1500:]}", tmp)
            return
        allowed_keys = {state_key(s) for s in allowed}
        what = f"{what} (destroyed pages {pages})"
        if r["ok"]:
            if state_key(r["state"]) in allowed_keys and r["integrity"] == ["ok"]:
                # The file itself is repaired: plain SQLite reads the same.
                q = self.child("plain", db, check=False)
                try:
                    pr = json.loads(q.stdout)
                except ValueError:
                    pr = {"ok": False, "error": q.stderr[-500:]}
                if pr["ok"] and pr["integrity"] == ["ok"] and pr["state"] == r["state"]:
                    self.count(scenario, "exact")
                else:
                    self.fail(scenario, "WRONG", f"{what}: healed through metadwr, but plain SQLite "
                              f"then reads {pr.get('error') or diff_states(pr['state'], r['state'])} "
                              f"(integrity {pr.get('integrity', [])[:2]})", tmp)
            else:
                near = min(allowed, key=lambda s: len(diff_states(r["state"], s)))
                self.fail(scenario, "WRONG",
                          f"{what}: WRONG: opened (integrity {r['integrity'][:3]}, status "
                          f"{r['status']!r}) with a state that is none of the {len(allowed)} "
                          f"legitimate ones; against the nearest: {diff_states(r['state'], near)}", tmp)
            return
        if "recovered" in r["status"]:
            self.fail(scenario, "WRONG", f"{what}: WRONG: restored, then SQLite error "
                      f"{r['error']!r} (status {r['status']!r})", tmp)
            return
        if r["hash_after"] != damaged:
            # SQLite itself checkpoints a WAL when the last connection
            # closes, damaged page 1 or not: what would it have written
            # without metadwr? The snapshot, opened by plain SQLite.
            plain = os.path.join(tmp, f"plain-{scenario}")
            os.makedirs(plain, exist_ok=True)
            for sfx in ("", "-wal", "-shm"):
                if os.path.exists(os.path.join(snap, "app.db" + sfx)):
                    shutil.copyfile(os.path.join(snap, "app.db" + sfx),
                                    os.path.join(plain, "app.db" + sfx))
            self.child("plain", os.path.join(plain, "app.db"), check=False)
            if file_hash(os.path.join(plain, "app.db")) != r["hash_after"]:
                self.fail(scenario, "WRONG", f"{what}: refused ({r['error']!r}) but the file changed, "
                          f"not as plain SQLite changes it (status {r['status']!r})", tmp)
                return
            self.note(f"{scenario}: refused; SQLite's own checkpoint at close changed the file "
                      "(as without metadwr)")
            damaged = r["hash_after"]
        if r.get("recover_ok"):
            st = r.get("recover_state")
            if st is not None and state_key(st) in allowed_keys and r.get("recover_integrity") == ["ok"]:
                self.count(scenario, "exact")
                self.note(f"{scenario}: read path refused, PRAGMA meta_recover exact")
            else:
                self.fail(scenario, "WRONG", f"{what}: WRONG: read path refused, PRAGMA meta_recover "
                          f"answered {r['recover']!r} and gave {describe_state(st)} "
                          f"{r.get('recover_error', '')}", tmp)
            return
        if r.get("hash_after_recover") != damaged:
            self.fail(scenario, "WRONG", f"{what}: meta_recover refused but the file changed", tmp)
            return
        if "stale" not in r["status"]:
            self.fail(scenario, "WRONG", f"{what}: refused with {r['error']!r} but the status is "
                      f"{r['status']!r} (no `stale`)", tmp)
            return
        self.count(scenario, "refused")
        reason = re.sub(r"[0-9]+", "N", r["status"].split("stale:", 1)[-1])
        reason = reason.split("(generation N:", 1)[-1].split(";")[0].strip().rstrip(")")[:80]
        self.note(f"{scenario}: refused: {reason}")

    def fail(self, scenario, outcome, msg, tmp):
        self.count(scenario, outcome)
        self.failures.append(f"[{scenario}] {msg} (kept: {tmp})")
        print(f"  FAIL [{scenario}] {msg}", flush=True)
        self.keep = True

    def ls_config(self, d, db, replica, rng):
        cfg = os.path.join(d, "litestream.yml")
        with open(cfg, "w") as f:
            f.write(
                "dbs:\n"
                f"  - path: {db}\n"
                f"    monitor-interval: {rng.choice(['20ms', '50ms', '100ms'])}\n"
                f"    checkpoint-interval: {rng.choice(['200ms', '500ms', '1s'])}\n"
                f"    min-checkpoint-page-count: {rng.choice([1, 4, 16])}\n"
                "    replica:\n"
                "      type: file\n"
                f"      path: {replica}\n"
                f"      sync-interval: {rng.choice(['50ms', '100ms', '250ms'])}\n")
        return cfg

    def round(self, seed):
        rng = random.Random(seed)
        self.keep = False
        tmp = tempfile.mkdtemp(prefix=f"metadwr-litestream-{seed}-")
        d = os.path.join(tmp, "data")
        os.mkdir(d)
        db = os.path.join(d, "app.db")
        replica = os.path.join(tmp, "replica")
        states_path = os.path.join(tmp, "states.jsonl")
        cfg = self.ls_config(tmp, db, replica, rng)
        ps = rng.choice([1024, 4096])
        ops = rng.randint(15, 60)
        autockpt = rng.choice([4, 32, 1000])
        order = rng.choice(["clean", "ls-term-first", "writer-kill", "ls-kill",
                            "both-kill", "ls-term-writer-kill"])
        what = f"seed {seed} ps={ps} ops={ops} autockpt={autockpt} stop={order}"
        print(f"round {what}", flush=True)
        self.child("init", self.so, db, str(ps))
        ls_log = open(os.path.join(tmp, "litestream.log"), "w")
        ls = subprocess.Popen([self.ls, "replicate", "-config", cfg],
                              stdout=ls_log, stderr=subprocess.STDOUT)
        wr = subprocess.Popen([PY, SELF, "writer", self.so, db, str(seed), str(ops),
                               states_path, str(autockpt)],
                              stderr=open(os.path.join(tmp, "writer.err"), "w"))
        writer_killed = False

        def wait_started():
            # Until the writer recorded its first commit (Litestream is up).
            t = time.time()
            while time.time() - t < 30 and wr.poll() is None:
                if os.path.exists(states_path) and os.path.getsize(states_path) > 0:
                    return
                time.sleep(0.02)

        def stop_ls(sig):
            if ls.poll() is None:
                ls.send_signal(sig)
            try:
                ls.wait(timeout=30)
            except subprocess.TimeoutExpired:
                ls.kill()
                ls.wait()
                self.note("litestream did not stop within 30 s of SIGTERM")

        wait_started()
        if order == "clean":
            wr.wait(timeout=300)
            time.sleep(rng.random() * 1.0)
            stop_ls(signal.SIGTERM)
        else:
            time.sleep(rng.random() * 2.0)
            if order in ("ls-term-first", "ls-kill"):
                stop_ls(signal.SIGTERM if order == "ls-term-first" else signal.SIGKILL)
                wr.wait(timeout=300)
            elif order == "writer-kill":
                wr.kill()
                writer_killed = True
                wr.wait()
                time.sleep(rng.random() * 0.5)
                stop_ls(signal.SIGTERM)
            elif order == "both-kill":
                if rng.random() < 0.5:
                    wr.kill(); ls.kill()
                else:
                    ls.kill(); wr.kill()
                writer_killed = True
                wr.wait(); ls.wait()
            else:  # ls-term-writer-kill
                stop_ls(signal.SIGTERM)
                time.sleep(rng.random() * 0.5)
                wr.kill()
                writer_killed = True
                wr.wait()
        if wr.returncode not in (0, -9):
            raise RuntimeError(f"writer exited with {wr.returncode}: "
                               + open(os.path.join(tmp, "writer.err")).read()[-1500:])
        if ls.poll() is None:
            ls.kill(); ls.wait()
        if wr.returncode == -9:
            writer_killed = True

        # The committed states.
        states, committed, pending = {}, [], None
        for line in open(states_path):
            o = json.loads(line)
            if "state" in o:
                states[o["k"]] = o["state"]
                pending = o["k"]
            elif o.get("committed"):
                committed.append(o["k"])
        if writer_killed:
            allowed = [states[k] for k in sorted(states)]
        else:
            allowed = [states[committed[-1]]]
        all_states = {state_key(s) for s in states.values()}

        # 4: destroy page 1 and the schema of the database itself.
        self.classify("damaged-in-place", db, allowed, rng, tmp, what)

        # 5: restores from the replica over the protected database.
        ltx = subprocess.run([self.ls, "ltx", "-json", "file://" + replica],
                             capture_output=True, text=True)
        try:
            txids = sorted({int(e["max_txid"], 16) for e in json.loads(ltx.stdout or "[]")})
        except ValueError:
            txids = []
        if not txids:
            self.note("no replica (Litestream stopped before its first sync)")
            self.count("restore-mv-over", "skipped")
            self.count("restore-in-place", "skipped")
        else:
            # (a) restore -o new.db, then mv over app.db; the -dwr stays.
            new = os.path.join(d, "new.db")
            p = subprocess.run([self.ls, "restore", "-o", new, "file://" + replica],
                               capture_output=True, text=True)
            if p.returncode != 0:
                self.fail("restore-mv-over", "error", f"{what}: litestream restore failed: {p.stderr[-800:]}", tmp)
            else:
                exp = self.restored_state(new, all_states, "restore-mv-over")
                for sfx in ("-wal", "-shm"):
                    if os.path.exists(db + sfx):
                        os.unlink(db + sfx)
                os.rename(new, db)
                if exp is not None:
                    self.classify("restore-mv-over", db, [exp], rng, tmp, what + " restore -o new.db; mv",
                                  pages_mode=rng.choice(["page1", "schema"]))
            # (b) rm app.db*, restore -o app.db (sometimes to an earlier txid).
            old_ino = os.stat(db).st_ino if os.path.exists(db) else None
            for sfx in ("", "-wal", "-shm"):
                if os.path.exists(db + sfx):
                    os.unlink(db + sfx)
            args = []
            label = "latest"
            if len(txids) > 1 and rng.random() < 0.5:
                tx = rng.choice(txids[:-1])
                args = ["-txid", "%016x" % tx]
                label = "txid %016x of %016x" % (tx, txids[-1])
            p = subprocess.run([self.ls, "restore", *args, "-o", db, "file://" + replica],
                               capture_output=True, text=True)
            if p.returncode != 0 and args:
                self.note(f"restore -txid failed, restored the latest instead")
                label = "latest"
                p = subprocess.run([self.ls, "restore", "-o", db, "file://" + replica],
                                   capture_output=True, text=True)
            if p.returncode != 0:
                self.fail("restore-in-place", "error", f"{what}: litestream restore failed: {p.stderr[-800:]}", tmp)
            else:
                same = os.stat(db).st_ino == old_ino
                self.note("restore-in-place: the new file got the old inode number"
                          if same else "restore-in-place: the new file got another inode number")
                what_b = f" (inode {'reused' if same else 'new'})"
                exp = self.restored_state(db, all_states, "restore-in-place")
                if exp is not None:
                    if label != "latest":
                        self.note("restore-in-place: earlier txid")
                    self.classify("restore-in-place", db, [exp], rng, tmp,
                                  what + f" rm app.db; restore -o app.db ({label}){what_b}",
                                  pages_mode=rng.choice(["page1", "schema"]))
        if self.keep or os.environ.get("LITESTREAM_KEEP") == "1":
            print(f"  kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    def restored_state(self, db, all_states, scenario):
        """What Litestream restored, read by plain SQLite before any damage."""
        p = self.child("plain", db, check=False)
        try:
            r = json.loads(p.stdout)
        except ValueError:
            r = {"ok": False, "error": p.stderr[-500:]}
        if not r["ok"] or r["integrity"] != ["ok"]:
            self.note(f"{scenario}: Litestream's restore unreadable: skipped")
            self.count(scenario, "skipped")
            return None
        if state_key(r["state"]) not in all_states:
            # Litestream restores points of its own sync granularity; the
            # writer's initial state (before its first recorded commit) is
            # the only other legitimate one.
            self.note(f"{scenario}: restored state is not one the writer recorded")
        return r["state"]


def cmd_run(so, ls):
    h = Harness(so, ls)
    rounds = int(os.environ.get("LITESTREAM_ROUNDS", "30"))
    seed0 = int(os.environ.get("LITESTREAM_SEED", "1"))
    seeds = [seed0 * 1000 + i for i in range(rounds)]
    if os.environ.get("LITESTREAM_ONLY"):
        seeds = [int(os.environ["LITESTREAM_ONLY"])]
        rounds = 1
    t0 = time.time()
    for seed in seeds:
        try:
            h.round(seed)
        except Exception as e:  # a harness error fails the run
            h.count("harness", "error")
            h.failures.append(f"seed {seed}: harness error: {e!r}")
            print(f"  FAIL seed {seed}: harness error: {e!r}", flush=True)
    print()
    print(f"Litestream interplay: {rounds} rounds from seed {seed0} in {time.time() - t0:.0f} s")
    for sc in ("damaged-in-place", "restore-mv-over", "restore-in-place", "harness"):
        if sc in h.counts:
            c = h.counts[sc]
            print(f"  {sc:18} exact {c['exact']:3} / refused {c['refused']:3} / WRONG {c['WRONG']:3}"
                  f"   (errors {c['error']}, skipped {c['skipped']})")
    for k, v in sorted(h.notes.items()):
        print(f"  note: {k}: {v}")
    for f in h.failures:
        print("FAILED:", f)
    failed = sum(c["WRONG"] + c["error"] for c in h.counts.values())
    passed = sum(c["exact"] + c["refused"] for c in h.counts.values())
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"run": cmd_run, "init": cmd_init, "writer": cmd_writer,
     "check": cmd_check, "plain": cmd_plain}[cmd](*args)
