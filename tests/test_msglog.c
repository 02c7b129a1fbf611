/*
 * White-box: the message log (crdt/msglog.h), below the document. What
 * sync serves and equivocation compares against, so:
 *   - a replica's run holds exactly its latest contiguous messages, and a
 *     gap (a snapshot jumped the replica) restarts it;
 *   - over a bound, eviction takes the oldest message of the replica that
 *     holds the most messages (or bytes): one writer flooding the log
 *     flushes only its own history;
 *   - the fifo lists what is logged in apply order (crdt__log_next),
 *     however writers interleave, runs restart and bounds evict, and it
 *     takes an entry per run of one writer's consecutive pushes, not one
 *     per message: a partly evicted entry serves the rest of its run;
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

/* The byte replica r's message c is made of: never 0x00, which only a
 * spliced entry starts with (msglog.h). */
static uint8_t
fb(uint64_t c)
{
	return (uint8_t)(c % 255 + 1);
}

/* Log replica r's message c: `len` bytes, each fb(c). */
static void
push(uint32_t r, uint64_t c, size_t len)
{
	uint8_t buf[256];
	memset(buf, fb(c), len);
	cr_assert_eq(crdt__log_reserve(&l, r, len), 0);
	crdt__log_push(&l, r, c, buf, len, NULL);
}

static bool
has(uint32_t r, uint64_t c)
{
	crdt__lent e;
	if (!crdt__log_get(&l, r, c, &e)) {
		cr_assert(!crdt__log_has(&l, r, c));
		return false;
	}
	cr_assert(crdt__log_has(&l, r, c));
	cr_assert(e.n == 0 || e.p[0] == fb(c));
	return true;
}

/* A push, in the order made. */
typedef struct {
	uint32_t r;
	uint64_t c;
	size_t len;
} pushed;

/* What crdt__log_next walks is exactly the pushes, in their order, that
 * the log still holds (each counter of a replica pushed once: restarts
 * only jump forward), with their bytes. */
static void
assert_order(const pushed *order, size_t n)
{
	crdt__log_iter it;
	uint32_t r;
	uint64_t c;
	crdt__lent e;
	size_t k = 0, walked = 0;
	crdt__log_iter_init(&it, &l);
	while (crdt__log_next(&it, &r, &c, &e)) {
		while (k < n && !has(order[k].r, order[k].c))
			k++;
		cr_assert_lt(k, n, "walked %zu: replica %u message %llu "
				   "was not pushed or is out of order",
		    walked, r, (unsigned long long)c);
		cr_assert(order[k].r == r && order[k].c == c,
		    "walked %zu: replica %u message %llu, not replica %u "
		    "message %llu", walked, r, (unsigned long long)c,
		    order[k].r, (unsigned long long)order[k].c);
		cr_assert_eq(e.n, order[k].len);
		cr_assert(e.n == 0 || e.p[0] == fb(c));
		k++;
		walked++;
	}
	cr_assert_eq(walked, l.count, "the walk missed logged messages");
	/* The walk's end is sticky. */
	cr_assert(!crdt__log_next(&it, &r, &c, &e));
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
	static pushed order[2000];
	size_t n = 0;
	for (size_t i = 0; i < 2000; i++) {
		uint32_t r = (uint32_t)test_rng_below(&rng, 4);
		size_t len = 1 + (size_t)test_rng_below(&rng, 16);
		push(r, next[r], len);
		order[n++] = (pushed){ r, next[r]++, len };
	}
	cr_assert_eq(l.count, 64);
	assert_order(order, n);
	size_t logged = 0;
	for (size_t i = 0; i < n; i++)
		logged += has(order[i].r, order[i].c);
	cr_assert_eq(logged, 64);
	/* Compaction keeps the fifo within a small multiple of the log. */
	cr_assert_leq(l.fifo_n, 2 * l.count + 16);
	close_log();
}

Test(msglog, one_writer_takes_one_fifo_entry)
{
	open_log(1000000, 1 << 30, 3);
	static pushed order[30000];
	size_t n = 0;
	for (uint64_t c = 1; c <= 20000; c++) {
		push(0, c, 100);
		order[n++] = (pushed){ 0, c, 100 };
	}
	cr_assert_eq(l.fifo_n, 1);
	cr_assert_eq(l.fifo[l.fifo_start].n, 20000);
	/* Batches from two peers: an entry per batch. */
	uint64_t next[3] = { 20001, 1, 1 };
	for (size_t b = 0; b < 30; b++) {
		uint32_t r = (uint32_t)(1 + b % 2);
		for (size_t j = 0; j < 100; j++) {
			push(r, next[r], 10);
			order[n++] = (pushed){ r, next[r]++, 10 };
		}
	}
	cr_assert_eq(l.fifo_n, 31);
	assert_order(order, n);
	close_log();
}

Test(msglog, a_partly_evicted_entry_serves_the_rest_of_its_run)
{
	static pushed order[400];
	size_t n = 0;
	/* By message count: one entry, its oldest messages gone. */
	open_log(10, 1 << 20, 2);
	for (uint64_t c = 1; c <= 30; c++) {
		push(0, c, 8);
		order[n++] = (pushed){ 0, c, 8 };
	}
	cr_assert_eq(l.fifo_n, 1);
	cr_assert(!has(0, 20) && has(0, 21));
	assert_order(order, n);
	/* Another writer between two of its entries: the flooder's
	 * oldest go, from the first entry, then the second. */
	for (uint64_t c = 1; c <= 4; c++) {
		push(1, c, 8);
		order[n++] = (pushed){ 1, c, 8 };
	}
	for (uint64_t c = 31; c <= 33; c++) {
		push(0, c, 8);
		order[n++] = (pushed){ 0, c, 8 };
	}
	cr_assert_eq(l.fifo_n, 3);
	cr_assert(!has(0, 27) && has(0, 28) && has(1, 1));
	assert_order(order, n);
	close_log();

	/* By bytes: a long message of another writer pushes out most of
	 * the run of short ones. */
	n = 0;
	open_log(1000, 1000, 2);
	for (uint64_t c = 1; c <= 50; c++) {
		push(0, c, 19);
		order[n++] = (pushed){ 0, c, 19 };
	}
	cr_assert_eq(l.count, 50);
	push(1, 1, 250);
	order[n++] = (pushed){ 1, 1, 250 };
	cr_assert(!has(0, 11) && has(0, 12) && has(1, 1));
	cr_assert_eq(l.fifo_n, 2);
	assert_order(order, n);
	close_log();
}

Test(msglog, a_restarted_run_is_walked_from_its_new_start)
{
	static pushed order[100];
	size_t n = 0;
	open_log(100, 1 << 20, 2);
	for (uint64_t c = 1; c <= 5; c++) {
		push(0, c, 4);
		order[n++] = (pushed){ 0, c, 4 };
	}
	push(1, 1, 4);
	order[n++] = (pushed){ 1, 1, 4 };
	/* A gap: the old run goes, the new one has an entry of its own. */
	for (uint64_t c = 10; c <= 12; c++) {
		push(0, c, 4);
		order[n++] = (pushed){ 0, c, 4 };
	}
	assert_order(order, n);
	/* A reset to the counter after the entry's last: the next push
	 * extends the entry, and the walk gives only what the run holds. */
	crdt__log_reset(&l, 0, 13);
	assert_order(order, n);
	size_t entries = l.fifo_n;
	push(0, 13, 4);
	order[n++] = (pushed){ 0, 13, 4 };
	cr_assert_eq(l.fifo_n, entries);
	cr_assert(!has(0, 12) && has(0, 13));
	assert_order(order, n);
	/* A reset ahead, then its run. */
	crdt__log_reset(&l, 0, 40);
	for (uint64_t c = 40; c <= 42; c++) {
		push(0, c, 4);
		order[n++] = (pushed){ 0, c, 4 };
	}
	push(1, 2, 4);
	order[n++] = (pushed){ 1, 2, 4 };
	assert_order(order, n);
	cr_assert_eq(l.count, 5);
	close_log();
}

Test(msglog, the_fifo_order_survives_restarts_evictions_and_compaction)
{
	test_rng rng;
	test_rng_init(&rng, test_seed(UINT64_C(0xf1f0)));
	/* Both bounds bite; writers interleave singly and in batches;
	 * runs restart (gaps, resets). Checked against the pushes. */
	open_log(150, 3000, 5);
	uint64_t next[5] = { 1, 1, 1, 1, 1 };
	static pushed order[20000];
	size_t n = 0;
	while (n < 19000) {
		uint32_t r = (uint32_t)test_rng_below(&rng, 5);
		uint64_t roll = test_rng_below(&rng, 100);
		if (roll == 0) {
			next[r] += 1 + test_rng_below(&rng, 5);
			crdt__log_reset(&l, r, next[r]);
		} else if (roll == 1) {
			next[r] += 1 + test_rng_below(&rng, 5); /* a gap */
		}
		size_t batch = roll < 30 ? 1 + (size_t)test_rng_below(&rng, 40)
					 : 1;
		for (size_t j = 0; j < batch && n < 19000; j++) {
			size_t len = (size_t)test_rng_below(&rng, 60);
			push(r, next[r], len);
			order[n++] = (pushed){ r, next[r]++, len };
		}
		if (test_rng_below(&rng, 20) == 0)
			assert_order(order, n);
		cr_assert_leq(l.fifo_n, 2 * l.count + 16);
	}
	assert_order(order, n);
	close_log();
}

Test(msglog, a_full_fifo_entry_is_followed_by_a_new_one)
{
	/* An entry counts at most UINT32_MAX messages. Pushing that many
	 * takes too long: make the entry of the run's first message claim
	 * UINT32_MAX - 1 counters, ending at it (white-box). */
	const uint64_t c0 = (uint64_t)1 << 40;
	static pushed order[3];
	open_log(100, 1 << 20, 1);
	push(0, c0, 4);
	order[0] = (pushed){ 0, c0, 4 };
	cr_assert_eq(l.fifo_n, 1);
	crdt__fifo_ent *f = &l.fifo[l.fifo_start];
	f->n = UINT32_MAX - 1;
	f->c = c0 - (UINT32_MAX - 2);
	push(0, c0 + 1, 4);
	order[1] = (pushed){ 0, c0 + 1, 4 };
	cr_assert_eq(l.fifo_n, 1);
	cr_assert_eq(l.fifo[l.fifo_start].n, UINT32_MAX);
	push(0, c0 + 2, 4);
	order[2] = (pushed){ 0, c0 + 2, 4 };
	cr_assert_eq(l.fifo_n, 2, "a full entry grew");
	cr_assert_eq(l.fifo[l.fifo_start + 1].c, c0 + 2);
	cr_assert_eq(l.fifo[l.fifo_start + 1].n, 1);
	/* The walk skips the counters below the run. */
	assert_order(order, 3);
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

/*
 * Spliced entries (msglog.h): the message minus a range that lives at the
 * tail of an owner's string. Replica r's message c is `len` bytes of
 * spliced_msg(); its range [at, at + hole) is also the tail of base[c].
 */
#define SPL_N 40
static uint8_t spl_base[SPL_N + 1][300], spl_moved[SPL_N + 1][300];

static void
spliced_msg(uint64_t c, uint8_t *m, size_t len)
{
	for (size_t i = 0; i < len; i++)
		m[i] = (uint8_t)(c * 13 + i * 5 + 1);
}

/* Push message c (len bytes, hole of `hole` at `at`) spliced, its base
 * being `off` bytes of other data and then the hole's bytes. */
static void
push_spliced(uint32_t r, uint64_t c, size_t len, size_t at, size_t hole,
    size_t off)
{
	uint8_t m[2000];
	cr_assert_leq(len, sizeof m);
	spliced_msg(c, m, len);
	memset(spl_base[c], 0xee, off);
	memcpy(spl_base[c] + off, m + at, hole);
	crdt__log_splice s = { spl_base[c], off, at, hole, (uint32_t)c };
	size_t stored = crdt__log_stored_size(len, &s);
	cr_assert_lt(stored, len);
	cr_assert_eq(crdt__log_reserve(&l, r, stored), 0);
	crdt__log_push(&l, r, c, m, len, &s);
}

/* The log serves message c of `len` bytes, every way it can be read. */
static void
serves(uint32_t r, uint64_t c, size_t len)
{
	uint8_t want[2000];
	spliced_msg(c, want, len);
	crdt__lent e;
	cr_assert(crdt__log_get(&l, r, c, &e));
	cr_assert(crdt__lent_spliced(e));
	cr_assert_eq(crdt__lent_len(e), len);
	cr_assert(crdt__lent_eq(e, want, len));
	want[len / 2] ^= 1;
	cr_assert(!crdt__lent_eq(e, want, len));
	cr_assert(!crdt__lent_eq(e, want, len - 1));
	want[len / 2] ^= 1;
	crdt_buf b;
	crdt_buf_init(&b, test_alloc_hook());
	const uint8_t *p;
	size_t n;
	cr_assert_eq(crdt__lent_view(e, &b, &p, &n), 0);
	cr_assert(n == len && memcmp(p, want, len) == 0);
	cr_assert_eq(crdt_buf_append(&b, "x", 1), 0);
	cr_assert_eq(crdt__lent_append(e, &b), 0);
	cr_assert(b.len == 2 * len + 1 && memcmp(b.data + len + 1, want,
	    len) == 0);
	crdt_buf_fini(&b);
}

Test(msglog, spliced_entries_serve_the_message_and_count_its_bytes)
{
	open_log(100, 1 << 20, 2);
	/* A hole at the front, in the middle, at the end; a long message
	 * (a block of its own) and short ones (in chunks). */
	push_spliced(0, 1, 100, 0, 60, 5);
	push_spliced(0, 2, 100, 20, 50, 0);
	push_spliced(0, 3, 100, 40, 60, 200);
	push_spliced(0, 4, 1800, 30, 200, 7);
	push(1, 1, 50);
	cr_assert_eq(crdt__log_spliced(&l), 4);
	cr_assert_eq(l.bytes, 100 + 100 + 100 + 1800 + 50);
	serves(0, 1, 100);
	serves(0, 2, 100);
	serves(0, 3, 100);
	serves(0, 4, 1800);
	cr_assert(has(1, 1));
	/* The fifo walk hands out the entries to read alike. */
	crdt__log_iter it;
	uint32_t r;
	uint64_t c;
	crdt__lent e;
	size_t total = 0;
	crdt__log_iter_init(&it, &l);
	while (crdt__log_next(&it, &r, &c, &e))
		total += crdt__lent_len(e);
	cr_assert_eq(total, l.bytes);
	close_log();
}

Test(msglog, the_byte_bound_counts_a_spliced_message_whole)
{
	/* Room for 2 messages of 100 bytes, though each stores ~50. */
	open_log(100, 250, 1);
	push_spliced(0, 1, 100, 10, 60, 0);
	push_spliced(0, 2, 100, 10, 60, 0);
	cr_assert_eq(l.count, 2);
	push_spliced(0, 3, 100, 10, 60, 0);
	cr_assert_eq(l.count, 2);
	cr_assert(!has(0, 1));
	cr_assert_eq(l.bytes, 200);
	cr_assert_eq(crdt__log_spliced(&l), 2);
	serves(0, 2, 100);
	serves(0, 3, 100);
	crdt__log_reset(&l, 0, 10);
	cr_assert_eq(crdt__log_spliced(&l), 0);
	cr_assert_eq(l.bytes, 0);
	close_log();
}

static const uint8_t *
move_base(void *ud, uint32_t tag, const uint8_t *base, size_t len)
{
	uint64_t lost = *(const uint64_t *)ud;
	cr_assert_lt(tag, (uint32_t)SPL_N);
	cr_assert(base == spl_base[tag], "entry %u: another base", tag);
	cr_assert_eq(len, 3 + 50);
	if (tag == lost)
		return NULL;
	memcpy(spl_moved[tag], base, len);
	return spl_moved[tag];
}

/* Replica 0: counters 1..3, replica 1: 11..13 (the base of counter c
 * is spl_base[c]), replica 2 one plain message. */
static void
fill_for_repoint(void)
{
	open_log(100, 1 << 20, 3);
	for (uint64_t c = 1; c <= 3; c++)
		push_spliced(0, c, 90, 15, 50, 3);
	for (uint64_t c = 11; c <= 13; c++)
		push_spliced(1, c, 90, 15, 50, 3);
	push(2, 1, 30);
}

Test(msglog, repointing_moves_every_base)
{
	fill_for_repoint();
	uint64_t lost = 99;
	crdt__log_repoint(&l, move_base, &lost);
	/* The old bases are gone: scribble over them. */
	memset(spl_base, 0x5a, sizeof spl_base);
	for (uint64_t c = 1; c <= 13; c += c == 3 ? 8 : 1) {
		uint32_t r = c < 10 ? 0 : 1;
		crdt__lent e;
		cr_assert(crdt__log_get(&l, r, c, &e));
		cr_assert(crdt__lent_hdr(e).base == spl_moved[c]);
		serves(r, c, 90);
	}
	cr_assert_eq(crdt__log_spliced(&l), 6);
	cr_assert(has(2, 1));
	close_log();
}

Test(msglog, a_base_its_owner_lost_empties_that_run)
{
	fill_for_repoint();
	uint64_t lost = 12;
	crdt__log_repoint(&l, move_base, &lost);
	/* Replica 1's run is emptied, its next counter kept; nothing else
	 * moves, and no entry is left pointing at the old bases. */
	memset(spl_base, 0x5a, sizeof spl_base);
	cr_assert_eq(l.r[1].n, 0);
	cr_assert_eq(l.r[1].lo, 14);
	cr_assert_eq(crdt__log_spliced(&l), 3);
	cr_assert_eq(l.count, 4);
	cr_assert_eq(l.bytes, 3 * 90 + 30);
	cr_assert(has(2, 1));
	for (uint64_t c = 1; c <= 3; c++)
		serves(0, c, 90);
	crdt__log_iter it;
	uint32_t r;
	uint64_t c;
	crdt__lent e;
	size_t n = 0;
	crdt__log_iter_init(&it, &l);
	while (crdt__log_next(&it, &r, &c, &e)) {
		cr_assert_neq(r, 1);
		n++;
	}
	cr_assert_eq(n, 4);
	close_log();
}
