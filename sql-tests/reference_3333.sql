-- The reference's own test: the first 32 bytes of a protected database
-- (1 table, 10 tables) overwritten with "3333333333sss" and 3s. Reopened
-- through metadwr, it opens and every row reads back, with no pragma.
-- Then the same with the -dwr's header area (its first 1024 bytes, both
-- header slots) overwritten too: file is not a database, and nothing on
-- disk changes (no quarantine file either).
.load ./libmetadwr
.output tables.sql
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
SELECT 'CREATE TABLE t' || i || '(id INTEGER PRIMARY KEY, name TEXT, n INTEGER);'
    || ' INSERT INTO t' || i || '(name, n) VALUES (''a' || i || ''', ' || i || '), (''b' || i || ''', ' || (i * 10) || ');'
  FROM n;
.output rows.sql
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
SELECT 'SELECT ''t' || i || ''', * FROM t' || i || ';' FROM n;
.output stdout
.shell printf 3333333333sss3333333333333333333 > pattern32
.shell for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32; do cat pattern32; done > pattern1024
.shell wc -c pattern32 pattern1024
.print -- four protected databases: one table, ten tables, and the same again
.open one.db
PRAGMA meta_double_write=enabled;
CREATE TABLE t1(id INTEGER PRIMARY KEY, name TEXT, n INTEGER);
INSERT INTO t1(name, n) VALUES ('a1', 1), ('b1', 10);
.open one2.db
PRAGMA meta_double_write=enabled;
CREATE TABLE t1(id INTEGER PRIMARY KEY, name TEXT, n INTEGER);
INSERT INTO t1(name, n) VALUES ('a1', 1), ('b1', 10);
.open ten.db
PRAGMA meta_double_write=enabled;
.read tables.sql
.open ten2.db
PRAGMA meta_double_write=enabled;
.read tables.sql
.open other.db
.print -- 1. the first 32 bytes overwritten
.shell dd if=pattern32 of=one.db conv=notrunc status=none
.shell dd if=pattern32 of=ten.db conv=notrunc status=none
.shell od -A d -c -N 32 one.db
.shell "$SQLITE3" one.db 'SELECT * FROM t1' 2>&1 || echo "(stock sqlite3 exited with status $?)"
.shell "$SQLITE3" ten.db 'SELECT * FROM t1' 2>&1 || echo "(stock sqlite3 exited with status $?)"
.print -- through metadwr: one table
.open one.db
SELECT * FROM t1;
PRAGMA integrity_check;
.print -- through metadwr: ten tables
.open ten.db
.read rows.sql
PRAGMA integrity_check;
.open other.db
.print -- repaired on disk
.shell "$SQLITE3" one.db 'SELECT count(*) FROM t1; PRAGMA integrity_check' 2>&1
.shell "$SQLITE3" ten.db 'SELECT count(*) FROM t10; PRAGMA integrity_check' 2>&1
.print -- 2. the first 32 bytes and the -dwr header area overwritten
.shell for db in one2.db ten2.db; do dd if=pattern32 of=$db conv=notrunc status=none; dd if=pattern1024 of=$db-dwr conv=notrunc status=none; done
.shell md5sum one2.db one2.db-dwr ten2.db ten2.db-dwr > before.md5
.open one2.db
SELECT * FROM t1;
.open ten2.db
SELECT * FROM t10;
.open other.db
.shell md5sum --quiet -c before.md5 && echo "unchanged: one2.db one2.db-dwr ten2.db ten2.db-dwr"
.shell ls
