/*
 * metadwr.h: the C interface of metadwr.
 *
 * metadwr is a SQLite extension that keeps a double-write copy of the pages
 * every database depends on (page 1 and the pages of the sqlite_schema
 * B-tree) in a sidecar file "<db>-dwr", and restores them when they are
 * damaged. It works as a VFS named "metadwr" layered over SQLite's "unix"
 * VFS, which it registers as the default VFS.
 *
 * Using it from C
 * ---------------
 * Register the entry point as an automatic extension before the first
 * sqlite3_open*() of the process; every connection opened afterwards goes
 * through metadwr and has its SQL functions:
 *
 *     #include <sqlite3.h>
 *     #include <metadwr.h>
 *
 *     sqlite3_auto_extension((void (*)(void))sqlite3_metadwr_init);
 *     sqlite3_open("app.db", &db);
 *     sqlite3_exec(db, "PRAGMA meta_double_write=enabled", 0, 0, 0);
 *
 * and link with the extension and SQLite, telling the loader where
 * libmetadwr.so is:
 *
 *     cc app.c -I/path/to/include -L/path/to/lib -lmetadwr -lsqlite3 \
 *        -Wl,-rpath,/path/to/lib
 *
 * The same library is a loadable extension: ".load ./libmetadwr" in the
 * sqlite3 shell, load_extension("./libmetadwr") in SQL, or
 * sqlite3_load_extension() from C. Loading it once registers it for every
 * later connection of the process.
 *
 * SQL surface (on each database of a connection; "main" or an attached
 * schema name, as in PRAGMA b.meta_double_write)
 * ----------------------------------------------------------------------
 *   PRAGMA meta_double_write;                 enabled | disabled |
 *                                             disabled (<reason>) |
 *                                             enabled (recovered: <report>)
 *   PRAGMA meta_double_write=enabled;         creates <db>-dwr; on a damaged
 *                                             database whose copy provably
 *                                             belongs to it, restores it and
 *                                             answers "recovered: ..."
 *   PRAGMA meta_double_write=disabled;        removes <db>-dwr
 *   PRAGMA meta_double_write_sync[=off|periodic|full];
 *   PRAGMA meta_double_write_stats;           generations=N pages=N bytes=N
 *                                             fsyncs=N
 *   SELECT meta_recover();                    restores damaged pages of main
 *   SELECT meta_recover('schema');            ... of another database:
 *       "restored N page(s) (list) from generation G", or
 *       "nothing to restore: the database matches generation G";
 *       errors start with "meta_recover: ". Damaged pages are appended to
 *       <db>-dwr-quarantine before anything is overwritten.
 *
 * Protection persists: a database whose <db>-dwr exists is protected
 * whenever it is opened through metadwr, without the pragma.
 */
#ifndef METADWR_H
#define METADWR_H

/*
 * sqlite3.h declares sqlite3 and the opaque sqlite3_api_routines. This
 * header does not include sqlite3ext.h, whose macros turn every sqlite3_*
 * call into a call through an API table; an extension that includes
 * sqlite3ext.h itself (which includes sqlite3.h) can still include this
 * header, before or after it.
 */
#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Name of the VFS metadwr registers (and makes the default). Through
 * SQLITE_FCNTL_VFSNAME a database opened through it reports
 * "metadwr/unix". */
#define METADWR_VFS_NAME "metadwr"

/*
 * Entry point of the extension.
 *
 * Registers the "metadwr" VFS as the default VFS (once per process), the
 * SQL function meta_recover() on db, and itself as an automatic extension
 * so that every later connection has it too. When db's main database was
 * opened before the extension, through plain "unix", and is idle in a
 * rollback-journal mode, it is re-opened through metadwr in place.
 *
 * Normally not called directly: pass it to sqlite3_auto_extension() (C
 * programs), or let sqlite3_load_extension() find it by name (the loader
 * derives "sqlite3_metadwr_init" from "libmetadwr").
 *
 *   db     the connection being initialised
 *   pzErr  on failure, receives an error message from sqlite3_malloc()
 *   pApi   SQLite's API routines
 *
 * Returns SQLITE_OK on success, or an error code with *pzErr set. The
 * library pins itself in memory on first use (the VFS lives in it), so it
 * stays loaded even when the connection that loaded it closes.
 */
int sqlite3_metadwr_init(sqlite3 *db, char **pzErr,
                         const sqlite3_api_routines *pApi);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* METADWR_H */
