#!/usr/bin/python3
"""Salvage yield lab (issue 12): how many rows come back, and where.

    /usr/bin/python3 scripts/salvage-lab.py --so /abs/libmetadwr.so \\
        --recover-shell build/sqlite-recover/sqlite3 [--mode full|sample|big]

Builds databases through metadwr with protection on (mixed column types, a
STRICT, an AUTOINCREMENT and WITHOUT ROWID tables, overflow chains,
indexes, a view, a trigger, free pages; page sizes 1024/4096/8192, rollback
and WAL, auto_vacuum none and full), records every row, destroys page 1,
every sqlite_schema page and 0/1/5/10 % of the other pages (random bytes,
and zeros), and scores three ways back:

  metadwr        SELECT meta_salvage(out) / PRAGMA meta_salvage=out on the
                 damaged file, opened through metadwr
  stock          .recover of /usr/bin/sqlite3 (Debian's 3.40.1) on the
                 damaged file
  heal+recover   PRAGMA meta_recover through metadwr (page 1 and the schema
                 back from the -dwr), then .recover of the newest shell the
                 build reaches (scripts/build-sqlite-recover.sh)

Score of each output database, against the rows recorded before the damage:

  at stake     rows whose cell page and overflow pages were not damaged,
               found by walking the undamaged file's B-trees here
  yield        rows of `at stake` back in their own table with identical
               values (type and value; the rowid of rowid tables, the key of
               WITHOUT ROWID tables)
  wrong        output rows sitting in a table that is not theirs
  altered      output rows with a key of their table but other values, or
               rows that never existed
  l&f          rows in lost_and_found (they count as not recovered)
  schema       sqlite_schema (type, name, tbl_name, sql; not rootpage) as the
               original, ignoring lost_and_found and metadwr_salvage_report

--mode big builds one ~1 GB database (a few wide tables, rollback, 4096),
damages page 1, the schema and 1 % of the other pages, and times
meta_salvage against .recover of the newest shell.

Exit status: 1 when meta_salvage exists and put any row in a wrong table,
altered any row, or changed the damaged file; 2 on a lab error. While
meta_salvage is missing the metadwr rows are skipped and the lab exits 0.

Everything metadwr does runs in a child process (this script, with a
hidden `_worker` first argument): loading the extension makes metadwr the
default VFS of the process, and the lab itself reads files only through the
plain `unix` VFS, so that it never heals what it measures.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.parse

LAB_FORMAT = 1  # bump when generated databases change shape

# ---------------------------------------------------------------------------
# values: what SQLite returns, with its storage class kept apart
# ---------------------------------------------------------------------------


def tagged_text(b):
    return ("t", bytes(b))


def norm(v):
    if isinstance(v, tuple):
        return v
    if v is None:
        return ("n", None)
    if isinstance(v, int):
        return ("i", v)
    if isinstance(v, float):
        return ("r", v)
    if isinstance(v, (bytes, memoryview)):
        return ("b", bytes(v))
    if isinstance(v, str):  # not with tagged_text as text factory
        return ("t", v.encode())
    raise TypeError(type(v))


def plain_connect(path, immutable=False):
    """A read-only connection through the plain unix VFS, never metadwr's."""
    uri = "file:%s?vfs=unix&mode=ro%s" % (
        path.replace("%", "%25").replace("?", "%3f").replace("#", "%23"),
        "&immutable=1" if immutable else "",
    )
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.text_factory = tagged_text
    return conn


def qi(name):
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------
# the file format, read by hand (https://www.sqlite.org/fileformat2.html)
# ---------------------------------------------------------------------------


def varint(b, p):
    v = 0
    for i in range(8):
        c = b[p + i]
        v = (v << 7) | (c & 0x7F)
        if c < 0x80:
            return v, p + i + 1
    v = (v << 8) | b[p + 8]
    return v, p + 9


def to_signed64(v):
    return v - (1 << 64) if v >= (1 << 63) else v


def decode_record(payload, nfields=None):
    hsize, p = varint(payload, 0)
    types = []
    while p < hsize:
        t, p = varint(payload, p)
        types.append(t)
    if nfields is not None:
        types = types[:nfields]
    off = hsize
    out = []
    for t in types:
        if t == 0:
            out.append(("n", None))
        elif 1 <= t <= 6:
            n = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}[t]
            out.append(("i", int.from_bytes(payload[off:off + n], "big", signed=True)))
            off += n
        elif t == 7:
            out.append(("r", struct.unpack(">d", payload[off:off + 8])[0]))
            off += 8
        elif t == 8:
            out.append(("i", 0))
        elif t == 9:
            out.append(("i", 1))
        elif t >= 12 and t % 2 == 0:
            n = (t - 12) // 2
            out.append(("b", bytes(payload[off:off + n])))
            off += n
        elif t >= 13:
            n = (t - 13) // 2
            out.append(("t", bytes(payload[off:off + n])))
            off += n
        else:
            raise ValueError("reserved serial type %d" % t)
    return out


class LabError(Exception):
    pass


class DbImage:
    """An undamaged database file, parsed: page size, B-trees, cell pages."""

    MAX_DEPTH = 64

    def __init__(self, data):
        if data[:16] != b"SQLite format 3\x00":
            raise LabError("not a database image")
        self.data = data
        ps = struct.unpack(">H", data[16:18])[0]
        self.page_size = 65536 if ps == 1 else ps
        self.usable = self.page_size - data[20]
        self.npages = len(data) // self.page_size

    def page(self, pgno):
        if not 1 <= pgno <= self.npages:
            raise LabError("page %d out of range" % pgno)
        o = (pgno - 1) * self.page_size
        return self.data[o:o + self.page_size]

    def _local(self, P, index):
        U = self.usable
        X = U - 35 if not index else ((U - 12) * 64 // 255) - 23
        if P <= X:
            return P
        M = ((U - 12) * 32 // 255) - 23
        K = M + ((P - M) % (U - 4))
        return K if K <= X else M

    def _payload(self, page, off, P, index, want):
        """(payload or None, overflow pages) of a cell whose payload starts at off."""
        local = self._local(P, index)
        ovfl = []
        if local == P:
            return (bytes(page[off:off + P]) if want else None), ovfl
        parts = [bytes(page[off:off + local])] if want else None
        nxt = struct.unpack(">I", page[off + local:off + local + 4])[0]
        left = P - local
        while left > 0:
            if nxt in ovfl or len(ovfl) > self.npages:
                raise LabError("overflow chain loops")
            ovfl.append(nxt)
            op = self.page(nxt)
            take = min(left, self.usable - 4)
            if want:
                parts.append(bytes(op[4:4 + take]))
            left -= take
            nxt = struct.unpack(">I", op[0:4])[0]
        return (b"".join(parts) if want else None), ovfl

    def walk(self, root, want_payload=False):
        """Yields (kind, pgno, key_or_payload, overflow pages) for every cell of
        a B-tree, and ('page', pgno, None, []) for every page of it. kind is
        'row' (table leaf: key = rowid) or 'entry' (index cell: payload)."""
        seen = set()
        stack = [(root, 0)]
        while stack:
            pgno, depth = stack.pop()
            if pgno in seen or depth > self.MAX_DEPTH:
                raise LabError("B-tree from %d is not a tree" % root)
            seen.add(pgno)
            yield ("page", pgno, None, [])
            page = self.page(pgno)
            h = 100 if pgno == 1 else 0
            t = page[h]
            ncell = struct.unpack(">H", page[h + 3:h + 5])[0]
            interior = t in (2, 5)
            if t not in (2, 5, 10, 13):
                raise LabError("page %d: type %d" % (pgno, t))
            ptrs = h + (12 if interior else 8)
            for i in range(ncell):
                c = struct.unpack(">H", page[ptrs + 2 * i:ptrs + 2 * i + 2])[0]
                if t == 13:
                    P, p = varint(page, c)
                    rowid, p = varint(page, p)
                    pay, ovfl = self._payload(page, p, P, False, want_payload)
                    yield ("row", pgno, (to_signed64(rowid), pay), ovfl)
                elif t == 5:
                    child = struct.unpack(">I", page[c:c + 4])[0]
                    stack.append((child, depth + 1))
                else:
                    p = c
                    if t == 2:
                        child = struct.unpack(">I", page[c:c + 4])[0]
                        stack.append((child, depth + 1))
                        p += 4
                    P, p = varint(page, p)
                    pay, ovfl = self._payload(page, p, P, True, True)
                    yield ("entry", pgno, pay, ovfl)
            if interior:
                stack.append((struct.unpack(">I", page[h + 8:h + 12])[0], depth + 1))

    def schema(self):
        """(rows of sqlite_schema as dicts, set of its pages incl. overflow)."""
        rows, pages = [], set()
        for kind, pgno, item, ovfl in self.walk(1, want_payload=True):
            pages.add(pgno)
            pages.update(ovfl)
            if kind == "row":
                f = decode_record(item[1])
                rows.append({
                    "type": f[0][1].decode(), "name": f[1][1].decode(),
                    "tbl_name": f[2][1].decode(),
                    "rootpage": f[3][1] if f[3][0] == "i" else 0,
                    "sql": f[4][1].decode() if f[4][0] == "t" else None,
                })
        return rows, pages


# ---------------------------------------------------------------------------
# the databases
# ---------------------------------------------------------------------------

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo "
         "lima mike november oscar papa quebec romeo sierra tango uniform "
         "victor whiskey xray yankee zulu éclair naïve 漢字 данные 🙂").split()

TEMPLATES = {
    "ipk": "CREATE TABLE {n}(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, price REAL, note TEXT)",
    "plain": "CREATE TABLE {n}(a TEXT, b INTEGER, c REAL, d BLOB, e)",
    "num": "CREATE TABLE {n}(id INTEGER PRIMARY KEY, amount NUMERIC NOT NULL, ratio REAL, code TEXT, flag INTEGER NOT NULL DEFAULT 0)",
    "doc": "CREATE TABLE {n}(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT, payload BLOB)",
    "strict": "CREATE TABLE {n}(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER, f REAL, b BLOB, x ANY) STRICT",
    "auto": "CREATE TABLE {n}(id INTEGER PRIMARY KEY AUTOINCREMENT, msg TEXT NOT NULL, at REAL)",
    "log": "CREATE TABLE {n}(id INTEGER PRIMARY KEY, src INTEGER NOT NULL, what TEXT, at REAL)",
    "wr": "CREATE TABLE {n}(k TEXT PRIMARY KEY, n INTEGER NOT NULL, v BLOB, t TEXT) WITHOUT ROWID",
    "wr2": "CREATE TABLE {n}(a INTEGER NOT NULL, b TEXT NOT NULL, c REAL, d BLOB, PRIMARY KEY(a, b)) WITHOUT ROWID",
    "scratch": "CREATE TABLE {n}(id INTEGER PRIMARY KEY, junk BLOB)",
}
WEIGHT = {"doc": 0.25, "wr": 0.6, "wr2": 0.8}


def plan_tables(n_tables):
    """[(name, kind)] for n_tables tables, the special ones first."""
    plan = [("t_strict", "strict"), ("t_auto", "auto"), ("t_log", "log"),
            ("t_wr", "wr"), ("t_wr2", "wr2")]
    cycle = ["ipk", "plain", "num", "ipk", "doc", "plain", "num", "ipk"]
    i, seen = 0, {}
    while len(plan) < n_tables:
        kind = cycle[i % len(cycle)]
        seen[kind] = seen.get(kind, 0) + 1
        plan.append(("t_%s_%d" % (kind, seen[kind]), kind))
        i += 1
    return plan


class Gen:
    def __init__(self, rng, page_size):
        self.r = rng
        self.page_size = page_size

    def text(self, lo=1, hi=6):
        return " ".join(self.r.choice(WORDS) for _ in range(self.r.randint(lo, hi)))

    def long_text(self):
        # Often past a page, sometimes many pages: overflow chains.
        n = self.r.choice([0, 40, self.page_size // 2, self.page_size * 2,
                           self.r.randint(1000, 12000)])
        s, length = [], 0
        while length < n:
            w = self.r.choice(WORDS)
            s.append(w)
            length += len(w) + 1
        return " ".join(s)

    def blob(self, hi=64):
        return self.r.randbytes(self.r.randint(0, hi))

    def long_blob(self):
        return self.r.randbytes(self.r.choice([0, 16, self.page_size + 7, self.r.randint(500, 9000)]))

    def int(self):
        c = self.r.random()
        if c < 0.05:
            return self.r.choice([0, -1, 2**63 - 1, -(2**63), 2**31, -(2**31) - 1])
        if c < 0.5:
            return self.r.randint(-1000, 1000)
        return self.r.randint(-(2**48), 2**48)

    def real(self):
        c = self.r.random()
        if c < 0.1:
            return float(self.r.randint(-100, 100))  # integral: stored as an integer
        return self.r.uniform(-1e6, 1e6)

    def mixed(self):
        return self.r.choice([None, self.int(), self.real(), self.text(), self.blob(20)])

    def numeric(self):
        return self.r.choice([self.int(), self.real(), "%d.50" % self.r.randint(0, 999),
                              "n/a", str(self.r.randint(0, 10**6)), self.blob(8)])

    def row(self, kind, tname, i):
        r = self.r
        tag = "%s#%d " % (tname, i)
        if kind == "ipk":
            return (tag + self.text(), self.int(), self.real(), r.choice([None, self.text(2, 20)]))
        if kind == "plain":
            return (tag + self.text(), self.int(), self.real(), self.blob(), self.mixed())
        if kind == "num":
            return (self.numeric(), r.choice([None, self.real()]), tag + self.text(1, 2), r.randint(0, 1))
        if kind == "doc":
            return (tag + self.text(), r.choice([None, self.long_text()]),
                    r.choice([None, self.long_blob()]))
        if kind == "strict":
            return ("k%s-%d" % (tname, i), self.int(), self.real(), self.blob(), self.mixed())
        if kind == "auto":
            return (tag + self.text(), self.real())
        if kind == "wr":
            v = self.long_blob() if r.random() < 0.1 else self.blob()
            return ("%s-%06d-%s" % (tname, i, self.text(1, 2)), self.int(), v, self.text())
        if kind == "wr2":
            return (r.randint(-50, 50), "%s/%d/%s" % (tname, i, self.r.choice(WORDS)), self.real(), self.blob())
        if kind == "scratch":
            return (r.randbytes(r.randint(100, 3000)),)
        raise ValueError(kind)


INSERT = {
    "ipk": "INSERT INTO {n}(name, qty, price, note) VALUES (?,?,?,?)",
    "plain": "INSERT INTO {n}(a, b, c, d, e) VALUES (?,?,?,?,?)",
    "num": "INSERT INTO {n}(amount, ratio, code, flag) VALUES (?,?,?,?)",
    "doc": "INSERT INTO {n}(title, body, payload) VALUES (?,?,?)",
    "strict": "INSERT INTO {n}(k, v, f, b, x) VALUES (?,?,?,?,?)",
    "auto": "INSERT INTO {n}(msg, at) VALUES (?,?)",
    "wr": "INSERT OR REPLACE INTO {n}(k, n, v, t) VALUES (?,?,?,?)",
    "wr2": "INSERT OR REPLACE INTO {n}(a, b, c, d) VALUES (?,?,?,?)",
    "scratch": "INSERT INTO {n}(junk) VALUES (?)",
}


def generate(spec):
    """Runs in a worker with metadwr loaded and METADWR_ENABLE=1."""
    path = spec["path"]
    rng = random.Random(spec["seed"])
    g = Gen(rng, spec["page_size"])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size=%d" % spec["page_size"])
    conn.execute("PRAGMA auto_vacuum=%s" % spec["auto_vacuum"])
    mode = conn.execute("PRAGMA journal_mode=%s" % spec["journal"]).fetchone()[0]
    if mode != spec["journal"]:
        raise LabError("journal_mode %s, not %s" % (mode, spec["journal"]))
    plan = plan_tables(spec["tables"])
    kinds = dict(plan)
    conn.execute("BEGIN")
    for name, kind in plan:
        conn.execute(TEMPLATES[kind].format(n=name))
    conn.execute(TEMPLATES["scratch"].format(n="t_scratch"))
    # Indexes of several shapes, a view, a trigger.
    ipks = [n for n, k in plan if k == "ipk"]
    plains = [n for n, k in plan if k == "plain"]
    nums = [n for n, k in plan if k == "num"]
    docs = [n for n, k in plan if k == "doc"]
    for n in ipks[::2]:
        conn.execute("CREATE INDEX %s_name ON %s(name)" % (n, n))
    for n in plains[::2]:
        conn.execute("CREATE INDEX %s_c ON %s(c) WHERE c > 0" % (n, n))
    for n in nums[::2]:
        conn.execute("CREATE INDEX %s_code_amount ON %s(code, amount)" % (n, n))
    for n in docs[:1]:
        conn.execute("CREATE INDEX %s_len ON %s(length(body))" % (n, n))
    conn.execute("CREATE UNIQUE INDEX t_strict_k ON t_strict(k)")
    conn.execute("CREATE INDEX t_wr_n ON t_wr(n)")
    conn.execute("CREATE VIEW v_join AS SELECT a.id, a.name, b.amount FROM %s a "
                 "JOIN %s b ON a.id = b.id WHERE b.flag = 1" % (ipks[0], nums[0]))
    conn.execute("CREATE TRIGGER t_auto_log AFTER INSERT ON t_auto BEGIN "
                 "INSERT INTO t_log(src, what, at) VALUES (new.id, 'insert ' || new.msg, new.at); END")
    conn.execute("COMMIT")

    # Rows: about spec['rows'] in all, inserted in rounds so that the
    # tables' pages interleave in the file.
    weights = {n: WEIGHT.get(k, 1.0) for n, k in plan if k != "log"}
    weights["t_auto"] *= 0.5  # its trigger doubles it into t_log
    unit = spec["rows"] / sum(weights.values())
    target = {n: max(8, int(unit * w)) for n, w in weights.items()}
    target["t_scratch"] = max(20, spec["rows"] // 40)
    kinds["t_scratch"] = "scratch"
    rounds = 6
    counter = {n: 0 for n in target}
    for rd in range(rounds):
        conn.execute("BEGIN")
        for n, total in target.items():
            k = kinds[n]
            want = total * (rd + 1) // rounds - total * rd // rounds
            rows = []
            for _ in range(want):
                counter[n] += 1
                rows.append(g.row(k, n, counter[n]))
            conn.executemany(INSERT[k].format(n=n), rows)
        conn.execute("COMMIT")

    # Deletes and updates: free pages, freeblocks, moved cells.
    conn.execute("BEGIN")
    names = [n for n, k in plan if k not in ("log",)]
    for n in names[::3]:
        if kinds[n] == "wr":
            conn.execute("DELETE FROM %s WHERE n %% 7 = 3" % n)
        elif kinds[n] == "wr2":
            conn.execute("DELETE FROM %s WHERE a %% 9 = 4" % n)
        else:
            ids = [r[0] for r in conn.execute("SELECT rowid FROM %s ORDER BY rowid" % n)]
            conn.executemany("DELETE FROM %s WHERE rowid = ?" % n,
                             [(i,) for i in rng.sample(ids, len(ids) // 10)])
    for n in names[1::3]:
        k = kinds[n]
        if k == "doc":
            ids = [r[0] for r in conn.execute("SELECT id FROM %s" % n)]
            for i in rng.sample(ids, max(1, len(ids) // 8)):
                conn.execute("UPDATE %s SET body = ? WHERE id = ?" % n, (g.long_text(), i))
        elif k in ("ipk",):
            conn.execute("UPDATE %s SET note = ? WHERE id %% 11 = 5" % n, (g.text(20, 60),))
        elif k == "plain":
            conn.execute("UPDATE %s SET e = ? WHERE rowid %% 13 = 2" % n, (g.blob(200),))
        elif k == "wr":
            conn.execute("UPDATE %s SET v = ? WHERE n %% 5 = 1" % n, (g.long_blob(),))
    conn.execute("COMMIT")
    conn.execute("DROP TABLE t_scratch")
    if spec["journal"] == "wal":
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    state = conn.execute("PRAGMA meta_double_write").fetchone()[0]
    conn.close()
    if not state.startswith("enabled") or not os.path.exists(path + "-dwr"):
        raise LabError("protection is not on: %s" % state)
    return {"dwr": state}


# ---------------------------------------------------------------------------
# reference: rows, where they live, the schema
# ---------------------------------------------------------------------------


def table_list(conn):
    out = []
    for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"):
        name = name[1].decode()
        wr = conn.execute("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?",
                          (name,)).fetchone()[0]
        info = conn.execute("SELECT name, pk FROM pragma_table_info(?)", (name,)).fetchall()
        ncol = len(info)
        pk = [i for i, r in sorted(enumerate(info), key=lambda x: x[1][1]) if r[1] > 0]
        out.append({"name": name, "wr": bool(wr), "ncol": ncol, "pk": pk})
    return out


def read_rows(conn, t):
    """{key: row tuple}; row = (rowid, cols...) or (cols...) for WITHOUT ROWID."""
    if t["wr"]:
        cur = conn.execute("SELECT * FROM %s" % qi(t["name"]))
    else:
        cur = conn.execute("SELECT rowid, * FROM %s" % qi(t["name"]))
    rows = {}
    for r in cur:
        r = tuple(norm(v) for v in r)
        key = tuple(r[i] for i in t["pk"]) if t["wr"] else r[0][1]
        rows[key] = r
    return rows


def schema_rows(conn):
    return sorted(
        tuple(None if v is None else (v[1].decode() if isinstance(v, tuple) else v) for v in r)
        for r in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema")
        if not r[1][1].decode().startswith(("lost_and_found", "metadwr_salvage_")))


def reference(path):
    """Everything the score needs, from the undamaged file."""
    conn = plain_connect(path, immutable=True)
    ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != ("t", b"ok"):
        raise LabError("%s: integrity_check %r" % (path, ok))
    tables = table_list(conn)
    rows = {t["name"]: read_rows(conn, t) for t in tables}
    schema = schema_rows(conn)
    conn.close()
    with open(path, "rb") as f:
        img = DbImage(f.read())
    sch, schema_pages = img.schema()
    roots = {r["name"]: r["rootpage"] for r in sch if r["type"] == "table"}
    # Where each row lives: its cell's page and overflow pages.
    where = {}
    for t in tables:
        w = {}
        for kind, pgno, item, ovfl in img.walk(roots[t["name"]], want_payload=False):
            if kind == "row":
                w[item[0]] = (pgno, tuple(ovfl))
            elif kind == "entry":
                f = decode_record(item, len(t["pk"]))
                # record order is the key's order; t['pk'] lists table columns by key order
                w[tuple(f)] = (pgno, tuple(ovfl))
        missing = set(rows[t["name"]]) - set(w)
        if missing:
            raise LabError("%s: %d rows not found by the B-tree walk (e.g. %r)"
                           % (t["name"], len(missing), next(iter(missing))))
        where[t["name"]] = {k: w[k] for k in rows[t["name"]]}
    return {"tables": tables, "rows": rows, "where": where, "schema": schema,
            "schema_pages": sorted(schema_pages), "page_size": img.page_size,
            "npages": img.npages}


# ---------------------------------------------------------------------------
# damage
# ---------------------------------------------------------------------------


def damage_pages(ref, pct, seed):
    """Page 1, the schema pages, and pct % of the others (seeded)."""
    fixed = set(ref["schema_pages"]) | {1}
    others = [p for p in range(1, ref["npages"] + 1) if p not in fixed]
    rng = random.Random("%s/pages/%s" % (seed, pct))
    n = round(len(others) * pct / 100.0)
    return sorted(fixed | set(rng.sample(others, n)))


def damaged_image(pristine, ref, pages, kind, seed):
    ps = ref["page_size"]
    buf = bytearray(pristine)
    rng = random.Random("%s/bytes/%s" % (seed, len(pages)))
    for p in pages:
        o = (p - 1) * ps
        buf[o:o + ps] = rng.randbytes(ps) if kind == "random" else bytes(ps)
    return bytes(buf)


def write_in_place(path, data):
    """Same inode, same birth time: the -dwr's identity evidence still holds."""
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate(len(data))
        f.flush()
        os.fsync(f.fileno())


def copy_in_place(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    if os.path.exists(dst):
        write_in_place(dst, data)
    else:
        with open(dst, "wb") as f:
            f.write(data)


def clear_sidecars(path, keep_dwr=True):
    for suf in ("-wal", "-shm", "-journal", "-dwr-quarantine") + (() if keep_dwr else ("-dwr",)):
        if os.path.exists(path + suf):
            os.unlink(path + suf)


# ---------------------------------------------------------------------------
# the three ways back
# ---------------------------------------------------------------------------


def worker(args, env_extra=None, timeout=3600):
    env = dict(os.environ)
    env.pop("METADWR_ENABLE", None)
    env.update(env_extra or {})
    cmd = [sys.executable, os.path.abspath(__file__), "_worker"] + args
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timed out after %d s" % timeout, "seconds": float(timeout)}
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"ok": False, "error": "worker exit %d: %s" % (p.returncode, (p.stderr or p.stdout).strip()[-500:])}
    return json.loads(lines[-1])


def run_recover(shell, src, out, timeout):
    """`shell src .recover | shell out`; returns (seconds, note)."""
    if os.path.exists(out):
        os.unlink(out)
    t0 = time.monotonic()
    p1 = subprocess.Popen([shell, "-init", "/dev/null", "-batch", src, ".recover"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2 = subprocess.Popen([shell, "-init", "/dev/null", "-batch", out],
                          stdin=p1.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    p1.stdout.close()
    try:
        err2 = p2.communicate(timeout=timeout)[1]
        err1 = p1.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        p1.kill()
        p2.kill()
        p1.wait()
        p2.wait()
        return time.monotonic() - t0, "timed out after %d s" % timeout
    dt = time.monotonic() - t0
    note = (err1 + err2).decode(errors="replace").strip().splitlines()
    return dt, (note[0][:120] if note else "")


def same_pages(path, pristine, pages, ps):
    """Whether pages of a file are the original's again. Page 1's change
    counter and version-valid-for number (offsets 24 and 92) may have moved
    on: a connection that healed the file may have written it since."""

    def masked(b, p):
        if p != 1:
            return b
        b = bytearray(b)
        b[24:28] = b[92:96] = bytes(4)
        return bytes(b)

    with open(path, "rb") as f:
        for p in pages:
            f.seek((p - 1) * ps)
            if masked(f.read(ps), p) != masked(pristine[(p - 1) * ps:p * ps], p):
                return False
    return True


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# score
# ---------------------------------------------------------------------------


def read_output_table(conn, name, t):
    """Every row of an output table (rowid first unless WITHOUT ROWID)."""
    try:
        if t is not None and t["wr"]:
            return conn.execute("SELECT * FROM %s" % qi(name)).fetchall()
        return conn.execute("SELECT rowid, * FROM %s" % qi(name)).fetchall()
    except sqlite3.OperationalError:
        # no rowid: a table of another shape than the original's
        return conn.execute("SELECT * FROM %s" % qi(name)).fetchall()


def score(out, ref, at_stake):
    res = {"yield": 0, "recovered": 0, "wrong": 0, "altered": 0, "lf": 0,
           "schema": False, "note": ""}
    if not os.path.exists(out) or os.path.getsize(out) == 0:
        res["note"] = "no output database;"
        return res
    try:
        conn = plain_connect(out)
        names = [r[0][1].decode() for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table'")]
    except sqlite3.Error as e:
        res["note"] = "output unreadable: %s" % e
        return res
    try:
        res["schema"] = schema_rows(conn) == ref["schema"]
    except sqlite3.Error as e:
        res["note"] = "sqlite_schema unreadable: %s;" % e
    orig = {t["name"]: t for t in ref["tables"]}
    # Which tables a full row tuple, or its values without the rowid, belongs to.
    by_tuple, by_values = {}, {}
    for name, rows in ref["rows"].items():
        for r in rows.values():
            by_tuple.setdefault(r, set()).add(name)
            # values alone: without the rowid, or the whole row of a
            # WITHOUT ROWID table (found in a rowid table behind its rowid)
            by_values.setdefault(r if orig[name]["wr"] else r[1:], set()).add(name)
    for name in names:
        if name.startswith("sqlite_") or name.startswith("metadwr_salvage_"):
            continue
        if name.startswith("lost_and_found"):
            try:
                res["lf"] += conn.execute("SELECT count(*) FROM %s" % qi(name)).fetchone()[0]
            except sqlite3.Error as e:
                res["note"] = (res["note"] + " %s unreadable: %s;" % (name, e)).strip()
            continue
        t = orig.get(name)
        try:
            rows = read_output_table(conn, name, t)
        except sqlite3.Error as e:
            res["note"] = (res["note"] + " table %s unreadable: %s;" % (name, e)).strip()
            continue
        got = set()
        for r in rows:
            r = tuple(norm(v) for v in r)
            if t is not None and len(r) == len(next(iter(ref["rows"][name].values()), r)):
                key = tuple(r[i] for i in t["pk"]) if t["wr"] else r[0][1]
                if ref["rows"][name].get(key) == r:
                    if key in got:
                        res["altered"] += 1  # a duplicate is a row that never existed
                    got.add(key)
                    continue
            homes = (by_tuple.get(r, set()) | by_values.get(r[1:], set())) - {name}
            if homes:
                res["wrong"] += 1
            else:
                res["altered"] += 1
        if t is not None:
            res["recovered"] += len(got)
            res["yield"] += len(got & at_stake[name])
    conn.close()
    return res


# ---------------------------------------------------------------------------
# the lab
# ---------------------------------------------------------------------------

CONFIGS_FULL = [(ps, j, av) for ps in (1024, 4096, 8192) for j in ("delete", "wal")
                for av in ("none", "full")]
CONFIGS_SAMPLE = [(1024, "wal", "full"), (4096, "delete", "full"), (8192, "delete", "none"),
                  (4096, "wal", "none")]
LEVELS = [0, 1, 5, 10]
KINDS = ["random", "zero"]


def log(*a):
    print(*a, flush=True)


def build_database(d, name, spec, so):
    """Generates (or reuses) one protected database; returns its path."""
    path = os.path.join(d, name + ".db")
    stamp = path + ".spec.json"
    if os.path.exists(stamp) and os.path.exists(path + ".pristine") and \
            os.path.exists(path + ".dwr.pristine"):
        with open(stamp) as f:
            if json.load(f) == spec:
                return path
    for p in (path, path + "-dwr", path + ".pristine", path + ".dwr.pristine", stamp):
        if os.path.exists(p):
            os.unlink(p)
    clear_sidecars(path, keep_dwr=False)
    r = worker(["gen", so, json.dumps(dict(spec, path=path))], {"METADWR_ENABLE": "1"})
    if not r.get("ok"):
        raise LabError("%s: generation failed: %s" % (name, r.get("error")))
    shutil.copyfile(path, path + ".pristine")
    shutil.copyfile(path + "-dwr", path + ".dwr.pristine")
    with open(stamp, "w") as f:
        json.dump(spec, f)
    return path


def restore_case(path, image):
    clear_sidecars(path)
    write_in_place(path, image)
    copy_in_place(path + ".dwr.pristine", path + "-dwr")


def run_lab(a):
    out_dir = os.path.abspath(a.out)
    work = os.path.join(out_dir, "work")
    os.makedirs(work, exist_ok=True)
    so = os.path.abspath(a.so)
    sample = a.mode == "sample"
    configs = CONFIGS_SAMPLE if sample else CONFIGS_FULL
    rows = a.rows or (10000 if sample else 29000)
    ntab = a.tables or (20 if sample else 40)
    t_start = time.monotonic()

    probe = worker(["probe", so])
    salvage = bool(probe.get("ok") and probe.get("salvage"))
    rec_version = subprocess.run([a.recover_shell, "-version"], capture_output=True,
                                 text=True).stdout.split()[0]
    stock_version = subprocess.run([a.stock_shell, "-version"], capture_output=True,
                                   text=True).stdout.split()[0]
    origin_file = os.path.join(os.path.dirname(os.path.abspath(a.recover_shell)), "shell-origin.txt")
    origin = open(origin_file).read().strip() if os.path.exists(origin_file) else "shell.c of unknown origin"
    tools = (["metadwr"] if salvage else []) + ["stock", "heal"]
    tool_label = {
        "metadwr": "metadwr meta_salvage",
        "stock": ".recover, stock %s shell" % stock_version,
        "heal": "meta_recover + .recover (%s, SQLite %s)" % (origin.split(" (")[0], rec_version),
    }
    log("salvage-lab: %s run, %d databases x %d damage cases, ~%d rows and %d tables each, seed %s"
        % (a.mode, len(configs), len(LEVELS) * len(KINDS), rows, ntab, a.seed))
    log("salvage-lab: recover shell %s: %s, SQLite %s" % (a.recover_shell, origin, rec_version))
    if not salvage:
        log("salvage-lab: meta_salvage unavailable (%s): the metadwr column is skipped"
            % (probe.get("error") or probe.get("why") or "not registered"))

    results = []
    failures = []
    for ps, journal, av in configs:
        name = "p%d-%s-%s" % (ps, journal, av)
        seed = "%s/%s" % (a.seed, name)
        spec = {"format": LAB_FORMAT, "page_size": ps, "journal": journal, "auto_vacuum": av,
                "rows": rows, "tables": ntab, "seed": seed}
        t0 = time.monotonic()
        path = build_database(work, name, spec, so)
        with open(path + ".pristine", "rb") as f:
            pristine = f.read()
        restore_case(path, pristine)
        ref = reference(path + ".pristine")
        nrows = sum(len(r) for r in ref["rows"].values())
        log("  %s: %d rows in %d tables, %d pages (%d of the schema), built/read in %.1f s"
            % (name, nrows, len(ref["tables"]), ref["npages"], len(ref["schema_pages"]),
               time.monotonic() - t0))
        for pct in LEVELS:
            pages = damage_pages(ref, pct, seed)
            dset = set(pages)
            at_stake = {}
            for tname, w in ref["where"].items():
                at_stake[tname] = {k for k, (pg, ovfl) in w.items()
                                   if pg not in dset and not dset.intersection(ovfl)}
            n_stake = sum(len(s) for s in at_stake.values())
            for kind in KINDS:
                image = damaged_image(pristine, ref, pages, kind, seed + "/" + kind)
                case = {"db": name, "pct": pct, "kind": kind, "rows": nrows,
                        "at_stake": n_stake, "damaged_pages": len(pages), "tools": {}}
                cdir = os.path.join(work, "%s-%s-%d" % (name, kind, pct))
                os.makedirs(cdir, exist_ok=True)
                # metadwr salvage, on the protected file itself
                if salvage:
                    restore_case(path, image)
                    before = file_digest(path)
                    out = os.path.join(cdir, "salvage.db")
                    for p in (out, out + "-journal"):
                        if os.path.exists(p):
                            os.unlink(p)
                    r = worker(["salvage", so, path, out], timeout=a.timeout)
                    s = score(out, ref, at_stake)
                    s["seconds"] = r.get("seconds", 0.0)
                    s["summary"] = r.get("summary") or r.get("error", "")
                    s["note"] = (s["note"] + " " + (r.get("error") or "")).strip()
                    s["untouched"] = file_digest(path) == before
                    case["tools"]["metadwr"] = s
                    if s["wrong"] or s["altered"] or not s["untouched"]:
                        failures.append("%s %s %d%%: wrong %d, altered %d%s" % (
                            name, kind, pct, s["wrong"], s["altered"],
                            "" if s["untouched"] else ", the damaged file was modified"))
                # stock .recover, on a copy (it never needs the -dwr)
                src = os.path.join(cdir, "damaged.db")
                with open(src, "wb") as f:
                    f.write(image)
                out = os.path.join(cdir, "stock.db")
                dt, note = run_recover(a.stock_shell, src, out, a.timeout)
                s = score(out, ref, at_stake)
                s["seconds"] = dt
                s["note"] = (s["note"] + " " + note).strip()
                case["tools"]["stock"] = s
                # heal through metadwr, then .recover of the newest shell
                restore_case(path, image)
                r = worker(["heal", so, path], timeout=a.timeout)
                healed = os.path.join(cdir, "healed.db")
                shutil.copyfile(path, healed)
                for suf in ("-wal",):
                    if os.path.exists(path + suf):
                        shutil.copyfile(path + suf, healed + suf)
                out = os.path.join(cdir, "heal.db")
                dt, note = run_recover(a.recover_shell, healed, out, a.timeout)
                s = score(out, ref, at_stake)
                s["seconds"] = r.get("seconds", 0.0) + dt
                s["heal"] = r.get("result") if r.get("ok") else "refused: %s" % r.get("error", "")
                # Healed: page 1 and every schema page are the original's again
                # (on the read that opened the file, or by the pragma).
                s["healed"] = same_pages(healed, pristine, ref["schema_pages"] + [1], ref["page_size"])
                s["note"] = (s["note"] + " " + note).strip()
                case["tools"]["heal"] = s
                restore_case(path, pristine)
                results.append(case)
                if not a.keep:
                    shutil.rmtree(cdir, ignore_errors=True)
                log("    %-6s %2d%%: %d damaged pages, %d of %d rows at stake | %s" % (
                    kind, pct, len(pages), n_stake, nrows, " | ".join(
                        "%s %s" % (tl, fmt_short(case["tools"][tl])) for tl in tools)))
    elapsed = time.monotonic() - t_start

    report = render(a, results, tools, tool_label, salvage, probe, elapsed, origin, rec_version,
                    configs, rows, ntab)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(report)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"mode": a.mode, "seed": a.seed, "salvage": salvage, "elapsed": elapsed,
                   "cases": results}, f, indent=1, default=str)
    log("")
    log(report)
    log("salvage-lab: report in %s" % os.path.join(out_dir, "report.md"))
    if not salvage:
        log("salvage-lab: metadwr column skipped: meta_salvage unavailable; baselines only")
        return 0
    if failures:
        for f in failures:
            log("salvage-lab: FAIL " + f)
        return 1
    log("salvage-lab: meta_salvage put no row in a wrong table and altered none")
    return 0


def fmt_short(s):
    return "yield %d wrong %d altered %d l&f %d%s %.1f s" % (
        s["yield"], s["wrong"], s["altered"], s["lf"], " schema" if s["schema"] else "", s["seconds"])


def render(a, results, tools, label, salvage, probe, elapsed, origin, rec_version, configs,
           rows, ntab):
    L = []
    L.append("# Salvage yield lab (%s run)" % a.mode)
    L.append("")
    L.append("%d databases (%s), ~%d rows and %d tables each, seed %s; damage: page 1, every "
             "sqlite_schema page and the given share of the other pages, overwritten with random "
             "bytes or zeros. Generated by scripts/salvage-lab.py in %.0f s."
             % (len(configs), ", ".join("%d/%s/av=%s" % c for c in configs), rows, ntab,
                a.seed, elapsed))
    L.append("")
    L.append("*yield*: rows back in their own table with identical values, of the rows whose "
             "cell page and overflow pages were intact (*at stake*); *wrong*: rows in a table "
             "not theirs; *altered*: rows with changed values or that never existed; *l&f*: rows "
             "in lost_and_found; *schema*: output databases whose sqlite_schema equals the "
             "original's (rootpage aside); *time*: mean seconds per database.")
    L.append("")
    if not salvage:
        L.append("**metadwr: meta_salvage unavailable (%s); its rows are skipped.**"
                 % (probe.get("error") or "not registered"))
        L.append("")
    L.append("| damage | rows at stake | tool | yield | wrong | altered | l&f | schema | time | notes |")
    L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for kind in KINDS:
        for pct in LEVELS:
            cs = [c for c in results if c["kind"] == kind and c["pct"] == pct]
            if not cs:
                continue
            stake = sum(c["at_stake"] for c in cs)
            total = sum(c["rows"] for c in cs)
            first = True
            for tl in tools:
                ss = [c["tools"][tl] for c in cs]
                y = sum(s["yield"] for s in ss)
                notes = []
                if tl == "heal":
                    ok = [(c, c["tools"]["heal"]) for c in cs if c["tools"]["heal"].get("healed")]
                    notes.append("healed %d/%d" % (len(ok), len(ss)))
                    st = sum(c["at_stake"] for c, _ in ok)
                    if len(ok) < len(ss) and st:
                        notes.append("%.1f %% where healed" % (100.0 * sum(h["yield"] for _, h in ok) / st))
                if tl == "metadwr":
                    bad = sum(1 for s in ss if not s.get("untouched", True))
                    if bad:
                        notes.append("damaged file modified in %d" % bad)
                    errs = [s["note"] for s in ss if s["note"]]
                    if errs:
                        notes.append("%d without a clean output: %s" % (len(errs), errs[0][:60]))
                if tl == "stock":
                    n = sum(1 for s in ss if s["note"])
                    if n and all(s["recovered"] == 0 for s in ss):
                        msg = next(s["note"] for s in ss if s["note"])
                        notes.append(msg[:60])
                L.append("| %s | %s | %s | %.1f %% | %d | %d | %d | %d/%d | %.2f s | %s |" % (
                    ("%s %d %%" % (kind, pct)) if first else "",
                    ("%d of %d" % (stake, total)) if first else "",
                    label[tl], 100.0 * y / stake if stake else 0.0,
                    sum(s["wrong"] for s in ss), sum(s["altered"] for s in ss),
                    sum(s["lf"] for s in ss), sum(1 for s in ss if s["schema"]), len(ss),
                    sum(s["seconds"] for s in ss) / len(ss), "; ".join(notes)))
                first = False
    L.append("")
    refused = [(c["db"], c["kind"], c["pct"], c["tools"]["heal"]["heal"]) for c in results
               if not c["tools"]["heal"].get("healed")]
    if refused:
        L.append("meta_recover did not restore (then .recover ran on the damaged file):")
        L.append("")
        for db, kind, pct, why in refused:
            why = str(why)
            # The newest generation's reason is the one that matters.
            if "(generation " in why:
                why = "refused: " + why.split("(generation ", 1)[1].split(";")[0].split(")")[0]
                why = "generation " + why[len("refused: "):]
            L.append("- %s, %s %d %%: %s" % (db, kind, pct, why[:160]))
        L.append("")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------
# salvage-big
# ---------------------------------------------------------------------------


def generate_big(spec):
    """Worker: a wide-table database of about spec['bytes'] bytes, through metadwr."""
    path = spec["path"]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=delete")
    conn.execute("PRAGMA cache_size=-65536")
    ntab = spec["tables"]
    for i in range(ntab):
        conn.execute(
            "CREATE TABLE w%d(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, c REAL, d REAL, "
            "e TEXT NOT NULL, f TEXT, g BLOB, h NUMERIC, i INTEGER, j TEXT, k BLOB)" % i)
        conn.execute("CREATE INDEX w%d_a ON w%d(a)" % (i, i))
    # ~700 bytes a row; batches of 20,000 rows per transaction.
    per = 20000
    tab = 0
    while os.path.getsize(path) < spec["bytes"]:
        conn.execute("BEGIN")
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < %d) "
            "INSERT INTO w%d(a, b, c, d, e, f, g, h, i, j, k) SELECT "
            "abs(random()) %% 100000, random(), random() / 7.0, x * 0.25, "
            "hex(randomblob(60)), CASE WHEN x %% 5 THEN hex(randomblob(40)) END, randomblob(120), "
            "CASE x %% 3 WHEN 0 THEN x WHEN 1 THEN x / 3.0 ELSE 'n' || x END, x, "
            "substr(hex(randomblob(100)), 1, abs(random()) %% 200), "
            "CASE WHEN x %% 97 = 0 THEN randomblob(6000) ELSE randomblob(80) END FROM n"
            % (per, tab % ntab))
        conn.execute("COMMIT")
        tab += 1
    state = conn.execute("PRAGMA meta_double_write").fetchone()[0]
    conn.close()
    return {"dwr": state}


def run_big(a):
    out_dir = os.path.abspath(a.out)
    work = os.path.join(out_dir, "big")
    os.makedirs(work, exist_ok=True)
    so = os.path.abspath(a.so)
    path = os.path.join(work, "big.db")
    spec = {"format": LAB_FORMAT, "bytes": a.big_bytes, "tables": 4}
    stamp = path + ".spec.json"
    t0 = time.monotonic()
    fresh = True
    if os.path.exists(stamp) and os.path.exists(path + ".pristine"):
        with open(stamp) as f:
            fresh = json.load(f) != spec
    if fresh:
        for p in (path, path + "-dwr", path + ".pristine", path + ".dwr.pristine", stamp):
            if os.path.exists(p):
                os.unlink(p)
        clear_sidecars(path, keep_dwr=False)
        log("salvage-big: generating %s (~%d MB) through metadwr" % (path, a.big_bytes >> 20))
        r = worker(["genbig", so, json.dumps(dict(spec, path=path))], {"METADWR_ENABLE": "1"})
        if not r.get("ok"):
            raise LabError("generation failed: %s" % r.get("error"))
        shutil.copyfile(path, path + ".pristine")
        shutil.copyfile(path + "-dwr", path + ".dwr.pristine")
        with open(stamp, "w") as f:
            json.dump(spec, f)
        log("salvage-big: generated in %.0f s" % (time.monotonic() - t0))
    with open(path + ".pristine", "rb") as f:
        pristine = f.read()
    img = DbImage(pristine)
    _, spages = img.schema()
    ref = {"schema_pages": sorted(spages), "npages": img.npages, "page_size": img.page_size}
    conn = plain_connect(path + ".pristine", immutable=True)
    counts = {r[0][1].decode(): conn.execute("SELECT count(*) FROM %s" % qi(r[0][1].decode())).fetchone()[0]
              for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    conn.close()
    pages = damage_pages(ref, 1, "%s/big" % a.seed)
    image = damaged_image(pristine, ref, pages, "random", "%s/big" % a.seed)
    del pristine
    total = sum(counts.values())
    head = ("%d MB, %d pages of 4096 bytes, rollback journal, %d rows in %d tables; damaged %d "
            "pages (page 1, %d schema pages, 1 %% of the rest, random bytes, seed %s); "
            "shell %s" % (len(image) >> 20, img.npages, total, len(counts), len(pages),
                          len(spages), a.seed, a.recover_shell))
    log("salvage-big: %s: %s" % (path, head))
    del img

    def rows_in(out):
        if not os.path.exists(out):
            return 0, 0
        c = plain_connect(out)
        names = [r[0][1].decode() for r in c.execute("SELECT name FROM sqlite_schema WHERE type='table'")]
        n = sum(c.execute("SELECT count(*) FROM %s" % qi(x)).fetchone()[0] for x in names if x in counts)
        lf = sum(c.execute("SELECT count(*) FROM %s" % qi(x)).fetchone()[0] for x in names
                 if x.startswith("lost_and_found"))
        c.close()
        return n, lf

    times = {}
    lines = [head]
    probe = worker(["probe", so])
    if probe.get("ok") and probe.get("salvage"):
        restore_case(path, image)
        out = os.path.join(work, "salvage.db")
        if os.path.exists(out):
            os.unlink(out)
        r = worker(["salvage", so, path, out], timeout=a.timeout)
        times["salvage"] = r.get("seconds", float("nan"))
        salvage_ok = bool(r.get("ok")) and os.path.exists(out)
        n, lf = rows_in(out)
        lines.append("meta_salvage: %.1f s, %d rows in their tables, %d in lost_and_found (%s)"
                     % (times["salvage"], n, lf, r.get("summary") or r.get("error")))
        os.unlink(out) if os.path.exists(out) else None
    else:
        lines.append("meta_salvage: unavailable (%s): skipped"
                     % (probe.get("error") or "not registered"))
    # .recover of the newest shell on the same damaged file
    src = os.path.join(work, "damaged.db")
    with open(src, "wb") as f:
        f.write(image)
    out = os.path.join(work, "recover.db")
    dt, note = run_recover(a.recover_shell, src, out, a.timeout)
    times["recover"] = dt
    n, lf = rows_in(out)
    lines.append(".recover (damaged file): %.1f s, %d rows in their tables, %d in lost_and_found%s"
                 % (dt, n, lf, (" (%s)" % note) if note else ""))
    os.unlink(src)
    os.unlink(out) if os.path.exists(out) else None
    # heal, then .recover
    restore_case(path, image)
    r = worker(["heal", so, path], timeout=a.timeout)
    with open(path + ".pristine", "rb") as f:
        pristine = f.read()
    healed = same_pages(path, pristine, ref["schema_pages"] + [1], ref["page_size"])
    what = "meta_recover + .recover"
    if not healed:
        # Refused (a witness page or the freelist was hit): time .recover on
        # the same damage with page 1 and the schema put back by the lab, so
        # that the ratio still compares two salvages of the same file.
        lines.append("meta_recover: did not restore (%s)" % (r.get("result") or r.get("error")))
        buf = bytearray(image)
        ps = ref["page_size"]
        for p in ref["schema_pages"] + [1]:
            buf[(p - 1) * ps:p * ps] = pristine[(p - 1) * ps:p * ps]
        restore_case(path, bytes(buf))
        del buf
        what = ".recover with page 1 and the schema put back by the lab"
    del pristine
    dt, note = run_recover(a.recover_shell, path, out, a.timeout)
    times["heal+recover"] = (r.get("seconds", 0.0) if healed else 0.0) + dt
    n, lf = rows_in(out)
    lines.append("%s: %.1f s%s, %d rows in their tables, %d in lost_and_found"
                 % (what, times["heal+recover"],
                    (" (heal %.1f s)" % r.get("seconds", 0.0)) if healed else "", n, lf))
    os.unlink(out) if os.path.exists(out) else None
    restore_case(path, open(path + ".pristine", "rb").read())
    lines.append("of %d rows" % total)
    if "salvage" in times:
        # Against the .recover that did the work (the one on the damaged
        # file stops at once when page 1 is gone); and only for a salvage
        # that answered.
        if not salvage_ok:
            lines.append("ratio: n/a (meta_salvage failed)")
        elif times["heal+recover"] > 0:
            lines.append("ratio meta_salvage / (%s): %.2f" % (
                what, times["salvage"] / times["heal+recover"]))
    else:
        lines.append("ratio: n/a (meta_salvage unavailable)")
    for l in lines[1:]:
        log("salvage-big: " + l)
    with open(os.path.join(out_dir, "big-report.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


# ---------------------------------------------------------------------------
# workers: everything that loads metadwr
# ---------------------------------------------------------------------------


def worker_main(argv):
    what, so = argv[0], argv[1]
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(so)
    res = {"ok": True}
    try:
        if what == "probe":
            try:
                boot.execute("SELECT meta_salvage(NULL)").fetchall()
                res["salvage"] = True
            except sqlite3.OperationalError as e:
                if "no such function" in str(e):
                    res["salvage"] = False
                    res["error"] = str(e)
                else:
                    res["salvage"] = True
        elif what == "gen":
            res.update(generate(json.loads(argv[2])))
        elif what == "genbig":
            res.update(generate_big(json.loads(argv[2])))
        elif what == "heal":
            t0 = time.monotonic()
            conn = sqlite3.connect(argv[2], isolation_level=None)
            try:
                row = conn.execute("PRAGMA meta_recover").fetchone()
                res["result"] = "no answer (is metadwr loaded?)" if row is None else str(row[0])
            except sqlite3.Error as e:
                res = {"ok": False, "error": str(e)}
            conn.close()
            res["seconds"] = time.monotonic() - t0
        elif what == "salvage":
            db, out = argv[2], argv[3]
            t0 = time.monotonic()
            # Read-only: a read-write connection through metadwr heals page 1
            # and the schema as soon as it opens the file (when the copy is
            # proven), which is the heal's job, not the salvage's; the lab
            # checks that the salvage leaves the damaged file as it found it.
            conn = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(db), uri=True,
                                   isolation_level=None)
            try:
                row = conn.execute("PRAGMA meta_salvage='%s'" % out.replace("'", "''")).fetchone()
                if row is None and not os.path.exists(out):
                    row = conn.execute("SELECT meta_salvage(?)", (out,)).fetchone()
                res["summary"] = None if row is None else str(row[0])
            except sqlite3.Error as e:
                res = {"ok": False, "error": str(e)}
            conn.close()
            res["seconds"] = time.monotonic() - t0
        else:
            raise SystemExit("unknown worker %s" % what)
    except LabError as e:
        res = {"ok": False, "error": str(e)}
    print(json.dumps(res, default=str))
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        return worker_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--so", required=True, help="libmetadwr.so")
    ap.add_argument("--recover-shell", required=True, help="shell with a working .recover")
    ap.add_argument("--stock-shell", default="/usr/bin/sqlite3")
    ap.add_argument("--mode", choices=("full", "sample", "big"), default="full")
    ap.add_argument("--out", default=None, help="output directory (default build/salvage-lab[/sample])")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--rows", type=int, default=0, help="rows per database (default 29000, sample 10000)")
    ap.add_argument("--tables", type=int, default=0, help="tables per database (20-60)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per salvage or .recover")
    ap.add_argument("--big-bytes", type=int, default=1 << 30)
    ap.add_argument("--keep", action="store_true", help="keep every case's files")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if a.out is None:
        a.out = os.path.join(root, "build", "salvage-lab") + ("/sample" if a.mode == "sample" else "")
    if a.tables and not 20 <= a.tables <= 60:
        ap.error("--tables: 20 to 60")
    try:
        return run_big(a) if a.mode == "big" else run_lab(a)
    except LabError as e:
        print("salvage-lab: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
