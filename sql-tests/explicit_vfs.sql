-- A connection that names another VFS explicitly keeps it: after .load,
-- metadwr is the default, but `vfs=unix` must still mean unix.
.load ./libmetadwr
.open app.db
.vfsname
.open file:plain.db?vfs=unix
.vfsname
CREATE TABLE t(x);
PRAGMA meta_double_write;
.shell ls
