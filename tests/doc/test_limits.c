/*
 * Every size a peer controls has a configured bound with a distinct error,
 * and hitting it changes nothing: message bytes, ops and deps per message
 * (elements), nesting, value (body) length, replicas, buffered messages
 * and bytes, snapshot size; and the message log's memory at its byte bound.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_util.h"

static test_clock clk = { UINT64_C(1700000000000), 0 };

static crdt_doc *
mk(uint8_t idn, const crdt_config *cfg)
{
	crdt_doc *d;
	crdt_replica_id id = test_id(idn);
	cr_assert_eq(crdt_doc_new(cfg, &id, &d), 0);
	cr_assert_eq(crdt_doc_register(d, "set", CRDT_OBJ_GSET, NULL), 0);
	cr_assert_eq(crdt_doc_register_chat(d, "chat", NULL, NULL), 0);
	return d;
}

static void
refused(crdt_doc *d, const crdt_buf *m, int want)
{
	crdt_buf before, after;
	tb_init(&before);
	tb_init(&after);
	cr_assert_eq(crdt_doc_save(d, &before), 0);
	int rc = crdt_doc_receive(d, m->data, m->len, NULL);
	cr_assert_eq(rc, want, "%s, want %s", crdt_err_name(rc),
	    crdt_err_name(want));
	cr_assert_eq(crdt_doc_save(d, &after), 0);
	cr_assert(bytes_eq(before.data, before.len, after.data, after.len));
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
}

static crdt_config
cfg_with(void (*tweak)(crdt_config *))
{
	crdt_config c;
	test_config(&c, &clk);
	tweak(&c);
	return c;
}

static void t_bytes(crdt_config *c) { c->limits.max_bytes = 64; }
static void t_elems(crdt_config *c) { c->limits.max_elems = 12; }
static void t_value(crdt_config *c) { c->limits.max_value_bytes = 8; }
static void t_depth(crdt_config *c) { c->limits.max_depth = 2; }
static void t_reps(crdt_config *c) { c->max_replicas = 3; }
static void t_none(crdt_config *c) { (void)c; }

Test(limits, message_bytes)
{
	crdt_config big = cfg_with(t_none), small = cfg_with(t_bytes);
	crdt_doc *a = mk(1, &big), *b = mk(2, &small);
	crdt_buf m;
	char body[100];
	memset(body, 'x', sizeof body);
	tb_init(&m);
	cr_assert_eq(crdt_doc_gset_add(a, 0, body, sizeof body, &m), 0);
	refused(b, &m, CRDT_ETOOBIG);
	crdt_buf_fini(&m);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

Test(limits, ops_per_message_and_deps_count_as_elements)
{
	crdt_config big = cfg_with(t_none), small = cfg_with(t_elems);
	crdt_doc *a = mk(1, &big), *b = mk(2, &small);
	crdt_buf m, x;
	tb_init(&m);
	tb_init(&x);
	cr_assert_eq(crdt_doc_begin(a), 0);
	for (int i = 0; i < 10; i++) {
		char e[8];
		int n = snprintf(e, sizeof e, "e%d", i);
		cr_assert_eq(crdt_doc_gset_add(a, 0, e, (size_t)n, NULL), 0);
	}
	cr_assert_eq(crdt_doc_commit(a, &m), 0);
	refused(b, &m, CRDT_ETOOBIG);
	/* Many dependencies: a hears from six replicas, then writes. */
	for (uint8_t r = 10; r < 16; r++) {
		crdt_doc *w = mk(r, &big);
		crdt_buf_clear(&x);
		cr_assert_eq(crdt_doc_gset_add(w, 0, "w", 1, &x), 0);
		cr_assert_eq(crdt_doc_receive(a, x.data, x.len, NULL), 0);
		crdt_doc_free(w);
	}
	crdt_buf_clear(&m);
	cr_assert_eq(crdt_doc_gset_add(a, 0, "after", 5, &m), 0);
	crdt_doc *c = mk(3, &small);
	refused(c, &m, CRDT_ETOOBIG);
	crdt_buf_fini(&m);
	crdt_buf_fini(&x);
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_doc_free(c);
}

Test(limits, body_length_and_local_values)
{
	crdt_config big = cfg_with(t_none), small = cfg_with(t_value);
	crdt_doc *a = mk(1, &big), *b = mk(2, &small);
	crdt_buf m;
	tb_init(&m);
	crdt_chat_post p = { "u", 1, "a long message body", 19, NULL, NULL, 0 };
	cr_assert_eq(crdt_doc_chat_post(a, 1, &p, NULL, &m), 0);
	refused(b, &m, CRDT_ETOOBIG);
	crdt_buf_clear(&m);
	cr_assert_eq(crdt_doc_chat_post(b, 1, &p, NULL, &m), CRDT_ETOOBIG,
	    "the same bound applies to local writes");
	cr_assert_eq(m.len, 0);
	crdt_buf_fini(&m);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

Test(limits, nesting_depth)
{
	crdt_config small = cfg_with(t_depth);
	crdt_doc *b = mk(2, &small);
	crdt_buf m;
	tb_init(&m);
	/* [[[[[ ... ]]]]] */
	for (int i = 0; i < 10; i++)
		mp_byte(&m, 0x91);
	mp_byte(&m, 0x90);
	int rc = crdt_doc_receive(b, m.data, m.len, NULL);
	cr_assert(rc == CRDT_ETOOBIG || rc == CRDT_EMALFORMED, "%s",
	    crdt_err_name(rc));
	crdt_buf_fini(&m);
	crdt_doc_free(b);
}

Test(limits, replicas_tracked_and_refused_senders_are_forgotten)
{
	crdt_config big = cfg_with(t_none), small = cfg_with(t_reps);
	crdt_doc *b = mk(2, &small);
	crdt_buf m;
	tb_init(&m);
	/* b knows itself; two more senders fit, the fourth does not. */
	for (uint8_t r = 10; r < 13; r++) {
		crdt_doc *w = mk(r, &big);
		crdt_buf_clear(&m);
		cr_assert_eq(crdt_doc_gset_add(w, 0, "w", 1, &m), 0);
		if (r < 12)
			cr_assert_eq(crdt_doc_receive(b, m.data, m.len, NULL), 0);
		else
			refused(b, &m, CRDT_ETOOBIG);
		crdt_doc_free(w);
	}
	crdt_buf_fini(&m);
	crdt_doc_free(b);
	/* A refused message (unknown object) does not use up a slot. */
	crdt_doc *c = mk(3, &small), *w = mk(20, &big);
	cr_assert_eq(crdt_doc_register(w, "extra", CRDT_OBJ_GSET, NULL), 0);
	crdt_buf bad, good;
	tb_init(&bad);
	tb_init(&good);
	cr_assert_eq(crdt_doc_gset_add(w, 2, "?", 1, &bad), 0);
	for (int i = 0; i < 5; i++) {
		/* distinct senders each time */
		crdt_doc *z = mk((uint8_t)(30 + i), &big);
		cr_assert_eq(crdt_doc_register(z, "extra", CRDT_OBJ_GSET, NULL),
		    0);
		crdt_buf_clear(&bad);
		cr_assert_eq(crdt_doc_gset_add(z, 2, "?", 1, &bad), 0);
		refused(c, &bad, CRDT_ESCHEMA);
		crdt_doc_free(z);
	}
	crdt_doc *ok = mk(40, &big);
	cr_assert_eq(crdt_doc_gset_add(ok, 0, "fine", 4, &good), 0);
	cr_assert_eq(crdt_doc_receive(c, good.data, good.len, NULL), 0);
	crdt_buf_fini(&bad);
	crdt_buf_fini(&good);
	crdt_doc_free(ok);
	crdt_doc_free(c);
	crdt_doc_free(w);
}

Test(limits, snapshot_size)
{
	crdt_config big = cfg_with(t_none), small = cfg_with(t_bytes);
	crdt_doc *a = mk(1, &big), *b = mk(2, &small);
	crdt_buf m, s;
	tb_init(&m);
	tb_init(&s);
	for (int i = 0; i < 10; i++) {
		char e[8];
		int n = snprintf(e, sizeof e, "e%d", i);
		cr_assert_eq(crdt_doc_gset_add(a, 0, e, (size_t)n, &m), 0);
	}
	cr_assert_eq(crdt_doc_save(a, &s), 0);
	cr_assert_eq(crdt_doc_load(b, s.data, s.len, NULL), CRDT_ETOOBIG);
	crdt_buf_fini(&m);
	crdt_buf_fini(&s);
	crdt_doc_free(a);
	crdt_doc_free(b);
}

/* ---- allocation before validation ----
 * A decoder sizes its tables from a count in the input. The count is
 * checked against the bytes that are left (each item has a minimum
 * encoded size), so the largest request stays a small multiple of the
 * input whatever the count claims. */

static size_t biggest;

static void *
big_alloc(void *ud, size_t n)
{
	(void)ud;
	if (n > biggest)
		biggest = n;
	return malloc(n);
}

static void *
big_realloc(void *ud, void *p, size_t o, size_t n)
{
	(void)ud;
	(void)o;
	if (n > biggest)
		biggest = n;
	return realloc(p, n);
}

static void
big_free(void *ud, void *p, size_t n)
{
	(void)ud;
	(void)n;
	free(p);
}

/* [1, kind, array16(count) of `fill` nil bytes]: a count that the bytes
 * can hold one byte each, but not as real items. */
static void
claim(crdt_buf *b, uint8_t kind, uint16_t count, size_t fill)
{
	uint8_t h[6] = { 0x93, 0x01, kind, 0xdc, (uint8_t)(count >> 8),
		(uint8_t)count };
	tb_init(b);
	cr_assert_eq(crdt_buf_append(b, h, sizeof h), 0);
	for (size_t i = 0; i < fill; i++)
		cr_assert_eq(crdt_buf_append(b, "\xc0", 1), 0);
}

Test(limits, decoders_allocate_a_small_multiple_of_their_input)
{
	static const crdt_allocator hook = { big_alloc, big_realloc, big_free,
		NULL };
	crdt_config c;
	crdt_replica_id self = test_id(1);
	test_config(&c, &clk);
	c.alloc = hook;
	const size_t n = 60000; /* divisible by 2, 3 and 4 */
	crdt_buf b;

	/* G-Set: a triplet takes >= 20 bytes, a table entry 48 + slots. */
	claim(&b, 1, (uint16_t)n, n);
	biggest = 0;
	crdt_gset *s = NULL;
	cr_assert_eq(crdt_gset_decode(&c, &self, b.data, b.len, &s),
	    CRDT_EMALFORMED);
	cr_assert(biggest <= 4 * b.len, "gset: %zu bytes for %zu of input",
	    biggest, b.len);
	crdt_buf_fini(&b);
	/* LWW map: an entry takes >= 21 bytes. */
	claim(&b, 3, (uint16_t)n, n);
	biggest = 0;
	crdt_lww_map *m = NULL;
	cr_assert_eq(crdt_lww_map_decode(&c, &self, b.data, b.len, &m),
	    CRDT_EMALFORMED);
	cr_assert(biggest <= 4 * b.len, "map: %zu bytes for %zu of input",
	    biggest, b.len);
	crdt_buf_fini(&b);
	/* Vector clock: a pair takes >= 19 bytes. */
	claim(&b, 4, (uint16_t)n, n);
	biggest = 0;
	crdt_vclock *v = NULL;
	cr_assert_eq(crdt_vclock_decode(&c, b.data, b.len, &v),
	    CRDT_EMALFORMED);
	cr_assert(biggest <= 4 * b.len, "vclock: %zu bytes for %zu of input",
	    biggest, b.len);
	crdt_buf_fini(&b);
}

/*
 * Memory is bounded by what is held, not by what once waited: once a
 * reversed delivery has drained the causal buffer, the replica holds no
 * more than one that got the same messages in order (the buffer's
 * message table, dot index and large wait heaps are given back).
 */
Test(limits, causal_buffer_gives_its_memory_back_once_drained)
{
	crdt_config c, plain;
	test_config(&c, &clk);
	plain = c;
	memset(&plain.alloc, 0, sizeof plain.alloc); /* malloc: not counted */
	crdt_doc *a = mk(1, &plain);
	crdt_buf all;
	size_t off[201];
	tb_init(&all);
	off[0] = 0;
	for (int i = 0; i < 200; i++) {
		char v[16];
		int n = snprintf(v, sizeof v, "m%d", i);
		cr_assert_eq(crdt_doc_gset_add(a, 0, v, (size_t)n, &all), 0);
		off[i + 1] = all.len;
	}
	size_t live[2];
	for (int rev = 0; rev < 2; rev++) {
		test_alloc_reset();
		crdt_doc *b = mk(2, &c);
		for (int k = 0; k < 200; k++) {
			int i = rev ? 199 - k : k;
			cr_assert_eq(crdt_doc_receive(b, all.data + off[i],
					 off[i + 1] - off[i], NULL), 0);
		}
		cr_assert_eq(crdt_doc_buffered(b), 0);
		live[rev] = test_alloc_live_bytes();
		crdt_buf x, y;
		tb_init(&x);
		tb_init(&y);
		cr_assert_eq(crdt_doc_save(a, &x), 0);
		cr_assert_eq(crdt_doc_save(b, &y), 0);
		cr_assert(bytes_eq(x.data, x.len, y.data, y.len));
		crdt_buf_fini(&x);
		crdt_buf_fini(&y);
		crdt_doc_free(b);
		ASSERT_NO_LEAKS();
	}
	/* Less a drained wait heap's small reserve (buffer.c: 256 entries
	 * of 16 bytes for the one replica waited on), kept so that heaps
	 * that empty and refill are not regrown on every message; without
	 * the trim the table and index alone held 8x that here. */
	cr_assert_leq(live[1], live[0] + 256 * 16,
	    "drained: %zu bytes, in order: %zu", live[1], live[0]);
	crdt_buf_fini(&all);
	crdt_doc_free(a);
}

/* The message log keeps its copies in per-replica chunks freed as their
 * last message is evicted (crdt/msglog.h): over log_max_bytes, what the
 * document holds stops growing, and the bytes it serves are the bytes it
 * applied. One key set again and again keeps the state the same size, so
 * only the log could grow. */
Test(limits, the_message_log_holds_its_byte_bound)
{
	enum { N = 20000, VLEN = 100 };
	crdt_config c, plain;
	test_config(&c, &clk);
	c.log_max_bytes = 50000;
	plain = c;
	memset(&plain.alloc, 0, sizeof plain.alloc); /* malloc: not counted */
	crdt_doc *a = mk(1, &plain);
	uint32_t on;
	cr_assert_eq(crdt_doc_register(a, "m", CRDT_OBJ_MAP, &on), 0);
	crdt_buf all;
	static size_t off[N + 1];
	tb_init(&all);
	for (int i = 0; i < N; i++) {
		uint8_t v[VLEN];
		memset(v, i & 0xff, sizeof v);
		cr_assert_eq(crdt_doc_map_set(a, on, "k", 1, v, sizeof v, &all),
		    0);
		off[i + 1] = all.len;
	}
	test_alloc_reset();
	crdt_doc *b = mk(2, &c);
	cr_assert_eq(crdt_doc_register(b, "m", CRDT_OBJ_MAP, NULL), 0);
	size_t live_at = 0, peak = 0;
	for (int i = 0; i < N; i++) {
		cr_assert_eq(crdt_doc_receive(b, all.data + off[i],
				 off[i + 1] - off[i], NULL), 0);
		if (i == N / 4)
			live_at = test_alloc_live_bytes();
		if (i > N / 4 && test_alloc_live_bytes() > peak)
			peak = test_alloc_live_bytes();
	}
	/* Exactly the newest messages that fit the bound. */
	size_t k = crdt_doc_log_size(b);
	cr_assert_lt(k, (size_t)N);
	cr_assert_leq(off[N] - off[N - k], 50000);
	cr_assert_gt(off[N] - off[N - k - 1], 50000);
	/* From a quarter of the way on, the log was at its bound: what it
	 * holds more at any time is its chunks' slack (two partly used
	 * chunks, each no larger than the run, 50 KB) and the growth of the
	 * arrays of the fifo and the eviction heaps' reserve. */
	cr_assert_leq(peak, live_at + 2 * 50000 + 4096,
	    "at a quarter: %zu bytes, peak after: %zu", live_at, peak);
	/* The newest message is served as applied; the oldest were
	 * evicted. */
	crdt_replica_id ida = test_id(1);
	const uint8_t *p;
	size_t len;
	cr_assert_eq(crdt_doc_log_get(b, (crdt_dot){ ida, N }, &p, &len), 0);
	cr_assert(bytes_eq(p, len, all.data + off[N - 1], off[N] - off[N - 1]));
	cr_assert_eq(crdt_doc_log_get(b, (crdt_dot){ ida, 1 }, &p, &len),
	    CRDT_ENOTFOUND);
	crdt_doc_free(b);
	ASSERT_NO_LEAKS();
	crdt_buf_fini(&all);
	crdt_doc_free(a);
}
