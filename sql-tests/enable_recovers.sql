-- PRAGMA meta_double_write=enabled on a damaged, protected database
-- restores it and says so. Only the schema leaves are damaged: page 1 would
-- already be healed by SQLite's first read of the header, at open.
.load ./libmetadwr
.open app.db
PRAGMA meta_double_write=enabled;
.output gen.sql
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60)
SELECT 'CREATE TABLE t' || i || '(id INTEGER PRIMARY KEY, payload TEXT DEFAULT ''' || hex(zeroblob(10)) || ''');'
    || ' INSERT INTO t' || i || ' DEFAULT VALUES;'
  FROM n;
.output stdout
.read gen.sql
.output damage.sh
SELECT 'printf ''garbage!%.0s'' $(seq 512) | dd of=app.db bs=4096 seek=' || (pageno - 1) || ' count=1 conv=notrunc status=none'
  FROM dbstat WHERE name = 'sqlite_schema' AND pageno > 1 ORDER BY pageno;
.output stdout
.print -- overwrite every schema leaf with text
.open other.db
.shell sh damage.sh
.open app.db
PRAGMA meta_double_write=enabled;
PRAGMA meta_double_write;
SELECT count(*) FROM t1;
SELECT count(*) FROM sqlite_schema;
SELECT sum(id) FROM (SELECT id FROM t1 UNION ALL SELECT id FROM t30 UNION ALL SELECT id FROM t60);
PRAGMA integrity_check;
.print -- the three damaged pages are in the quarantine file
.shell wc -c < app.db-dwr-quarantine
.print -- enabling again: nothing left to do
PRAGMA meta_double_write=enabled;
