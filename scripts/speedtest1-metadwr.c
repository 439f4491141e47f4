/*
 * speedtest1-metadwr.c: links metadwr into an unmodified program.
 *
 * Compiled together with SQLite's test/speedtest1.c (scripts/build-speedtest1.sh)
 * into build/speedtest1-metadwr. The constructor runs before main() and
 * registers metadwr's entry point as an automatic extension, so the first
 * sqlite3_open*() of the program already goes through the metadwr VFS (the
 * entry point makes it the default VFS). Nothing else of the program
 * changes. Contains no SQLite code; link with -lmetadwr -lsqlite3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sqlite3.h>
#include "metadwr.h"

__attribute__((constructor)) static void metadwr_register(void) {
  int rc = sqlite3_auto_extension((void (*)(void))sqlite3_metadwr_init);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "speedtest1-metadwr: sqlite3_auto_extension failed (%d)\n", rc);
    exit(1);
  }
}
