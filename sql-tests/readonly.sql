-- A read-only connection never writes: with a -dwr it serves the copy in
-- place of damaged pages; =enabled and meta_recover() refuse.
.load ./libmetadwr
.open app.db
PRAGMA meta_double_write=enabled;
CREATE TABLE t(a); INSERT INTO t VALUES ('first row, with enough text to tell this database from another'), ('second row');
.shell ls
.open --readonly app.db
.vfsname
PRAGMA meta_double_write;
PRAGMA meta_double_write=enabled;
SELECT meta_recover();
SELECT count(*) FROM t;
.print -- a never-protected database, read-only
.open plain.db
CREATE TABLE p(x);
.open --readonly plain.db
PRAGMA meta_double_write;
PRAGMA meta_double_write=enabled;
.shell ls
.print -- damaged and opened read-only: no restore until opened read-write
.open other.db
.shell dd if=/dev/zero of=app.db bs=4096 count=1 conv=notrunc status=none
.open --readonly app.db
SELECT meta_recover();
SELECT count(*) FROM t;
.open app.db
PRAGMA meta_double_write;
SELECT meta_recover();
SELECT count(*) FROM t;
