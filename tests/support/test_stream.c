#include "test_stream.h"

#include <criterion/criterion.h>

#include "test_util.h"

void
test_stream_add(test_stream *s, uint8_t rid, size_t count, size_t vlen,
    uint8_t tag)
{
	test_clock clk = { UINT64_C(1700000000000), 0 };
	crdt_config cfg;
	crdt_replica_id id = test_id(rid);
	crdt_doc *d;
	uint32_t reg;
	static uint8_t val[16384];

	cr_assert_leq(vlen, sizeof val);
	crdt_config_default(&cfg);
	cfg.clock = test_clock_read;
	cfg.clock_ud = &clk;
	cr_assert_eq(crdt_doc_new(&cfg, &id, &d), 0);
	cr_assert_eq(crdt_doc_register(d, "r", CRDT_OBJ_LWW, &reg), 0);
	for (size_t i = 0; i < count; i++) {
		cr_assert_lt(s->n, TEST_STREAM_MAX);
		for (size_t j = 0; j < vlen; j++)
			val[j] = (uint8_t)(tag + i + j * 7);
		clk.ms++;
		tb_init(&s->m[s->n]);
		cr_assert_eq(crdt_doc_lww_set(d, reg, val, vlen, &s->m[s->n]),
		    0);
		cr_assert_eq(crdt_msg_peek(s->m[s->n].data, s->m[s->n].len,
				 &s->dot[s->n], NULL),
		    0);
		s->n++;
	}
	crdt_doc_free(d);
}

void
test_stream_free(test_stream *s)
{
	for (size_t i = 0; i < s->n; i++)
		crdt_buf_fini(&s->m[i]);
	s->n = 0;
}

int
test_stream_put(crdt_store *st, const test_stream *s, size_t from, size_t n,
    size_t *added)
{
	static crdt_store_msg b[TEST_STREAM_MAX];
	cr_assert_leq(n, TEST_STREAM_MAX);
	for (size_t i = 0; i < n; i++) {
		b[i].bytes = s->m[from + i].data;
		b[i].len = s->m[from + i].len;
	}
	return crdt_store_append(st, b, n, added);
}

int
test_collect(void *ud, crdt_dot dot, const uint8_t *bytes, size_t len)
{
	test_got *g = ud;
	if (++g->calls == g->fail_at)
		return CRDT_ENOMEM;
	cr_assert_lt(g->n, TEST_STREAM_MAX);
	tb_init(&g->m[g->n]);
	cr_assert_eq(crdt_buf_append(&g->m[g->n], bytes, len), 0);
	g->dot[g->n] = dot;
	g->n++;
	g->bytes += len;
	return 0;
}

void
test_got_free(test_got *g)
{
	for (size_t i = 0; i < g->n; i++)
		crdt_buf_fini(&g->m[i]);
	g->n = 0;
}
