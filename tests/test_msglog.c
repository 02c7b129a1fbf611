/*
 * White-box: the message log (crdt/msglog.h), below the document. What
 * sync serves and equivocation compares against, so:
 *   - a replica's run holds exactly its latest contiguous messages, and a
 *     gap (a snapshot jumped the replica) restarts it;
 *   - over a bound, eviction takes the oldest message of the replica that
 *     holds the most messages (or bytes): one writer flooding the log
 *     flushes only its own history;
 *   - the fifo lists what is logged in apply order;
 *   - a failed reservation changes nothing, and nothing leaks.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "msglog.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

static crdt__msglog l;

static void
setup(void)
{
	test_alloc_reset();
}

TestSuite(msglog, .init = setup);

static void
open_log(size_t max_msgs, size_t max_bytes, size_t replicas)
{
	crdt__log_init(&l, test_alloc_hook(), max_msgs, max_bytes);
	cr_assert_eq(crdt__log_reserve_replicas(&l, replicas), 0);
	for (size_t i = 0; i < replicas; i++)
		crdt__log_add_replica(&l);
}

static void
close_log(void)
{
	crdt__log_fini(&l);
	ASSERT_NO_LEAKS();
}

/* Log replica r's message c: `len` bytes, each the low byte of c. */
static void
push(uint32_t r, uint64_t c, size_t len)
{
	uint8_t buf[256];
	memset(buf, (int)(c & 0xff), len);
	cr_assert_eq(crdt__log_reserve(&l, r, len), 0);
	crdt__log_push(&l, r, c, buf, len);
}

static bool
has(uint32_t r, uint64_t c)
{
	const crdt__logent *e = crdt__log_get(&l, r, c);
	if (e == NULL)
		return false;
	cr_assert(e->len == 0 || e->bytes[0] == (uint8_t)(c & 0xff));
	return true;
}

Test(msglog, a_run_holds_the_contiguous_messages)
{
	open_log(100, 1 << 20, 2);
	for (uint64_t c = 1; c <= 5; c++)
		push(0, c, 8);
	for (uint64_t c = 1; c <= 5; c++)
		cr_assert(has(0, c), "message %llu", (unsigned long long)c);
	cr_assert(!has(0, 0));
	cr_assert(!has(0, 6));
	cr_assert(!has(1, 1));
	cr_assert(!has(2, 1)); /* not a replica of this log */
	cr_assert_eq(l.count, 5);
	cr_assert_eq(l.bytes, 40);
	close_log();
}

Test(msglog, a_gap_restarts_the_run)
{
	open_log(100, 1 << 20, 1);
	push(0, 1, 4);
	push(0, 2, 4);
	push(0, 5, 4);
	cr_assert(!has(0, 1));
	cr_assert(!has(0, 2));
	cr_assert(has(0, 5));
	cr_assert_eq(l.count, 1);
	cr_assert_eq(l.bytes, 4);
	crdt__log_reset(&l, 0, 9);
	cr_assert_eq(l.count, 0);
	cr_assert(!has(0, 5));
	push(0, 9, 4);
	push(0, 10, 4);
	cr_assert(has(0, 9) && has(0, 10));
	close_log();
}

Test(msglog, eviction_takes_from_the_writer_holding_the_most_messages)
{
	/* The quiet writer holds more bytes: only the message count may
	 * pick the flooder. */
	open_log(10, 1 << 20, 2);
	for (uint64_t c = 1; c <= 3; c++)
		push(0, c, 100);
	for (uint64_t c = 1; c <= 20; c++)
		push(1, c, 1);
	cr_assert_eq(l.count, 10);
	for (uint64_t c = 1; c <= 3; c++)
		cr_assert(has(0, c), "the quiet writer lost %llu",
		    (unsigned long long)c);
	for (uint64_t c = 1; c <= 20; c++)
		cr_assert_eq(has(1, c), c >= 14, "flooder, message %llu",
		    (unsigned long long)c);
	close_log();
}

Test(msglog, eviction_takes_from_the_writer_holding_the_most_bytes)
{
	open_log(1000, 100, 2);
	push(0, 1, 40);
	push(0, 2, 40);
	for (uint64_t c = 1; c <= 10; c++)
		push(1, c, 5);
	/* 80 + 25 > 100 at r1's fifth message: r0 (80 bytes) pays. */
	cr_assert(!has(0, 1));
	cr_assert(has(0, 2));
	for (uint64_t c = 1; c <= 10; c++)
		cr_assert(has(1, c));
	cr_assert_eq(l.bytes, 90);
	close_log();
}

Test(msglog, the_fifo_lists_what_is_logged_in_apply_order)
{
	test_rng rng;
	test_rng_init(&rng, test_seed(UINT64_C(0x10c)));
	open_log(64, 1 << 20, 4);
	uint64_t next[4] = { 1, 1, 1, 1 };
	crdt__fifo_ent order[2000];
	size_t n = 0;
	for (size_t i = 0; i < 2000; i++) {
		uint32_t r = (uint32_t)test_rng_below(&rng, 4);
		push(r, next[r], 1 + (size_t)test_rng_below(&rng, 16));
		order[n++] = (crdt__fifo_ent){ r, next[r]++ };
	}
	cr_assert_eq(l.count, 64);
	/* The logged messages, in the fifo's order, are the pushes' order
	 * filtered to what is still logged. */
	size_t k = 0;
	for (size_t i = 0; i < l.fifo_n; i++) {
		crdt__fifo_ent f = l.fifo[l.fifo_start + i];
		if (!has(f.r, f.c))
			continue;
		while (k < n && !has(order[k].r, order[k].c))
			k++;
		cr_assert(k < n);
		cr_assert(order[k].r == f.r && order[k].c == f.c,
		    "fifo entry %zu out of order", i);
		k++;
	}
	size_t logged = 0;
	for (size_t i = 0; i < n; i++)
		logged += has(order[i].r, order[i].c);
	cr_assert_eq(logged, 64);
	/* Compaction keeps the fifo within a small multiple of the log. */
	cr_assert_leq(l.fifo_n, 2 * l.count + 16);
	close_log();
}

Test(msglog, a_failed_reservation_changes_nothing)
{
	open_log(100, 1 << 20, 1);
	/* Fill the run's vector so the next reservation must grow it. */
	uint64_t c = 0;
	do
		push(0, ++c, 4);
	while (l.r[0].start + l.r[0].n < l.r[0].cap);
	test_alloc_fail_at(0);
	cr_assert_eq(crdt__log_reserve(&l, 0, 4), CRDT_ENOMEM);
	cr_assert(test_alloc_fired());
	test_alloc_disarm();
	cr_assert_eq(l.count, c);
	for (uint64_t i = 1; i <= c; i++)
		cr_assert(has(0, i));
	push(0, c + 1, 4);
	cr_assert(has(0, c + 1));
	close_log();
}

Test(msglog, dropping_replicas_frees_their_runs)
{
	open_log(100, 1 << 20, 3);
	push(0, 1, 4);
	crdt__log_drop_replicas(&l, 1);
	cr_assert_eq(l.nr, 1);
	cr_assert(has(0, 1));
	cr_assert(!has(1, 1));
	close_log();
}
