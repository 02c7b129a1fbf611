/*
 * What the store test files share (test_store.c, test_store_faults.c,
 * test_store_crash.c): a temporary directory per test, real message
 * streams made by documents, and collecting what since() hands out. Each
 * file is its own executable, so the statics here are per file.
 */
#ifndef CRDT_TEST_STORE_COMMON_H
#define CRDT_TEST_STORE_COMMON_H

#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_stream.h"
#include "test_util.h"

/* ---- temporary directory, one per test ---- */

static char tmpdir[TEST_DIR_MAX];
static char dbpath[TEST_DB_MAX];


static void
setup(void)
{
	test_tmpdb("store", tmpdir, dbpath);
	test_alloc_reset();
}

static void
teardown(void)
{
	char x[sizeof dbpath + 16]; /* p is at most dbpath */
	snprintf(x, sizeof x, "%s/other.db", tmpdir);
	test_rm_db(x);
	test_tmpdb_remove(tmpdir, dbpath);
}

TestSuite(store, .init = setup, .fini = teardown);

/* ---- real messages, made by documents ---- */

#define MAXM TEST_STREAM_MAX

static inline crdt_store *
open_store(const crdt_store_sqlite_opts *o)
{
	crdt_config cfg;
	crdt_store *st = NULL;
	test_config(&cfg, NULL);
	int rc = crdt_store_open_sqlite(&cfg, dbpath, o, &st);
	cr_assert_eq(rc, 0, "open: %s", crdt_err_name(rc));
	return st;
}

static inline int
try_open(const char *path, crdt_store **out)
{
	crdt_config cfg;
	test_config(&cfg, NULL);
	return crdt_store_open_sqlite(&cfg, path, NULL, out);
}

/* ---- collecting what since() hands out ---- */


/* Everything `v` lacks, in one page. */
static inline void
all_since(crdt_store *st, const crdt_vclock *v, test_got *g)
{
	uint64_t cur = 0;
	bool more = true;
	memset(g, 0, sizeof *g);
	cr_assert_eq(crdt_store_since(st, v, &cur, SIZE_MAX, test_collect, g,
			 &more),
	    0);
	cr_assert(!more);
}

static inline void
expect_msgs(const test_got *g, const test_stream *s, const size_t *idx, size_t n)
{
	cr_assert_eq(g->n, n, "handed out %zu, want %zu", g->n, n);
	for (size_t i = 0; i < n; i++) {
		const crdt_buf *w = &s->m[idx[i]];
		cr_assert(bytes_eq(g->m[i].data, g->m[i].len, w->data, w->len),
		    "message %zu differs from stream[%zu]", i, idx[i]);
		cr_assert_eq(g->dot[i].counter, s->dot[idx[i]].counter);
		cr_assert_eq(memcmp(&g->dot[i].replica, &s->dot[idx[i]].replica,
				 sizeof g->dot[i].replica),
		    0);
	}
}

static inline crdt_vclock *
clock_of(uint8_t r1, uint64_t c1, uint8_t r2, uint64_t c2)
{
	crdt_vclock *v;
	crdt_replica_id a = test_id(r1), b = test_id(r2);
	cr_assert_eq(crdt_vclock_new(NULL, &v), 0);
	if (c1)
		cr_assert_eq(crdt_vclock_set(v, &a, c1), 0);
	if (c2)
		cr_assert_eq(crdt_vclock_set(v, &b, c2), 0);
	return v;
}


/* A store with `n` messages of ~2 KB, closed (WAL checkpointed into the
 * main file, so the bytes below are the data). */
static inline void
make_store(const test_stream *s)
{
	crdt_store *st = open_store(NULL);
	cr_assert_eq(test_stream_put(st, s, 0, s->n, NULL), 0);
	crdt_vclock *v = clock_of(1, 2, 0, 0);
	cr_assert_eq(crdt_store_put_checkpoint(st, "snap", 4, v), 0);
	crdt_vclock_free(v);
	crdt_store_close(st);
}

static inline size_t
count_all(crdt_store *st, const test_stream *s)
{
	crdt_vclock *v = clock_of(1, 0, 2, 0);
	test_got g;
	all_since(st, v, &g);
	crdt_vclock_free(v);
	size_t n = g.n;
	for (size_t i = 0; i < n; i++)
		cr_assert(bytes_eq(g.m[i].data, g.m[i].len, s->m[i].data,
			      s->m[i].len),
		    "stored[%zu] is stream[%zu]", i, i);
	test_got_free(&g);
	return n;
}

#endif /* CRDT_TEST_STORE_COMMON_H */
