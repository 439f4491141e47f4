/*
 * protect.c: metadwr from a C program.
 *
 * Registers metadwr as an automatic extension, protects a database, damages
 * it the way a bad write would (page 1 overwritten with zeros), shows plain
 * SQLite failing on it, and then simply queries it through metadwr: the
 * damaged page is served from the copy and the file repaired on disk.
 * Last, it writes a salvage of the database with meta_salvage().
 * Exits 0 only if every step did what it should.
 *
 * Build (see scripts/run-c-example.sh):
 *   cc -Wall -Wextra -Werror -I include examples/c/protect.c \
 *      -L . -lmetadwr -lsqlite3 -Wl,-rpath,$PWD -o protect
 * Run in a scratch directory:
 *   ./protect [DATABASE]        (default: protect-example.db)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#include <metadwr.h>

#define N_TABLES 5
#define N_ROWS 200

static const char *db_path = "protect-example.db";

/* Prints a message and exits with status 1. */
static void die(const char *what, sqlite3 *db)
{
    fprintf(stderr, "protect: FAILED: %s%s%s\n", what, db ? ": " : "",
            db ? sqlite3_errmsg(db) : "");
    exit(1);
}

/* Runs SQL that returns no rows. */
static void exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "protect: FAILED: %s\n  in: %s\n", err ? err : "?", sql);
        sqlite3_free(err);
        exit(1);
    }
}

/*
 * Runs a statement that returns one text value. Returns it in a buffer from
 * sqlite3_malloc (the caller frees it with sqlite3_free), or NULL when the
 * statement fails; then *rc holds the error code.
 */
static char *query_text(sqlite3 *db, const char *sql, int *rc)
{
    sqlite3_stmt *stmt = NULL;
    char *result = NULL;
    *rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (*rc == SQLITE_OK) {
        *rc = sqlite3_step(stmt);
        if (*rc == SQLITE_ROW) {
            const unsigned char *text = sqlite3_column_text(stmt, 0);
            result = sqlite3_mprintf("%s", text ? (const char *)text : "");
            *rc = SQLITE_OK;
        } else if (*rc == SQLITE_DONE) {
            result = sqlite3_mprintf("%s", "");
            *rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(stmt);
    return result;
}

/* Like query_text, but any error is fatal. */
static char *must_query_text(sqlite3 *db, const char *sql)
{
    int rc;
    char *text = query_text(db, sql, &rc);
    if (!text) {
        fprintf(stderr, "protect: FAILED: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
        exit(1);
    }
    return text;
}

static sqlite3 *open_db(void)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK)
        die("cannot open the database", db);
    /* A failing automatic extension does not fail the open; it leaves its
     * error on the connection ("automatic extension loading failed"). */
    if (sqlite3_extended_errcode(db) != SQLITE_OK)
        die("the metadwr automatic extension failed", db);
    return db;
}

/* The number of tables, and the total of their rows. */
static void count_rows(sqlite3 *db, long *tables, long *rows)
{
    char *text = must_query_text(
        db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'");
    *tables = atol(text);
    sqlite3_free(text);
    *rows = 0;
    for (int t = 1; t <= N_TABLES; t++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM t%d", t);
        text = must_query_text(db, sql);
        *rows += atol(text);
        sqlite3_free(text);
    }
}

/* Overwrites page 1 of the closed database file with zeros. */
static void zero_page_one(void)
{
    unsigned char header[100];
    FILE *f = fopen(db_path, "r+b");
    if (!f || fread(header, 1, sizeof header, f) != sizeof header)
        die("cannot read the database header", NULL);
    /* Bytes 16-17: the page size, big-endian; 1 means 65536. */
    long page_size = (header[16] << 8) | header[17];
    if (page_size == 1)
        page_size = 65536;
    unsigned char *zeros = calloc(1, (size_t)page_size);
    if (!zeros || fseek(f, 0, SEEK_SET) != 0 ||
        fwrite(zeros, 1, (size_t)page_size, f) != (size_t)page_size ||
        fclose(f) != 0)
        die("cannot overwrite page 1", NULL);
    free(zeros);
    printf("4. zeroed page 1 (%ld bytes) of %s\n", page_size, db_path);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        db_path = argv[1];

    /* Start from nothing: no database, no copy, no quarantine file. */
    const char *suffixes[] = {"", "-journal", "-wal", "-shm", "-dwr", "-dwr-quarantine"};
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        char name[4096];
        snprintf(name, sizeof name, "%s%s", db_path, suffixes[i]);
        remove(name);
    }

    /*
     * 1. Register metadwr for every connection of this process. This must
     * come before the first sqlite3_open*(): the extension makes its VFS the
     * default when it first runs.
     */
    if (sqlite3_auto_extension((void (*)(void))sqlite3_metadwr_init) != SQLITE_OK)
        die("sqlite3_auto_extension failed", NULL);

    sqlite3 *db = open_db();

    /* The database must be opened through metadwr: "metadwr/unix". */
    char *vfs_name = NULL;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_VFSNAME, &vfs_name) != SQLITE_OK ||
        !vfs_name || strncmp(vfs_name, METADWR_VFS_NAME, strlen(METADWR_VFS_NAME)) != 0) {
        fprintf(stderr, "protect: FAILED: VFS is \"%s\", not metadwr\n",
                vfs_name ? vfs_name : "(none)");
        return 1;
    }
    printf("1. opened %s through the VFS \"%s\"\n", db_path, vfs_name);
    sqlite3_free(vfs_name);

    /* 2. Turn protection on: this creates <db>-dwr. */
    char *answer = must_query_text(db, "PRAGMA meta_double_write=enabled");
    if (strcmp(answer, "enabled") != 0)
        die("PRAGMA meta_double_write=enabled did not answer \"enabled\"", NULL);
    printf("2. PRAGMA meta_double_write=enabled -> %s\n", answer);
    sqlite3_free(answer);

    /* 3. Some tables with rows; each commit refreshes the copy. */
    for (int t = 1; t <= N_TABLES; t++) {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "CREATE TABLE t%d(id INTEGER PRIMARY KEY, label TEXT NOT NULL);"
                 "CREATE INDEX t%d_label ON t%d(label);"
                 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                 " WHERE i < %d) INSERT INTO t%d(label) SELECT 'row ' || i FROM n;",
                 t, t, t, N_ROWS, t);
        exec_sql(db, sql);
    }
    long tables, rows;
    count_rows(db, &tables, &rows);
    if (tables != N_TABLES || rows != (long)N_TABLES * N_ROWS)
        die("the tables were not created as expected", NULL);
    answer = must_query_text(db, "PRAGMA meta_double_write_stats");
    printf("3. created %ld tables with %ld rows; %s\n", tables, rows, answer);
    sqlite3_free(answer);
    sqlite3_close(db);

    /* 4. Damage the file while no connection has it open. */
    zero_page_one();

    /* 5. Plain SQLite (the unix VFS, no metadwr) can no longer read it. */
    sqlite3 *plain = NULL;
    int rc = sqlite3_open_v2(db_path, &plain, SQLITE_OPEN_READONLY, "unix");
    char *broken = rc == SQLITE_OK ? query_text(plain, "SELECT count(*) FROM t1", &rc) : NULL;
    if (broken)
        die("the damaged database still answered plain SQLite", NULL);
    printf("5. plain SQLite: SELECT count(*) FROM t1 fails: %s\n", sqlite3_errmsg(plain));
    sqlite3_close(plain);

    /* 6. Through metadwr the same query just works: the damaged page is
     *    served from the copy and the file is repaired. */
    db = open_db();
    answer = must_query_text(db, "SELECT count(*) FROM t1");
    if (atol(answer) != N_ROWS)
        die("the healed database did not answer with every row", NULL);
    printf("6. through metadwr: SELECT count(*) FROM t1 -> %s\n", answer);
    sqlite3_free(answer);
    answer = must_query_text(db, "PRAGMA meta_double_write");
    if (strncmp(answer, "enabled (recovered: ", 20) != 0)
        die("PRAGMA meta_double_write does not report the recovery", NULL);
    printf("   PRAGMA meta_double_write -> %s\n", answer);
    sqlite3_free(answer);
    answer = must_query_text(db, "SELECT meta_recover()");
    if (strncmp(answer, "nothing to restore", 18) != 0)
        die("meta_recover() found damage left after healing", NULL);
    printf("   SELECT meta_recover() -> %s\n", answer);
    sqlite3_free(answer);

    /* 7. Every row is back and the file is consistent. */
    count_rows(db, &tables, &rows);
    if (tables != N_TABLES || rows != (long)N_TABLES * N_ROWS)
        die("rows are missing after recovery", NULL);
    answer = must_query_text(db, "PRAGMA integrity_check");
    if (strcmp(answer, "ok") != 0)
        die("PRAGMA integrity_check is not ok after recovery", NULL);
    printf("7. %ld tables, %ld rows; PRAGMA integrity_check -> %s\n", tables, rows, answer);
    sqlite3_free(answer);

    if (sqlite3_close(db) != SQLITE_OK)
        die("cannot close the database", db);

    /* 8. The file itself was repaired: plain SQLite reads it again. */
    if (sqlite3_open_v2(db_path, &plain, SQLITE_OPEN_READONLY, "unix") != SQLITE_OK)
        die("plain SQLite cannot open the repaired file", plain);
    answer = must_query_text(plain, "PRAGMA integrity_check");
    if (strcmp(answer, "ok") != 0)
        die("plain SQLite finds the repaired file inconsistent", NULL);
    printf("8. plain SQLite on the repaired file: PRAGMA integrity_check -> %s\n", answer);
    sqlite3_free(answer);
    sqlite3_close(plain);

    /* 9. A salvage: every readable row into a new database, the file
     *    itself untouched. It needs no damage to run; here it proves the
     *    call from C and that the output holds every row. */
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        die("cannot reopen the database", db);
    remove("protect-example-salvage.db");
    answer = must_query_text(db, "SELECT meta_salvage('protect-example-salvage.db')");
    if (strncmp(answer, "salvaged ", 9) != 0)
        die("meta_salvage() did not report a salvage", NULL);
    printf("9. SELECT meta_salvage('protect-example-salvage.db') -> %s\n", answer);
    sqlite3_free(answer);
    sqlite3_close(db);
    if (sqlite3_open_v2("protect-example-salvage.db", &plain, SQLITE_OPEN_READONLY, "unix") != SQLITE_OK)
        die("plain SQLite cannot open the salvage", plain);
    count_rows(plain, &tables, &rows);
    /* Plus lost_and_found and the two report tables. */
    if (tables != N_TABLES + 3 || rows != (long)N_TABLES * N_ROWS)
        die("rows are missing from the salvage", NULL);
    answer = must_query_text(plain, "PRAGMA integrity_check");
    if (strcmp(answer, "ok") != 0)
        die("the salvage is inconsistent", NULL);
    printf("   the salvage: %ld tables, %ld rows; PRAGMA integrity_check -> %s\n", tables, rows, answer);
    sqlite3_free(answer);
    sqlite3_close(plain);
    printf("protect: all steps succeeded\n");
    return 0;
}
