-- =enabled on a database that is already damaged and was never protected:
-- there is nothing to restore from, so it fails, and must leave no
-- protection (and no empty -dwr) behind.
.load ./libmetadwr
.open app.db
CREATE TABLE t(a); INSERT INTO t VALUES (1), (2);
.open other.db
.shell dd if=/dev/zero of=app.db bs=100 count=1 conv=notrunc status=none
.open app.db
PRAGMA meta_double_write=enabled;
PRAGMA meta_double_write;
.shell ls
