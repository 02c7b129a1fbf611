/*
 * What the attach test files share (test_store_attach.c,
 * test_store_attach_faults.c): a temporary directory per test, documents
 * attached to real SQLite stores, and small helpers. Each file is its own
 * executable, so the statics here are per file.
 */
#ifndef CRDT_TEST_ATTACH_COMMON_H
#define CRDT_TEST_ATTACH_COMMON_H

#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "crdt/crdt.h"
#include "crdt/store.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_crash.h"
#include "test_util.h"

static char tmpdir[TEST_DIR_MAX];
static char dbpath[TEST_DB_MAX];


static void
setup(void)
{
	test_tmpdb("attach", tmpdir, dbpath);
	test_alloc_reset();
}

static void
teardown(void)
{
	test_tmpdb_remove(tmpdir, dbpath);
}

TestSuite(attach, .init = setup, .fini = teardown);

static inline crdt_store *
store_open(uint32_t max_pages, bool must_exist)
{
	crdt_store_sqlite_opts o;
	memset(&o, 0, sizeof o);
	o.synchronous = CRDT_STORE_SYNC_NORMAL; /* kill -9 safe, faster */
	o.max_pages = max_pages;
	o.must_exist = must_exist;
	crdt_store *s = NULL;
	int rc = crdt_store_open_sqlite(NULL, dbpath, &o, &s);
	cr_assert_eq(rc, 0, "open store: %s", crdt_err_name(rc));
	return s;
}

/* A document with one LWW map "m" (object 0). */
static inline crdt_doc *
mkdoc(uint8_t id, test_clock *clk, size_t log_max)
{
	crdt_config cfg;
	test_config(&cfg, clk);
	cfg.log_max_msgs = log_max;
	crdt_replica_id rid = test_id(id);
	crdt_doc *d = NULL;
	cr_assert_eq(crdt_doc_new(&cfg, &rid, &d), 0);
	uint32_t on;
	cr_assert_eq(crdt_doc_register(d, "m", CRDT_OBJ_MAP, &on), 0);
	cr_assert_eq(on, 0);
	return d;
}

static inline int
put(crdt_doc *d, unsigned k, const char *v, crdt_buf *msg)
{
	char key[16];
	snprintf(key, sizeof key, "k%u", k);
	crdt_buf_clear(msg);
	return crdt_doc_map_set(d, 0, key, strlen(key), v, strlen(v), msg);
}

static inline void
save(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_save(d, out), 0);
}

static inline crdt_dot
dot_of(const crdt_buf *m)
{
	crdt_dot dot;
	cr_assert_eq(crdt_msg_peek(m->data, m->len, &dot, NULL), 0);
	return dot;
}

static inline uint64_t
vc_of(const crdt_doc *d, uint8_t id)
{
	crdt_vclock *v;
	cr_assert_eq(crdt_doc_vclock(d, &v), 0);
	crdt_replica_id r = test_id(id);
	uint64_t c = crdt_vclock_get(v, &r);
	crdt_vclock_free(v);
	return c;
}


#endif /* CRDT_TEST_ATTACH_COMMON_H */
