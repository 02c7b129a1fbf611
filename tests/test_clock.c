/*
 * Replica IDs, dots, stamps and the hybrid logical clock. The HLC runs on
 * an injected physical clock (crdt_config.clock) so every case, including
 * clocks that jump backwards and the 2^48 ms limit, is deterministic.
 */
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"
#include "test_util.h"

#define PACK CRDT_HLC_PACK

static void
hlc_on(crdt_hlc *h, test_clock *clk, uint64_t drift)
{
	crdt_config cfg;
	crdt_config_default(&cfg);
	cfg.clock = test_clock_read;
	cfg.clock_ud = clk;
	if (drift != 0)
		cfg.max_drift_ms = drift;
	crdt_hlc_init(h, &cfg);
}

/* ---- replica IDs ---- */

Test(replica_id, random_ids_are_nonzero_and_distinct)
{
	static const crdt_replica_id zero;
	crdt_replica_id a, b;
	cr_assert_eq(crdt_replica_id_random(&a), 0);
	cr_assert_eq(crdt_replica_id_random(&b), 0);
	cr_assert_neq(memcmp(&a, &zero, sizeof a), 0);
	/* 2^-128 odds of a false failure. */
	cr_assert_neq(crdt_replica_id_cmp(&a, &b), 0);
}

Test(replica_id, random_with_null_is_einval)
{
	cr_assert_eq(crdt_replica_id_random(NULL), CRDT_EINVAL);
}

Test(replica_id, from_bytes_copies_sixteen_bytes)
{
	uint8_t raw[16];
	for (int i = 0; i < 16; i++)
		raw[i] = (uint8_t)(0xf0 + i);
	crdt_replica_id id;
	cr_assert_eq(crdt_replica_id_from_bytes(&id, raw, sizeof raw), 0);
	cr_assert_eq(memcmp(id.bytes, raw, 16), 0);
	/* One non-zero byte anywhere is enough. */
	uint8_t last[16] = { 0 };
	last[15] = 1;
	cr_assert_eq(crdt_replica_id_from_bytes(&id, last, 16), 0);
}

Test(replica_id, from_bytes_refuses_zero_wrong_length_and_null)
{
	uint8_t raw[17];
	memset(raw, 0x11, sizeof raw);
	static const uint8_t zero[16];
	crdt_replica_id id, before;
	memset(&id, 0xee, sizeof id);
	before = id;
	cr_assert_eq(crdt_replica_id_from_bytes(&id, zero, 16), CRDT_EINVAL);
	cr_assert_eq(crdt_replica_id_from_bytes(&id, raw, 15), CRDT_EINVAL);
	cr_assert_eq(crdt_replica_id_from_bytes(&id, raw, 17), CRDT_EINVAL);
	cr_assert_eq(crdt_replica_id_from_bytes(&id, raw, 0), CRDT_EINVAL);
	cr_assert_eq(crdt_replica_id_from_bytes(&id, NULL, 16), CRDT_EINVAL);
	cr_assert_eq(crdt_replica_id_from_bytes(NULL, raw, 16), CRDT_EINVAL);
	cr_assert_eq(memcmp(&id, &before, sizeof id), 0,
	    "out must be untouched on failure");
}

Test(replica_id, cmp_is_memcmp_order)
{
	crdt_replica_id a = test_id(1), b = test_id(2), c = test_id(1);
	cr_assert_lt(crdt_replica_id_cmp(&a, &b), 0);
	cr_assert_gt(crdt_replica_id_cmp(&b, &a), 0);
	cr_assert_eq(crdt_replica_id_cmp(&a, &c), 0);
	/* Earlier bytes dominate; bytes compare unsigned. */
	crdt_replica_id x = test_id(1), y = test_id(1);
	x.bytes[0] = 0x80;
	y.bytes[0] = 0x7f;
	y.bytes[15] = 0xff;
	cr_assert_gt(crdt_replica_id_cmp(&x, &y), 0);
}

Test(replica_id, hex_is_lowercase_and_terminated)
{
	crdt_replica_id id;
	for (int i = 0; i < 16; i++)
		id.bytes[i] = (uint8_t)(i * 0x11);
	id.bytes[15] = 0xab;
	char out[33];
	memset(out, 'X', sizeof out);
	crdt_replica_id_hex(&id, out);
	cr_assert_str_eq(out, "00112233445566778899aabbccddeeab");
}

/* ---- dots and stamps ---- */

Test(dot, cmp_orders_by_replica_then_counter)
{
	crdt_dot a1 = { test_id(1), 1 }, a2 = { test_id(1), 2 };
	crdt_dot b1 = { test_id(2), 1 };
	crdt_dot amax = { test_id(1), UINT64_MAX };
	cr_assert_lt(crdt_dot_cmp(a1, a2), 0);
	cr_assert_gt(crdt_dot_cmp(a2, a1), 0);
	cr_assert_lt(crdt_dot_cmp(amax, b1), 0, "replica outranks counter");
	cr_assert_gt(crdt_dot_cmp(b1, amax), 0);
	cr_assert_eq(crdt_dot_cmp(a2, a2), 0);
	/* Counters far apart must not be compared by (truncated)
	 * subtraction. */
	cr_assert_gt(crdt_dot_cmp(amax, a1), 0);
	crdt_dot big = { test_id(1), UINT64_C(1) << 32 };
	cr_assert_gt(crdt_dot_cmp(big, a1), 0);
}

Test(stamp, cmp_orders_by_hlc_then_replica)
{
	crdt_replica_id a = test_id(1), b = test_id(2);
	cr_assert_lt(crdt_stamp_cmp(5, &b, 6, &a), 0, "hlc first");
	cr_assert_gt(crdt_stamp_cmp(6, &a, 5, &b), 0);
	cr_assert_lt(crdt_stamp_cmp(5, &a, 5, &b), 0, "then replica");
	cr_assert_gt(crdt_stamp_cmp(5, &b, 5, &a), 0);
	cr_assert_eq(crdt_stamp_cmp(5, &a, 5, &a), 0);
	cr_assert_gt(crdt_stamp_cmp(UINT64_C(1) << 32, &a, 0, &b), 0,
	    "differences beyond 32 bits");
	cr_assert_gt(crdt_stamp_cmp(UINT64_MAX, &a, 0, &b), 0);
	cr_assert_lt(crdt_stamp_cmp(0, &b, UINT64_MAX, &a), 0);
}

/* ---- HLC ---- */

Test(hlc, packing_macros_split_ms_and_logical)
{
	uint64_t ts = PACK(123456, 0xBEEF);
	cr_assert_eq(CRDT_HLC_MS(ts), 123456);
	cr_assert_eq(CRDT_HLC_LOGICAL(ts), 0xBEEF);
	cr_assert_eq(CRDT_HLC_MS(UINT64_MAX), CRDT_HLC_MAX_MS);
	cr_assert_eq(CRDT_HLC_MAX_MS, (UINT64_C(1) << 48) - 1);
}

Test(hlc, starts_at_zero_and_reads_the_injected_clock)
{
	test_clock clk = { 4242, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 0);
	cr_assert_eq(crdt_hlc_last(&h), 0);
	cr_assert_eq(crdt_hlc_physical(&h), 4242);
	cr_assert_geq(clk.reads, 1);
	uint64_t ts;
	cr_assert_eq(crdt_hlc_now(&h, &ts), 0);
	cr_assert_eq(ts, PACK(4242, 0));
	cr_assert_eq(crdt_hlc_last(&h), ts);
}

Test(hlc, default_clock_is_wall_time)
{
	crdt_hlc h;
	crdt_hlc_init(&h, NULL);
	/* Wall time, not a tick count: within a second of time(NULL). The
	 * slack is on both sides because time() may read a coarse clock a
	 * tick behind CLOCK_REALTIME (it failed ~1 run in 12 with the bound
	 * at the second boundary). */
	uint64_t before = (uint64_t)time(NULL) * 1000;
	uint64_t ts;
	cr_assert_eq(crdt_hlc_now(&h, &ts), 0);
	uint64_t after = (uint64_t)time(NULL) * 1000;
	cr_assert_geq(CRDT_HLC_MS(ts) + 1000, before);
	cr_assert_leq(CRDT_HLC_MS(ts), after + 2000);
}

Test(hlc, now_increments_logical_within_one_millisecond)
{
	test_clock clk = { 1000, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 0);
	uint64_t ts;
	for (unsigned i = 0; i < 5; i++) {
		cr_assert_eq(crdt_hlc_now(&h, &ts), 0);
		cr_assert_eq(ts, PACK(1000, i));
	}
	clk.ms = 1001;
	cr_assert_eq(crdt_hlc_now(&h, &ts), 0);
	cr_assert_eq(ts, PACK(1001, 0), "new millisecond resets logical");
}

Test(hlc, now_stays_monotone_when_physical_clock_goes_backwards)
{
	test_clock clk = { 5000, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 0);
	uint64_t t1, t2, t3, t4;
	cr_assert_eq(crdt_hlc_now(&h, &t1), 0);
	clk.ms = 10;
	cr_assert_eq(crdt_hlc_now(&h, &t2), 0);
	cr_assert_eq(crdt_hlc_now(&h, &t3), 0);
	cr_assert_eq(t2, PACK(5000, 1));
	cr_assert_eq(t3, PACK(5000, 2));
	clk.ms = 5001;
	cr_assert_eq(crdt_hlc_now(&h, &t4), 0);
	cr_assert_eq(t4, PACK(5001, 0));
}

/* A full logical counter carries into the milliseconds: stamps keep
 * increasing, never wrap back to a smaller value. */
Test(hlc, logical_overflow_carries_into_milliseconds)
{
	test_clock clk = { 1000, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 0);
	uint64_t prev = 0, ts;
	for (unsigned long i = 0; i < 0x10000 + 10; i++) {
		cr_assert_eq(crdt_hlc_now(&h, &ts), 0, "step %lu", i);
		cr_assert_gt(ts, prev, "step %lu: %llx after %llx", i,
		    (unsigned long long)ts, (unsigned long long)prev);
		prev = ts;
	}
	cr_assert_eq(ts, PACK(1001, 9), "got %llx", (unsigned long long)ts);
	/* The physical clock catching up resumes physical stamps. */
	clk.ms = 1002;
	cr_assert_eq(crdt_hlc_now(&h, &ts), 0);
	cr_assert_eq(ts, PACK(1002, 0));
}

Test(hlc, update_with_full_logical_carries)
{
	test_clock clk = { 1000, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 0);
	uint64_t ts;
	cr_assert_eq(crdt_hlc_update(&h, PACK(1000, 0xFFFF), &ts), 0);
	cr_assert_eq(ts, PACK(1001, 0));
	cr_assert_eq(crdt_hlc_now(&h, &ts), 0);
	cr_assert_eq(ts, PACK(1001, 1));
}

Test(hlc, update_moves_past_remote_and_own_stamps)
{
	test_clock clk = { 1000, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 0);
	uint64_t ts;
	/* Remote ahead (within the drift bound). */
	cr_assert_eq(crdt_hlc_update(&h, PACK(1500, 7), &ts), 0);
	cr_assert_eq(ts, PACK(1500, 8));
	cr_assert_eq(crdt_hlc_last(&h), ts);
	/* Remote behind our last stamp: we still move forward by one. */
	cr_assert_eq(crdt_hlc_update(&h, PACK(900, 3), &ts), 0);
	cr_assert_eq(ts, PACK(1500, 9));
	/* Physical time ahead of both: physical wins. */
	clk.ms = 2000;
	cr_assert_eq(crdt_hlc_update(&h, PACK(1999, 0xFFFF), &ts), 0);
	cr_assert_eq(ts, PACK(2000, 0));
	/* A local stamp after an update is greater than the remote one. */
	cr_assert_eq(crdt_hlc_update(&h, PACK(2000, 40), NULL), 0);
	cr_assert_eq(crdt_hlc_now(&h, &ts), 0);
	cr_assert_gt(ts, PACK(2000, 40));
}

Test(hlc, update_beyond_drift_is_edrift_and_leaves_clock_unchanged)
{
	test_clock clk = { 1000, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 100);
	uint64_t ts;
	cr_assert_eq(crdt_hlc_now(&h, &ts), 0);
	uint64_t last = crdt_hlc_last(&h);
	uint64_t out = 0xdeadbeef;
	cr_assert_eq(crdt_hlc_update(&h, PACK(1101, 0), &out), CRDT_EDRIFT);
	cr_assert_eq(crdt_hlc_last(&h), last);
	cr_assert_eq(out, 0xdeadbeef, "out untouched on error");
	/* Exactly at the bound is accepted. */
	cr_assert_eq(crdt_hlc_update(&h, PACK(1100, 0xFFFE), &out), 0);
	cr_assert_eq(out, PACK(1100, 0xFFFF));
	/* Drift is measured from physical time, not from the last stamp. */
	cr_assert_eq(crdt_hlc_update(&h, PACK(1150, 0), &out), CRDT_EDRIFT);
	clk.ms = 1100;
	cr_assert_eq(crdt_hlc_update(&h, PACK(1150, 0), &out), 0);
	cr_assert_eq(out, PACK(1150, 1));
}

Test(hlc, physical_clock_past_48_bits_is_eoverflow)
{
	test_clock clk = { CRDT_HLC_MAX_MS + 1, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 0);
	uint64_t ts = 77;
	cr_assert_eq(crdt_hlc_now(&h, &ts), CRDT_EOVERFLOW);
	cr_assert_eq(ts, 77);
	cr_assert_eq(crdt_hlc_last(&h), 0);
	cr_assert_eq(crdt_hlc_update(&h, PACK(5, 0), &ts), CRDT_EOVERFLOW);
	cr_assert_eq(crdt_hlc_last(&h), 0);
	clk.ms = UINT64_MAX;
	cr_assert_eq(crdt_hlc_now(&h, &ts), CRDT_EOVERFLOW);
	/* The last representable millisecond still works. */
	clk.ms = CRDT_HLC_MAX_MS;
	cr_assert_eq(crdt_hlc_now(&h, &ts), 0);
	cr_assert_eq(ts, PACK(CRDT_HLC_MAX_MS, 0));
}

Test(hlc, exhausted_stamp_space_is_eoverflow_not_wraparound)
{
	test_clock clk = { CRDT_HLC_MAX_MS, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 0);
	uint64_t ts;
	cr_assert_eq(crdt_hlc_update(&h, UINT64_MAX, &ts), CRDT_EOVERFLOW,
	    "nothing comes after UINT64_MAX");
	cr_assert_eq(crdt_hlc_last(&h), 0);
	cr_assert_eq(crdt_hlc_update(&h, UINT64_MAX - 1, &ts), 0);
	cr_assert_eq(ts, UINT64_MAX);
	cr_assert_eq(crdt_hlc_now(&h, &ts), CRDT_EOVERFLOW);
	cr_assert_eq(crdt_hlc_last(&h), UINT64_MAX);
}

Test(hlc, null_arguments_are_einval)
{
	test_clock clk = { 1000, 0 };
	crdt_hlc h;
	hlc_on(&h, &clk, 0);
	uint64_t ts;
	cr_assert_eq(crdt_hlc_now(NULL, &ts), CRDT_EINVAL);
	cr_assert_eq(crdt_hlc_now(&h, NULL), CRDT_EINVAL);
	cr_assert_eq(crdt_hlc_update(NULL, 5, &ts), CRDT_EINVAL);
	cr_assert_eq(crdt_hlc_last(&h), 0, "failed calls changed the clock");
	cr_assert_eq(crdt_hlc_last(NULL), 0);
	cr_assert_eq(crdt_hlc_physical(NULL), 0);
	crdt_hlc_init(NULL, NULL); /* must not crash */
}
