-- A database with 100 tables: its sqlite_schema B-tree is an interior page
-- (page 1) over several leaves. Zero one leaf: meta_recover() before any
-- read puts it back; see heal_on_open for the same damage met by a query.
.load ./libmetadwr
.open app.db
PRAGMA meta_double_write=enabled;
.output gen.sql
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
SELECT 'CREATE TABLE t' || i || '(id INTEGER PRIMARY KEY, name TEXT NOT NULL, value REAL, note TEXT);'
    || ' INSERT INTO t' || i || '(name, value) VALUES (''row of t' || i || ''', ' || i || '.5);'
  FROM n;
.output stdout
BEGIN;
.read gen.sql
COMMIT;
.print -- pages of sqlite_schema (dbstat)
SELECT pageno, pagetype, ncell FROM dbstat WHERE name = 'sqlite_schema' ORDER BY pageno;
.print -- zero the second leaf
.output damage.sh
SELECT 'dd if=/dev/zero of=app.db bs=4096 seek=' || (pageno - 1) || ' count=1 conv=notrunc status=none'
  FROM dbstat WHERE name = 'sqlite_schema' AND pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET 1;
.output stdout
.open other.db
.shell sh damage.sh
.shell "$SQLITE3" app.db 'SELECT count(*) FROM t50' 2>&1 || echo "(stock sqlite3 exited with status $?)"
.open app.db
PRAGMA meta_double_write;
SELECT meta_recover();
SELECT count(*) FROM t50;
SELECT count(*) FROM sqlite_schema WHERE type = 'table';
SELECT count(*), sum(value) FROM (SELECT value FROM t1 UNION ALL SELECT value FROM t50 UNION ALL SELECT value FROM t100);
PRAGMA integrity_check;
PRAGMA meta_double_write;
.print -- every one of the 100 tables answers: the sum of their row counts
.output count.sql
SELECT 'SELECT sum(n) FROM (' || group_concat('SELECT count(*) AS n FROM ' || name, ' UNION ALL ') || ');'
  FROM sqlite_schema WHERE type = 'table';
.output stdout
.read count.sql
.print -- seen by stock SQLite
.shell "$SQLITE3" app.db 'SELECT count(*) FROM t50; PRAGMA integrity_check' 2>&1
