/*
 * White-box: where the message log (crdt/msglog.h) keeps the bytes it
 * logs, and what memory that holds.
 *   - short messages are packed into per-replica chunks, long ones (over
 *     CRDT__LOG_BIG) get a block of their own, so a message larger than a
 *     chunk is logged whole;
 *   - a chunk goes as soon as its last message is evicted: by count or by
 *     bytes, what the allocator holds returns to the bound msglog.h
 *     states, checked against the counting allocator;
 *   - what crdt__log_get returns stays put while the entry is logged;
 *   - a failed reservation (any allocation of it) changes nothing, and a
 *     reservation not followed by a push is reused, not leaked.
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

TestSuite(msglog_mem, .init = setup);

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

/* The bytes of replica r's message c: a pattern of (r, c, offset), so a
 * message read from the wrong place, or overwritten, shows. */
static uint8_t
pat(uint32_t r, uint64_t c, size_t i)
{
	/* The first byte is never 0x00: only a spliced entry starts so. */
	return (uint8_t)(r * 131u + c * 31u + i * 7u) | (i == 0);
}

static uint8_t buf[200000], want[200000];

static void
fill_into(uint8_t *b, uint32_t r, uint64_t c, size_t len)
{
	cr_assert_leq(len, sizeof buf);
	for (size_t i = 0; i < len; i++)
		b[i] = pat(r, c, i);
}

static void
fill(uint32_t r, uint64_t c, size_t len)
{
	fill_into(buf, r, c, len);
}

static void
push(uint32_t r, uint64_t c, size_t len)
{
	fill(r, c, len);
	cr_assert_eq(crdt__log_reserve(&l, r, len), 0);
	crdt__log_push(&l, r, c, buf, len, NULL);
}

/* Replica r's message c is logged with `len` bytes of its pattern. */
static void
assert_holds(uint32_t r, uint64_t c, size_t len)
{
	crdt__lent e;
	cr_assert(crdt__log_get(&l, r, c, &e),
	    "replica %u message %llu not logged", r, (unsigned long long)c);
	cr_assert_eq(e.n, len);
	fill_into(want, r, c, len);
	cr_assert(len == 0 || memcmp(e.p, want, len) == 0,
	    "replica %u message %llu: other bytes", r, (unsigned long long)c);
}

/* What the log's arrays take (everything it allocates but message
 * bytes). */
static size_t
array_bytes(void)
{
	size_t n = l.capr * sizeof *l.r + l.fifo_cap * sizeof *l.fifo +
	    (l.heap_cap[0] + l.heap_cap[1]) * sizeof(uint32_t);
	for (size_t i = 0; i < l.nr; i++)
		n += l.r[i].cap * sizeof *l.r[i].v;
	return n;
}

/* The prefix the log puts before a message of `len` bytes. */
static size_t
prefix(size_t len)
{
	return len < 128 ? 1 : len < 16384 ? 2 : len < (1u << 21) ? 3 : 4;
}

/* Bytes the log's prefixes take. */
static size_t prefix_bytes;

/*
 * Check every replica's chunks against msglog.h, and the allocator's
 * live bytes against them: returns the bytes held for messages.
 *   - chunks: each holds a message, their message counts
 *     add up to the run's short messages, and each short message lies in
 *     them, oldest first, right after its prefix;
 *   - every chunk but the newest was closed with less than
 *     CRDT__LOG_BIG + 2 unused;
 *   - held = logged bytes + their prefixes + evicted front of the
 *     oldest chunk + unused ends + headers, which is what the allocator
 *     holds beyond the arrays.
 */
static size_t
check_memory(void)
{
	size_t held = l.big != NULL ? l.big_len + prefix(l.big_len) : 0;
	if (l.spare != NULL)
		held += sizeof *l.spare + l.spare->cap;
	prefix_bytes = 0;
	for (size_t ri = 0; ri < l.nr; ri++) {
		const crdt__rlog *r = &l.r[ri];
		size_t shorts = 0, short_bytes = 0, counted = 0, caps = 0;
		const crdt__lchunk *c = r->head;
		size_t front = 0;
		bool first = true;
		for (size_t j = 0; j < r->n; j++) {
			const uint8_t *p = r->v[r->start + j];
			crdt__lent e;
			cr_assert(crdt__log_get(&l, (uint32_t)ri, r->lo + j,
			    &e));
			size_t k = prefix(e.n);
			cr_assert(e.p == p + k, "replica %zu message %zu: "
						    "not after its prefix", ri, j);
			prefix_bytes += k;
			if (e.n > CRDT__LOG_BIG) {
				held += k + e.n;
				continue;
			}
			cr_assert_leq(k, 2);
			shorts++;
			short_bytes += k + e.n;
			/* In order: in this chunk or a newer one. */
			while (c != NULL &&
			    !(p >= c->data &&
				e.p + e.n <= c->data + c->used))
				c = c->next;
			cr_assert_not_null(c, "replica %zu: message %zu is in "
					      "none of its chunks", ri, j);
			if (first)
				front = (size_t)(p - r->head->data);
			first = false;
		}
		cr_assert(r->tail == NULL || r->tail->next == NULL);
		cr_assert((r->head == NULL) == (r->tail == NULL));
		size_t unused = 0;
		for (c = r->head; c != NULL; c = c->next) {
			cr_assert_gt(c->n, 0, "replica %zu: an empty chunk kept",
			    ri);
			cr_assert_leq(c->used, c->cap);
			cr_assert_geq(c->cap, CRDT__LOG_CHUNK_MIN);
			cr_assert_leq(c->cap, CRDT__LOG_CHUNK_MAX);
			if (c != r->tail)
				cr_assert_lt(c->cap - c->used,
				    CRDT__LOG_BIG + 2);
			counted += c->n;
			caps += c->cap;
			unused += c->cap - c->used;
			held += sizeof *c + c->cap;
		}
		cr_assert_eq(counted, shorts, "replica %zu", ri);
		/* The chunks hold the short messages with their prefixes,
		 * the evicted front of the oldest and the unused ends, and
		 * nothing else. */
		cr_assert_eq(caps, short_bytes + front + unused, "replica %zu",
		    ri);
		if (r->head != NULL && r->head != r->tail)
			cr_assert_leq(front, r->head->cap);
	}
	cr_assert_eq(held, l.held);
	cr_assert_eq(test_alloc_live_bytes(), array_bytes() + held);
	return held;
}

/* Number of chunks replica r holds. */
static size_t
chunks(uint32_t r)
{
	size_t n = 0;
	for (const crdt__lchunk *c = l.r[r].head; c != NULL; c = c->next)
		n++;
	return n;
}

/* The bound of msglog.h, for every replica with chunks: logged bytes
 * and their prefixes (check_memory counts them), two chunks, a header
 * and CRDT__LOG_BIG + 2 per chunk. */
static size_t
bound(void)
{
	size_t b = l.bytes + prefix_bytes;
	for (uint32_t r = 0; r < l.nr; r++) {
		size_t k = chunks(r);
		if (k > 0)
			b += 2 * (size_t)CRDT__LOG_CHUNK_MAX +
			    k * (sizeof(crdt__lchunk) + CRDT__LOG_BIG + 2);
	}
	return b;
}

Test(msglog_mem, a_short_run_has_small_chunks)
{
	open_log(1000, 1 << 20, 2);
	/* A writer of one message holds one 256-byte chunk for it. */
	push(1, 1, 100);
	cr_assert_eq(chunks(1), 1);
	cr_assert_eq(l.r[1].head->cap, CRDT__LOG_CHUNK_MIN);
	unsigned long calls = test_alloc_calls();
	push(1, 2, 100);
	cr_assert_eq(test_alloc_calls(), calls, "a push that fits mallocs");
	cr_assert_eq(l.r[1].head->n, 2);
	/* 3,000 bytes (101 each with the prefix): chunks that grow with
	 * the run (256, 256, 400, 700, 1,300, 2,500), not one per
	 * message. */
	for (uint64_t c = 1; c <= 30; c++)
		push(0, c, 100);
	cr_assert_eq(chunks(0), 6);
	cr_assert_eq(l.r[0].head->cap, CRDT__LOG_CHUNK_MIN);
	cr_assert_eq(l.r[0].tail->cap, 2500);
	for (uint64_t c = 1; c <= 30; c++)
		assert_holds(0, c, 100);
	assert_holds(1, 1, 100);
	assert_holds(1, 2, 100);
	check_memory();
	close_log();
}

Test(msglog_mem, chunks_grow_with_the_run_up_to_64_kib)
{
	open_log(100000, (size_t)1 << 30, 1);
	uint64_t c = 0;
	while (l.bytes < 2 * (size_t)1 << 20)
		push(0, ++c, 1000);
	size_t prev = 0, k = 0;
	for (const crdt__lchunk *x = l.r[0].head; x != NULL; x = x->next) {
		cr_assert_geq(x->cap, prev, "chunk %zu shrank", k);
		prev = x->cap;
		k++;
	}
	/* The first message's, with its 2-byte prefix. */
	cr_assert_eq(l.r[0].head->cap, 1002);
	cr_assert_eq(l.r[0].tail->cap, CRDT__LOG_CHUNK_MAX);
	/* 2 MiB: chunks of 1, 1, 2, 4, ... 32 and 64 KB, then 64 KiB ones
	 * (65 messages each): geometric growth, not a chunk per 4 KiB. */
	cr_assert_leq(k, 8 + 2 * (1 << 20) / 65000 + 1);
	for (uint64_t i = 1; i <= c; i++)
		assert_holds(0, i, 1000);
	check_memory();
	close_log();
}

Test(msglog_mem, a_message_larger_than_a_chunk_is_logged_whole)
{
	open_log(1000, (size_t)1 << 30, 1);
	/* Short, at the threshold, just over it, over a page, over the
	 * largest chunk. */
	size_t lens[] = { 10, CRDT__LOG_BIG, CRDT__LOG_BIG + 1, 5000,
		3 * CRDT__LOG_CHUNK_MAX + 7, 20 };
	size_t n = sizeof lens / sizeof lens[0];
	for (size_t i = 0; i < n; i++)
		push(0, i + 1, lens[i]);
	for (size_t i = 0; i < n; i++)
		assert_holds(0, i + 1, lens[i]);
	/* The short ones are in chunks (10 bytes in 256; 1,024 and its
	 * 2-byte prefix do not fit there; 20 after the long ones, in a
	 * chunk as large as the run), the long ones are not. */
	cr_assert_eq(chunks(0), 3);
	cr_assert_eq(l.r[0].head->n, 1);
	cr_assert_eq(l.r[0].head->next->cap, CRDT__LOG_BIG + 2);
	cr_assert_eq(l.r[0].tail->cap, CRDT__LOG_CHUNK_MAX);
	cr_assert_null(l.big);
	cr_assert_null(l.spare);
	check_memory();
	close_log();
}

Test(msglog_mem, eviction_by_count_frees_chunks)
{
	open_log(100, (size_t)1 << 30, 1);
	size_t peak = 0;
	for (uint64_t c = 1; c <= 20000; c++) {
		push(0, c, 90 + (size_t)(c % 50));
		if (c % 97 == 0) {
			size_t held = check_memory();
			cr_assert_leq(held, bound());
			peak = CRDT_MAX(peak, held);
		}
	}
	cr_assert_eq(l.count, 100);
	for (uint64_t c = 19901; c <= 20000; c++)
		assert_holds(0, c, 90 + (size_t)(c % 50));
	cr_assert(!crdt__log_has(&l, 0, 19900));
	/* 9-14 KB logged: the chunks are sized by the run, not 64 KiB, and
	 * the run spans at most three of them. */
	cr_assert_leq(chunks(0), 3);
	cr_assert_leq(peak, 3 * (100 * 139 + sizeof(crdt__lchunk)));
	close_log();
}

Test(msglog_mem, eviction_by_bytes_returns_memory_to_the_bound)
{
	const size_t max = 50000;
	open_log(1000000, max, 2);
	/* Replica 0 fills the log with long messages, then replica 1's
	 * short ones push them out (it holds fewer bytes, but the byte
	 * bound evicts from the largest holder: replica 0). */
	for (uint64_t c = 1; c <= 20; c++)
		push(0, c, 5000);
	cr_assert_leq(l.bytes, max);
	size_t before = check_memory();
	cr_assert_geq(before, 9 * 5000);
	for (uint64_t c = 1; c <= 5000; c++) {
		push(1, c, 120);
		if (c % 101 == 0)
			cr_assert_leq(check_memory(), bound());
	}
	cr_assert_leq(l.bytes, max);
	/* Replica 0's blocks went as the bytes moved to replica 1 (until
	 * replica 1 held the most); replica 1's chunks are sized by its run
	 * and freed as they empty. */
	cr_assert_leq(l.r[0].n, 5);
	cr_assert_eq(chunks(0), 0);
	size_t held = check_memory();
	cr_assert_leq(held, max + 2 * (CRDT__LOG_CHUNK_MAX +
	    sizeof(crdt__lchunk)) + 2 * CRDT__LOG_BIG);
	cr_assert_leq(chunks(1), 3);
	close_log();
}

Test(msglog_mem, interleaved_replicas_keep_their_own_chunks)
{
	test_rng rng;
	test_rng_init(&rng, test_seed(UINT64_C(0x3a7e)));
	open_log(300, 60000, 4);
	uint64_t next[4] = { 1, 1, 1, 1 };
	/* The lengths of what was pushed, to check every logged message. */
	static size_t lens[4][4000];
	for (size_t i = 0; i < 8000; i++) {
		uint32_t r = (uint32_t)test_rng_below(&rng, 4);
		if (next[r] > 4000 - 1)
			continue;
		size_t len = test_rng_below(&rng, 10) == 0 ?
		    CRDT__LOG_BIG + (size_t)test_rng_below(&rng, 9000) :
		    (size_t)test_rng_below(&rng, 400);
		lens[r][next[r]] = len;
		push(r, next[r]++, len);
		if (i % 53 == 0) {
			cr_assert_leq(check_memory(), bound());
			for (uint32_t q = 0; q < 4; q++)
				for (uint64_t c = 1; c < next[q]; c++)
					if (crdt__log_has(&l, q, c))
						assert_holds(q, c, lens[q][c]);
		}
	}
	cr_assert_leq(l.count, 300);
	cr_assert_leq(l.bytes, 60000);
	check_memory();
	close_log();
}

Test(msglog_mem, logged_bytes_do_not_move)
{
	open_log(200, (size_t)1 << 30, 3);
	push(0, 1, 50);
	push(2, 1, 5000);
	crdt__lent e0, e2;
	cr_assert(crdt__log_get(&l, 0, 1, &e0));
	cr_assert(crdt__log_get(&l, 2, 1, &e2));
	const uint8_t *p0 = e0.p, *p2 = e2.p;
	/* Replica 1 evicts only its own messages (it holds the most); its
	 * chunks come and go, replica 0's and 2's bytes stay where they
	 * are. Replica 0's run grows into new chunks too. */
	for (uint64_t c = 1; c <= 50000; c++) {
		push(1, c, 200);
		if (c % 1000 == 0)
			push(0, c / 1000 + 1, 700);
	}
	cr_assert(crdt__log_get(&l, 0, 1, &e0) && e0.p == p0);
	cr_assert(crdt__log_get(&l, 2, 1, &e2) && e2.p == p2);
	assert_holds(0, 1, 50);
	assert_holds(2, 1, 5000);
	for (uint64_t c = 2; c <= 51; c++)
		assert_holds(0, c, 700);
	/* After ~49,850 evictions, get() finds what is left. */
	cr_assert_eq(l.r[1].n, 200 - 52);
	for (uint64_t c = 50000 - 147; c <= 50000; c++)
		assert_holds(1, c, 200);
	cr_assert(!crdt__log_has(&l, 1, 50000 - 148));
	check_memory();
	close_log();
}

/* Fail each allocation of one reservation in turn: the log holds what it
 * held (messages, bytes, held memory), then the reservation succeeds. */
static void
fail_each_allocation(uint32_t r, uint64_t c, size_t len)
{
	size_t count = l.count, bytes = l.bytes;
	for (long n = 0;; n++) {
		cr_assert_lt(n, 16);
		size_t held = l.held;
		test_alloc_fail_at(n);
		int rc = crdt__log_reserve(&l, r, len);
		bool fired = test_alloc_fired();
		test_alloc_disarm();
		if (!fired) {
			cr_assert_eq(rc, 0);
			break;
		}
		cr_assert_eq(rc, CRDT_ENOMEM);
		cr_assert_eq(l.count, count);
		cr_assert_eq(l.bytes, bytes);
		cr_assert_eq(l.held, held, "allocation %ld", n);
		check_memory();
	}
	fill(r, c, len);
	crdt__log_push(&l, r, c, buf, len, NULL);
}

Test(msglog_mem, a_failed_reservation_changes_nothing)
{
	open_log(1000, (size_t)1 << 30, 2);
	/* The log's first message: the run's vector, the fifo, the heaps
	 * and a chunk. */
	fail_each_allocation(1, 1, 10);
	/* The newest chunk full: a new one. */
	uint64_t c = 0;
	do
		push(0, ++c, 600);
	while (l.r[0].tail->cap - l.r[0].tail->used >= 600);
	fail_each_allocation(0, ++c, 600);
	cr_assert_eq(chunks(0), 2);
	/* The run's vector full. */
	while (l.r[0].start + l.r[0].n < l.r[0].cap)
		push(0, ++c, 600);
	fail_each_allocation(0, ++c, 600);
	/* A long message's block. */
	fail_each_allocation(0, ++c, 3 * CRDT__LOG_CHUNK_MAX);
	for (uint64_t i = 1; i <= c; i++)
		assert_holds(0, i, i == c ? 3 * CRDT__LOG_CHUNK_MAX : 600);
	assert_holds(1, 1, 10);
	check_memory();
	close_log();
}

Test(msglog_mem, a_reservation_without_a_push_is_reused)
{
	open_log(1000, (size_t)1 << 30, 2);
	/* An apply that fails after its reservation pushes nothing: the
	 * room stays (no free on the failure path) and the next reservation
	 * takes no allocation. */
	cr_assert_eq(crdt__log_reserve(&l, 1, 100), 0);
	/* Held by the log, not linked into the chain: a chain never holds
	 * an empty chunk. */
	cr_assert_eq(chunks(1), 0);
	crdt__lchunk *spare = l.spare;
	cr_assert_not_null(spare);
	check_memory();
	unsigned long calls = test_alloc_calls();
	cr_assert_eq(crdt__log_reserve(&l, 1, 200), 0);
	cr_assert_eq(test_alloc_calls(), calls);
	cr_assert_eq(crdt__log_reserve(&l, 0, 5000), 0);
	calls = test_alloc_calls();
	cr_assert_eq(crdt__log_reserve(&l, 0, 5000), 0);
	cr_assert_eq(test_alloc_calls(), calls);
	cr_assert_not_null(l.big);
	/* Another length replaces the reserved block. */
	cr_assert_eq(crdt__log_reserve(&l, 0, 6000), 0);
	cr_assert_eq(l.big_len, 6000);
	check_memory();
	fill(0, 1, 6000);
	crdt__log_push(&l, 0, 1, buf, 6000, NULL);
	cr_assert_null(l.big);
	push(1, 1, 200);
	cr_assert_eq(chunks(1), 1);
	cr_assert(l.r[1].head == spare, "the reserved chunk was not used");
	cr_assert_null(l.spare);
	assert_holds(0, 1, 6000);
	assert_holds(1, 1, 200);
	/* fini frees a reserved chunk and block left unused. */
	cr_assert_eq(crdt__log_reserve(&l, 0, 7000), 0);
	cr_assert_eq(crdt__log_reserve(&l, 0, 10), 0);
	cr_assert_not_null(l.big);
	cr_assert_not_null(l.spare);
	check_memory();
	close_log();
}

Test(msglog_mem, emptied_runs_hold_no_chunk)
{
	open_log(1000, (size_t)1 << 30, 3);
	for (uint64_t c = 1; c <= 100; c++)
		push(0, c, 100 + (c % 3) * 2000);
	cr_assert_gt(chunks(0), 0);
	/* A snapshot jumps the replica: its run and chunks go. */
	crdt__log_reset(&l, 0, 500);
	cr_assert_eq(chunks(0), 0);
	cr_assert_eq(l.count, 0);
	check_memory();
	cr_assert_eq(l.held, 0);
	/* A gap restarts the run in the room reserved for the message. */
	for (uint64_t c = 500; c <= 560; c++)
		push(0, c, 100);
	cr_assert_geq(chunks(0), 2);
	push(0, 900, 100);
	cr_assert_eq(chunks(0), 1);
	cr_assert_eq(l.r[0].head->n, 1);
	assert_holds(0, 900, 100);
	cr_assert(!crdt__log_has(&l, 0, 560));
	check_memory();
	/* ... or in a new chunk when the newest is full: the old ones go. */
	uint64_t c = 900;
	while (l.r[0].tail->cap - l.r[0].tail->used >= 100)
		push(0, ++c, 100);
	push(0, 2000, 100);
	cr_assert_eq(chunks(0), 1);
	cr_assert_eq(l.r[0].head->n, 1);
	assert_holds(0, 2000, 100);
	check_memory();
	/* Evicting every message of a run frees its chunk. */
	l.max_msgs = 0;
	push(1, 1, 100);
	cr_assert_eq(l.count, 0);
	cr_assert_eq(chunks(0), 0);
	cr_assert_eq(chunks(1), 0);
	cr_assert_eq(check_memory(), 0);
	l.max_msgs = 1000;
	/* A replica refused after its reservation is dropped; the log
	 * keeps the reserved chunk for the next one (fini frees it). */
	cr_assert_eq(crdt__log_reserve(&l, 2, 100), 0);
	cr_assert_eq(chunks(2), 0);
	crdt__log_drop_replicas(&l, 2);
	cr_assert_not_null(l.spare);
	check_memory();
	close_log();
}

Test(msglog_mem, a_message_over_the_byte_bound_is_not_kept)
{
	open_log(1000, 500, 1);
	push(0, 1, 100);
	push(0, 2, 600);
	cr_assert_eq(l.count, 0);
	cr_assert_eq(chunks(0), 0);
	cr_assert_eq(check_memory(), 0);
	push(0, 3, 5000);
	cr_assert_eq(l.count, 0);
	cr_assert_eq(check_memory(), 0);
	close_log();
}

/* Beside its messages' bytes, what the log keeps per message: the run
 * vectors (a pointer each), the fifo and the length prefixes. */
static double
metadata_per_message(void)
{
	check_memory(); /* counts prefix_bytes */
	size_t n = l.fifo_cap * sizeof *l.fifo + prefix_bytes;
	for (size_t i = 0; i < l.nr; i++)
		n += l.r[i].cap * sizeof *l.r[i].v;
	return (double)n / (double)l.count;
}

Test(msglog_mem, one_writer_costs_about_a_pointer_a_message)
{
	/* W6's shape (docs/performance.md): 100,000 messages of ~100 bytes
	 * from one writer. The run vector is 8 bytes a message (doubling:
	 * 131,072 slots), the fifo one entry, the prefix a byte: 11.5, where
	 * a pointer and a length per message and a fifo entry per message
	 * took 42. */
	open_log((size_t)1 << 20, (size_t)1 << 30, 2);
	for (uint64_t c = 1; c <= 100000; c++) {
		push(0, c, 90 + (size_t)(c % 21));
		cr_assert_eq(l.fifo_n, 1);
	}
	cr_assert_leq(l.fifo_cap, 16);
	double m = metadata_per_message();
	cr_assert_leq(m, 12.0, "%.2f bytes of metadata per message", m);
	for (uint64_t c = 1; c <= 100000; c += 997)
		assert_holds(0, c, 90 + (size_t)(c % 21));
	close_log();

	/* Three writers, one message each in turn: the fifo's entries are
	 * one per message then (16 bytes), the run vectors still 8. Was 52
	 * at this size. */
	open_log((size_t)1 << 20, (size_t)1 << 30, 3);
	for (uint64_t i = 0; i < 100000; i++)
		push((uint32_t)(i % 3), i / 3 + 1, 100);
	m = metadata_per_message();
	cr_assert_leq(m, 40.0, "%.2f bytes of metadata per message", m);
	close_log();
}
