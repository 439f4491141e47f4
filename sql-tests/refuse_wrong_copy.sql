-- A copy is only restored when it provably belongs to the file: a -dwr
-- taken from another database, or one older than the file, is refused and
-- the file is left as it is.
.load ./libmetadwr
.print -- a.db and b.db: same schema, same rows, both protected
.open a.db
PRAGMA meta_double_write=enabled;
CREATE TABLE t(a); INSERT INTO t VALUES (1), (2);
.open b.db
PRAGMA meta_double_write=enabled;
CREATE TABLE t(a); INSERT INTO t VALUES (1), (2);
.open other.db
.print -- b's copy put beside a.db, then a.db page 1 zeroed
.shell cp b.db-dwr a.db-dwr
.shell dd if=/dev/zero of=a.db bs=4096 count=1 conv=notrunc status=none
.open a.db
SELECT meta_recover();
PRAGMA meta_double_write=enabled;
.shell ls a.db*
.shell od -A n -t x1 -N 16 a.db
.print -- s.db: a copy saved, then two more tables, then the old copy put back
.open s.db
PRAGMA meta_double_write=enabled;
CREATE TABLE t(a); INSERT INTO t VALUES (1), (2);
.shell cp s.db-dwr saved-dwr
CREATE TABLE u(b); INSERT INTO u VALUES (3);
CREATE TABLE v(c);
.open other.db
.shell cp saved-dwr s.db-dwr
.shell dd if=/dev/zero of=s.db bs=4096 count=1 conv=notrunc status=none
.open s.db
SELECT meta_recover();
.shell ls s.db*
