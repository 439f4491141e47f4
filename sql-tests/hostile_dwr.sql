-- Hostile -dwr files, in the stock shell: a directory, a symlink to a valid
-- copy elsewhere (refused, not followed), zero length, junk bytes, headers
-- only (truncated), another database's copy. For each, with page 1
-- destroyed, the usual error and a byte-identical file (no quarantine);
-- with the damage undone, the user's transactions succeed. The status is
-- shown up to its first word of detail.
.load ./libmetadwr
.output status.sql
SELECT '.output status.txt';
SELECT 'PRAGMA meta_double_write;';
SELECT '.output stdout';
SELECT '.shell sed -E ''s/^(enabled \([^:]*: |disabled \().*/\1.../'' status.txt';
.output build.sql
SELECT '.shell rm -rf h.db h.db-dwr h.db-dwr-quarantine elsewhere';
SELECT '.output /dev/null';
SELECT '.open h.db';
SELECT 'PRAGMA meta_double_write=enabled;';
SELECT 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);';
SELECT 'INSERT INTO t(v) VALUES (''one''), (''two'');';
SELECT 'CREATE TABLE s(x);';
SELECT '.output stdout';
SELECT '.open other.db';
SELECT '.shell cp h.db saved.db';
SELECT '.shell cp h.db-dwr saved-dwr';
.output check.sql
SELECT '.print -- page 1 destroyed';
SELECT '.shell dd if=/dev/zero of=h.db bs=4096 count=1 conv=notrunc status=none';
SELECT '.shell md5sum h.db > damaged.md5';
SELECT '.open h.db';
SELECT 'SELECT count(*) FROM t;';
SELECT '.read status.sql';
SELECT '.open other.db';
SELECT '.shell md5sum --quiet -c damaged.md5 && echo "h.db unchanged"';
SELECT '.shell test -e h.db-dwr-quarantine && echo "a quarantine file was written" || echo "no quarantine file"';
SELECT '.print -- damage undone: user transactions';
SELECT '.shell dd if=saved.db of=h.db bs=4096 count=1 conv=notrunc status=none';
SELECT '.open h.db';
SELECT 'CREATE TABLE u(id INTEGER PRIMARY KEY, w TEXT);';
SELECT 'INSERT INTO u(w) VALUES (''three''), (''four'');';
SELECT 'BEGIN; INSERT INTO t(v) VALUES (''five''); CREATE INDEX u_w ON u(w); COMMIT;';
SELECT 'SELECT group_concat(v) FROM t; SELECT group_concat(w) FROM u;';
SELECT '.read status.sql';
SELECT '.open other.db';
SELECT '.shell "$SQLITE3" h.db "PRAGMA integrity_check; SELECT count(*) FROM u" 2>&1';
.output stdout
.print == a directory in place of h.db-dwr
.read build.sql
.shell rm h.db-dwr && mkdir h.db-dwr
.read check.sql
.shell test -d h.db-dwr && echo "still a directory"
.print == a symlink in place of h.db-dwr, to the database's own copy moved elsewhere
.read build.sql
.shell mkdir elsewhere && mv h.db-dwr elsewhere/real-dwr && ln -s elsewhere/real-dwr h.db-dwr
.read check.sql
.shell test -L h.db-dwr && cmp elsewhere/real-dwr saved-dwr && echo "still a symlink, its target untouched"
.print == a zero-length h.db-dwr
.read build.sql
.shell : > h.db-dwr
.read check.sql
.print == junk bytes, same length
.read build.sql
.shell yes hostile | head -c $(wc -c < saved-dwr) > h.db-dwr
.read check.sql
.print == truncated to its two header slots
.read build.sql
.shell truncate -s 1024 h.db-dwr
.read check.sql
.print == the copy of another database with the same schema
.read build.sql
.shell mv h.db other-h.db && mv h.db-dwr other-h.db-dwr
.read build.sql
.shell cp other-h.db-dwr h.db-dwr
.read check.sql
