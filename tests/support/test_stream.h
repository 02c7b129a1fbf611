#ifndef CRDT_TEST_STREAM_H
#define CRDT_TEST_STREAM_H

/*
 * Real document messages for the store tests, and a collector for what
 * crdt_store_since() hands out (tests/test_store.c, test_store_migrate.c).
 */

#include <stddef.h>
#include <stdint.h>

#include "crdt/crdt.h"
#include "crdt/store.h"

#define TEST_STREAM_MAX 512

typedef struct test_stream {
	crdt_buf m[TEST_STREAM_MAX];
	crdt_dot dot[TEST_STREAM_MAX];
	size_t n;
} test_stream;

/* Append `count` messages of replica test_id(rid), each an LWW write of
 * `vlen` (<= 16384) bytes; another `tag` gives other bytes under the same
 * dots (an equivocation). Fails the test on any error. */
void test_stream_add(test_stream *s, uint8_t rid, size_t count, size_t vlen,
    uint8_t tag);
void test_stream_free(test_stream *s);
/* crdt_store_append() of messages [from, from + n) of `s`. */
int test_stream_put(crdt_store *st, const test_stream *s, size_t from,
    size_t n, size_t *added);

typedef struct test_got {
	crdt_buf m[TEST_STREAM_MAX];
	crdt_dot dot[TEST_STREAM_MAX];
	size_t n, bytes;
	int fail_at; /* fail (CRDT_ENOMEM) call number fail_at, from 1; 0: never */
	int calls;
} test_got;

/* A crdt_store_msg_fn: copies each message into the test_got `ud`. A
 * zeroed test_got is ready to use. */
int test_collect(void *ud, crdt_dot dot, const uint8_t *bytes, size_t len);
void test_got_free(test_got *g);

#endif
