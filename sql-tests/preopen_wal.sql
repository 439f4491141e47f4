-- The database was already open, in WAL mode, when the extension loaded.
-- It cannot be re-opened in place, so it is not protected: the metadwr
-- pragmas fail with a message saying to reopen it (rather than being
-- ignored, as unknown pragmas are), and after .open it works.
.open pre.db
PRAGMA journal_mode=WAL;
CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
.load ./libmetadwr
.vfsname
PRAGMA meta_double_write;
PRAGMA meta_double_write=enabled;
SELECT meta_recover();
.shell ls pre.db*
.print -- re-opened through metadwr it is protected
.open pre.db
.vfsname
PRAGMA meta_double_write=enabled;
INSERT INTO notes(body) VALUES ('x');
.shell ls pre.db*
