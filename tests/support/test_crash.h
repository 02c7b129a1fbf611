#ifndef CRDT_TEST_CRASH_H
#define CRDT_TEST_CRASH_H

/*
 * Pieces of the kill -9 tests of a document attached to a store
 * (tests/doc/test_store_attach.c, test_checkpoint.c): the acks a child
 * writes to its pipe, one crash of one child, the check that no dot of
 * ours is stored twice, and a sync until both sides are done.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/crdt.h"
#include "crdt/store.h"

/* An ack on the pipe, written once the call returned 0: who (1 = our own
 * commit, 2 = a peer's message received) and the dot's counter. */
typedef struct test_ack {
	uint32_t who;
	uint32_t counter;
} test_ack;

/* Read at most `max` acks from `fd` (stops at end of pipe) and raise
 * *own / *peer to the highest counter acked of each. */
void test_ack_drain(int fd, uint32_t *own, uint32_t *peer, size_t max);

/*
 * One crash: fork a child that runs child(ud, seed, wfd) (which must
 * _exit(0) if it finishes), read `before` acks, wait `delay_us`, kill it
 * with SIGKILL, reap it and read the acks it wrote before dying. The
 * child must have died of the signal or exited 0 (else the test fails,
 * naming `seed`). Returns whether the signal killed it.
 */
bool test_crash_once(void (*child)(void *ud, uint64_t seed, int wfd),
    void *ud, uint64_t seed, size_t before, long delay_us, uint32_t *own,
    uint32_t *peer, size_t max_acks);

/* Every message of replica `id` that store `s` holds: fails the test if
 * a dot is stored twice or the counters are not exactly 1..n. Returns n. */
uint64_t test_own_dots(crdt_store *s, const crdt_replica_id *id);

/* Sync rounds a -> b and b -> a until neither side has anything to send
 * (every frame accepted; at most 1024 frames a round). */
void test_heal(crdt_doc *a, crdt_doc *b);

#endif
