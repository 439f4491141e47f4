-- PRAGMA meta_recover: the pragma form of meta_recover(). SQLite gives
-- pragmas to the VFS before it reads the schema, so it works on a
-- connection opened after the damage on every SQLite version (3.46 and
-- later cannot prepare a SELECT while the schema is unreadable).
.load ./libmetadwr
.open app.db
PRAGMA meta_double_write=enabled;
CREATE TABLE t(a, b);
INSERT INTO t VALUES (1, 'one'), (2, 'two');
-- Rows with some content: with page 1 destroyed, the copy proves it
-- belongs to this file's data by the checksum of a data page (a page of
-- two tiny rows looks the same in any database).
CREATE TABLE notes(body);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
INSERT INTO notes SELECT 'note ' || i || ': the schema is what every row depends on' FROM n;
PRAGMA meta_recover;
.open other.db
.print -- damage the schema root on page 1, past the 100-byte header SQLite reads at open
.shell dd if=/dev/urandom of=app.db bs=1 seek=100 count=200 conv=notrunc status=none
.open app.db
PRAGMA meta_recover;
SELECT * FROM t;
PRAGMA integrity_check;
PRAGMA meta_recover=now;
PRAGMA nosuch.meta_recover;
