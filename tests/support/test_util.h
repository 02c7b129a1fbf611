#ifndef CRDT_TEST_UTIL_H
#define CRDT_TEST_UTIL_H

/*
 * Shared helpers: deterministic replica IDs, an injectable clock, configs
 * wired to the counting allocator, and a tiny independent msgpack writer
 * to hand-craft wire input (canonical and deliberately non-canonical)
 * without going through the library's own encoder.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/crdt.h"

/* An ID whose memcmp order is the order of `n` (byte 0 = n, never zero). */
crdt_replica_id test_id(uint8_t n);

/* Fake physical clock: returns `ms`; counts reads. */
typedef struct test_clock {
	uint64_t ms;
	unsigned long reads;
} test_clock;
uint64_t test_clock_read(void *ud);

/* Defaults + counting allocator; `clk` (may be NULL = real clock). */
void test_config(crdt_config *cfg, test_clock *clk);

/* A crdt_buf on libc for scaffolding (cannot fail short of abort). */
void tb_init(crdt_buf *b);

/* msgpack writer, smallest forms (like the library's). Abort the test on
 * allocation failure. */
void mp_raw(crdt_buf *b, const void *p, size_t n);
void mp_byte(crdt_buf *b, uint8_t v);
void mp_array(crdt_buf *b, uint32_t n);
void mp_uint(crdt_buf *b, uint64_t v);
void mp_bin(crdt_buf *b, const void *p, size_t n);
void mp_nil(crdt_buf *b);
void mp_id(crdt_buf *b, crdt_replica_id id);

/* Whole ops / states in the documented wire format (docs/wire-format.md),
 * appended to `b`. */
void mk_gset_op(crdt_buf *b, crdt_replica_id id, uint64_t counter,
    const void *elem, size_t len);
void mk_lww_op(crdt_buf *b, uint64_t hlc, crdt_replica_id id, bool present,
    const void *val, size_t len);
void mk_map_op(crdt_buf *b, uint64_t hlc, crdt_replica_id id, bool present,
    const void *val, size_t vlen, const void *key, size_t klen);

/* Byte-exact comparison of two byte ranges. */
bool bytes_eq(const void *a, size_t alen, const void *b, size_t blen);
/* Hex of up to 64 bytes in a static buffer, valid until the 4th next
 * call (for failure messages). */
const char *hexs(const void *p, size_t n);

/* Remove an SQLite database file and its -wal, -shm and -journal files
 * (any of them may be absent). */
void test_rm_db(const char *path);

/* A fresh directory /tmp/crdt-<tag>-XXXXXX in `dir` (TEST_DIR_MAX bytes)
 * and the path of the database "s.db" in it (not created) in `db`
 * (TEST_DB_MAX bytes); fails the test if the directory cannot be made.
 * test_tmpdb_remove() removes that database and the directory, which
 * must hold nothing else by then. */
#define TEST_DIR_MAX 256
#define TEST_DB_MAX 300
void test_tmpdb(const char *tag, char *dir, char *db);
void test_tmpdb_remove(const char *dir, const char *db);

#endif /* CRDT_TEST_UTIL_H */
