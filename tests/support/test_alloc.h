#ifndef CRDT_TEST_ALLOC_H
#define CRDT_TEST_ALLOC_H

/*
 * Counting allocator for tests (STYLE.md point 25).
 *
 * Every block carries a 16-byte header with its size, so a free() or
 * realloc() that passes a different size than was allocated fails the test
 * at once. Live bytes/blocks are counted so each test can assert it leaks
 * nothing. Failure injection: test_alloc_fail_at(n) makes the n-th
 * allocation from now (0 = the next one) return NULL; realloc counts as an
 * allocation.
 *
 * State is process-global: Criterion runs every test in its own process.
 */

#include <stdbool.h>
#include <stddef.h>

#include "crdt/crdt.h"

/* Zero all counters and disarm failure injection. */
void test_alloc_reset(void);
/* The hook to put into crdt_config.alloc or crdt_buf_init(). */
const crdt_allocator *test_alloc_hook(void);

size_t test_alloc_live_bytes(void);
size_t test_alloc_live_blocks(void);
/* Allocation attempts (alloc + realloc) since the last reset. */
unsigned long test_alloc_calls(void);

/* Fail only the n-th allocation from now (n = 0: the next one); n < 0
 * disarms. */
void test_alloc_fail_at(long n);
/* Fail the n-th allocation from now and every one after it. */
void test_alloc_fail_from(long n);
/* True when an armed failure has been injected since it was armed. */
bool test_alloc_fired(void);
/* Disarm without touching the counters. */
void test_alloc_disarm(void);

/* Fail the test unless nothing allocated through the hook is still live. */
#define ASSERT_NO_LEAKS()                                                 \
	cr_assert(test_alloc_live_bytes() == 0 &&                         \
	        test_alloc_live_blocks() == 0,                            \
	    "leak: %zu bytes in %zu blocks still live",                   \
	    test_alloc_live_bytes(), test_alloc_live_blocks())

#endif /* CRDT_TEST_ALLOC_H */
