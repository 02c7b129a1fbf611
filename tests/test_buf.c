/*
 * crdt_buf: the growable output buffer every encoder appends to. Its
 * contract matters to every encoder's "out->len restored" promise.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_util.h"

TestSuite(buf, .init = test_alloc_reset);

Test(buf, init_gives_an_empty_buffer)
{
	crdt_buf b;
	memset(&b, 0x77, sizeof b);
	crdt_buf_init(&b, test_alloc_hook());
	cr_assert_null(b.data);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
	cr_assert_eq(test_alloc_live_blocks(), 0, "init must not allocate");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(buf, append_accumulates_bytes_in_order)
{
	crdt_buf b;
	crdt_buf_init(&b, test_alloc_hook());
	uint8_t want[5000];
	for (size_t i = 0; i < sizeof want; i++)
		want[i] = (uint8_t)(i * 7 + 3);
	/* Uneven chunks force several growth steps. */
	size_t off = 0, step = 1;
	while (off < sizeof want) {
		size_t n = step < sizeof want - off ? step : sizeof want - off;
		cr_assert_eq(crdt_buf_append(&b, want + off, n), 0);
		off += n;
		step = step * 3 + 1;
		cr_assert_eq(b.len, off);
		cr_assert_geq(b.cap, b.len);
	}
	cr_assert(bytes_eq(b.data, b.len, want, sizeof want));
	cr_assert_eq(test_alloc_live_blocks(), 1);
	cr_assert_eq(test_alloc_live_bytes(), b.cap,
	    "buffer accounts exactly its capacity");
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(buf, append_of_nothing_is_ok_and_allocates_nothing)
{
	crdt_buf b;
	crdt_buf_init(&b, test_alloc_hook());
	cr_assert_eq(crdt_buf_append(&b, NULL, 0), 0);
	cr_assert_eq(crdt_buf_append(&b, "x", 0), 0);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(test_alloc_calls(), 0);
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

Test(buf, clear_keeps_capacity_and_fini_leaves_it_reusable)
{
	crdt_buf b;
	crdt_buf_init(&b, test_alloc_hook());
	cr_assert_eq(crdt_buf_append(&b, "hello", 5), 0);
	size_t cap = b.cap;
	uint8_t *data = b.data;
	crdt_buf_clear(&b);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, cap);
	cr_assert_eq(b.data, data);
	cr_assert_eq(crdt_buf_append(&b, "ab", 2), 0);
	cr_assert(bytes_eq(b.data, b.len, "ab", 2));
	crdt_buf_fini(&b);
	cr_assert_null(b.data);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
	ASSERT_NO_LEAKS();
	/* Reusable after fini, still on the same allocator. */
	cr_assert_eq(crdt_buf_append(&b, "z", 1), 0);
	cr_assert_eq(test_alloc_live_blocks(), 1);
	crdt_buf_fini(&b);
	crdt_buf_fini(&b); /* twice is harmless */
	ASSERT_NO_LEAKS();
}

Test(buf, null_buffer_is_tolerated_or_refused)
{
	crdt_buf_init(NULL, NULL);
	crdt_buf_fini(NULL);
	crdt_buf_clear(NULL);
	cr_assert_eq(crdt_buf_append(NULL, "x", 1), CRDT_EINVAL);
	cr_assert_eq(crdt_buf_append(NULL, NULL, 0), CRDT_EINVAL);
}

Test(buf, append_of_null_data_with_length_is_einval)
{
	crdt_buf b;
	crdt_buf_init(&b, test_alloc_hook());
	cr_assert_eq(crdt_buf_append(&b, "abc", 3), 0);
	cr_assert_eq(crdt_buf_append(&b, NULL, 1), CRDT_EINVAL);
	cr_assert(bytes_eq(b.data, b.len, "abc", 3));
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

/* A zeroed, never-initialised buffer has no allocator: refuse rather than
 * call through a NULL hook. */
Test(buf, uninitialised_buffer_is_einval)
{
	crdt_buf b;
	memset(&b, 0, sizeof b);
	cr_assert_eq(crdt_buf_append(&b, "x", 1), CRDT_EINVAL);
	cr_assert_null(b.data);
}

Test(buf, null_allocator_means_libc)
{
	crdt_buf b;
	crdt_buf_init(&b, NULL);
	cr_assert_eq(crdt_buf_append(&b, "abc", 3), 0);
	cr_assert_eq(test_alloc_calls(), 0);
	cr_assert(bytes_eq(b.data, b.len, "abc", 3));
	crdt_buf_fini(&b);
}

/* A failed first allocation leaves the buffer empty; a failed growth
 * leaves the old contents, length and capacity intact (realloc counts). */
Test(buf, allocation_failure_leaves_buffer_intact)
{
	crdt_buf b;
	crdt_buf_init(&b, test_alloc_hook());
	test_alloc_fail_at(0);
	cr_assert_eq(crdt_buf_append(&b, "abc", 3), CRDT_ENOMEM);
	cr_assert(test_alloc_fired());
	cr_assert_null(b.data);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
	ASSERT_NO_LEAKS();

	cr_assert_eq(crdt_buf_append(&b, "abc", 3), 0);
	uint8_t big[1000];
	memset(big, 'q', sizeof big);
	size_t cap = b.cap;
	cr_assert_lt(cap, 3 + sizeof big, "test needs a growth step");
	test_alloc_fail_at(0);
	cr_assert_eq(crdt_buf_append(&b, big, sizeof big), CRDT_ENOMEM);
	cr_assert(test_alloc_fired());
	cr_assert_eq(b.len, 3);
	cr_assert_eq(b.cap, cap);
	cr_assert(bytes_eq(b.data, b.len, "abc", 3));
	cr_assert_eq(test_alloc_live_bytes(), cap);

	cr_assert_eq(crdt_buf_append(&b, big, sizeof big), 0);
	cr_assert_eq(b.len, 3 + sizeof big);
	cr_assert(bytes_eq(b.data, 3, "abc", 3));
	cr_assert_eq(b.data[b.len - 1], 'q');
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

/* Length arithmetic near SIZE_MAX must not wrap into a small allocation. */
Test(buf, huge_append_is_refused_without_overflow)
{
	crdt_buf b;
	crdt_buf_init(&b, test_alloc_hook());
	cr_assert_eq(crdt_buf_append(&b, "abc", 3), 0);
	static const uint8_t one = 1;
	int rc = crdt_buf_append(&b, &one, SIZE_MAX - 1);
	cr_assert_eq(rc, CRDT_ENOMEM, "got %s", crdt_err_name(rc));
	cr_assert_eq(b.len, 3);
	cr_assert(bytes_eq(b.data, b.len, "abc", 3));
	crdt_buf_fini(&b);
	ASSERT_NO_LEAKS();
}

/* ---- crdt_config (also in common.h) ---- */

Test(config, defaults_match_the_documentation)
{
	crdt_config c;
	memset(&c, 0x5c, sizeof c);
	crdt_config_default(&c);
	cr_assert(c.alloc.alloc != NULL && c.alloc.realloc != NULL &&
	    c.alloc.free != NULL, "libc hooks installed");
	cr_assert_eq(c.limits.max_bytes, (size_t)64 << 20);
	cr_assert_eq(c.limits.max_elems, (size_t)4 << 20);
	cr_assert_eq(c.limits.max_value_bytes, (size_t)1 << 20);
	cr_assert_eq(c.limits.max_depth, 16);
	cr_assert_eq(c.max_drift_ms, 60000);
	cr_assert_null(c.clock, "NULL = real clock");
	for (size_t i = 0; i < sizeof c.reserved; i++)
		cr_assert_eq(c.reserved[i], 0, "reserved[%zu]", i);
	crdt_config_default(NULL); /* must not crash */
}

/* An all-zero config is "every default": libc allocator, default limits. */
Test(config, zeroed_config_means_defaults)
{
	crdt_config c;
	memset(&c, 0, sizeof c);
	crdt_replica_id self = test_id(1);
	crdt_gset *s;
	cr_assert_eq(crdt_gset_new(&c, &self, &s), 0);
	cr_assert_eq(test_alloc_calls(), 0, "not on the counting hook");
	static uint8_t big[((size_t)1 << 20) + 1];
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_gset_add(s, big, sizeof big, &op), CRDT_ETOOBIG);
	cr_assert_eq(crdt_gset_add(s, big, sizeof big - 1, &op), 0,
	    "1 MiB exactly is the default value limit");
	crdt_buf_fini(&op);
	crdt_gset_free(s);
}
