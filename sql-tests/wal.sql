-- WAL mode: the copy is refreshed when a checkpoint writes page 1 and the
-- schema pages into the database file; page 1 zeroed after a clean close
-- is restored, and the database stays in WAL mode.
.load ./libmetadwr
.open app.db
PRAGMA journal_mode=WAL;
PRAGMA meta_double_write=enabled;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
CREATE INDEX t_v ON t(v);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO t(v) SELECT 'value ' || i FROM n;
PRAGMA wal_checkpoint(TRUNCATE);
SELECT meta_recover();
.open other.db
.shell ls
.print -- zero page 1 of the main file
.shell dd if=/dev/zero of=app.db bs=4096 count=1 conv=notrunc status=none
.shell "$SQLITE3" app.db 'SELECT count(*) FROM t' 2>&1 || echo "(stock sqlite3 exited with status $?)"
.open app.db
SELECT count(*) FROM t;
SELECT meta_recover();
SELECT count(*), min(v), max(v) FROM t;
PRAGMA integrity_check;
PRAGMA journal_mode;
PRAGMA meta_double_write;
.print -- still protected and writable
INSERT INTO t(v) VALUES ('after recovery');
CREATE TABLE t2(x);
PRAGMA wal_checkpoint(TRUNCATE);
SELECT meta_recover();
.open other.db
.shell "$SQLITE3" app.db 'SELECT count(*) FROM t; PRAGMA integrity_check' 2>&1
