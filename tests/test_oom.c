/*
 * Allocation failure at every point (STYLE.md point 25): for each call
 * under test, fail allocation N = 0, 1, 2, ... until the call no longer
 * reaches an injected failure. Every failing run must return CRDT_ENOMEM,
 * leave the object(s) and the output buffer exactly as before (compared
 * on canonical encodings), stay usable (retrying the call succeeds and
 * gives the same result as an undisturbed run), and leak nothing.
 * Each loop runs twice: failing only allocation N ("one-shot"), and
 * failing N and every later one ("sticky", so error paths that allocate
 * during cleanup are caught too).
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_util.h"

#define PACK CRDT_HLC_PACK
#define MAX_N 100000L

/* "no object here": constructors/decoders must not write *out on error */
static int sentinel_;
#define SENTINEL ((void *)&sentinel_)

typedef enum { T_GSET, T_LWW, T_MAP, T_VCLOCK } kind;

typedef struct fx {
	kind k;
	crdt_config cfg;
	test_clock clk;
	void *obj;     /* object under test, or SENTINEL */
	void *src;     /* second object (merge source, clone output) */
	crdt_buf out;  /* op/encode output, on the counting allocator */
	crdt_buf in;   /* input bytes (libc) */
	crdt_buf seen; /* what a foreach visited (libc) */
} fx;

typedef struct oom_case {
	const char *name;
	kind k;
	void (*build)(fx *f);
	int (*call)(fx *f);
} oom_case;

static crdt_replica_id
id_(uint8_t n)
{
	return test_id(n);
}

static int
encode_obj(kind k, const void *o, crdt_buf *b)
{
	switch (k) {
	case T_GSET:
		return crdt_gset_encode(o, b);
	case T_LWW:
		return crdt_lww_encode(o, b);
	case T_MAP:
		return crdt_lww_map_encode(o, b);
	case T_VCLOCK:
		return crdt_vclock_encode(o, b);
	}
	return CRDT_EINVAL;
}

static void
free_obj(kind k, void *o)
{
	if (o == SENTINEL || o == NULL)
		return;
	switch (k) {
	case T_GSET:
		crdt_gset_free(o);
		break;
	case T_LWW:
		crdt_lww_free(o);
		break;
	case T_MAP:
		crdt_lww_map_free(o);
		break;
	case T_VCLOCK:
		crdt_vclock_free(o);
		break;
	}
}

/* Everything observable about the fixture, as bytes. Encoding may build a
 * lazily sorted view on the object's allocator, so it runs disarmed. */
static void
snapshot(const fx *f, crdt_buf *s)
{
	const void *objs[2] = { f->obj, f->src };
	tb_init(s);
	for (int i = 0; i < 2; i++) {
		if (objs[i] == SENTINEL || objs[i] == NULL) {
			mp_raw(s, i ? "|-" : "-", i ? 2 : 1);
			continue;
		}
		if (i)
			mp_raw(s, "|", 1);
		int rc = encode_obj(f->k, objs[i], s);
		cr_assert_eq(rc, 0, "snapshot encode: %s", crdt_err_name(rc));
	}
	mp_raw(s, "|out:", 5);
	mp_raw(s, f->out.data, f->out.len);
	mp_raw(s, "|seen:", 6);
	mp_raw(s, f->seen.data, f->seen.len);
}

static void
fx_init(fx *f, kind k)
{
	memset(f, 0, sizeof *f);
	f->k = k;
	f->clk.ms = 1000;
	test_config(&f->cfg, &f->clk);
	f->obj = SENTINEL;
	f->src = SENTINEL;
	crdt_buf_init(&f->out, test_alloc_hook());
	tb_init(&f->in);
	tb_init(&f->seen);
}

static void
fx_fini(fx *f)
{
	free_obj(f->k, f->obj);
	free_obj(f->k, f->src);
	crdt_buf_fini(&f->out);
	crdt_buf_fini(&f->in);
	crdt_buf_fini(&f->seen);
}

static bool
same(const crdt_buf *a, const crdt_buf *b)
{
	return bytes_eq(a->data, a->len, b->data, b->len);
}

static void
run_case(const oom_case *c, bool sticky)
{
	const char *mode = sticky ? "sticky" : "one-shot";
	fx f;
	crdt_buf ref_before, ref_after, s;

	/* Reference: the undisturbed call. */
	test_alloc_reset();
	fx_init(&f, c->k);
	c->build(&f);
	snapshot(&f, &ref_before);
	int rc = c->call(&f);
	cr_assert_eq(rc, 0, "%s: reference run: %s", c->name,
	    crdt_err_name(rc));
	snapshot(&f, &ref_after);
	fx_fini(&f);
	ASSERT_NO_LEAKS();

	for (long n = 0;; n++) {
		cr_assert_lt(n, MAX_N, "%s: no end to allocations", c->name);
		test_alloc_reset();
		fx_init(&f, c->k);
		c->build(&f);
		if (sticky)
			test_alloc_fail_from(n);
		else
			test_alloc_fail_at(n);
		rc = c->call(&f);
		bool fired = test_alloc_fired();
		test_alloc_disarm();
		snapshot(&f, &s);
		if (!fired || rc == 0) {
			/* Either the call is past its last allocation, or it
			 * absorbed a failure (allowed only when the result
			 * is the undisturbed one). */
			cr_assert_eq(rc, 0, "%s %s n=%ld: %s", c->name, mode,
			    n, crdt_err_name(rc));
			cr_assert(same(&s, &ref_after),
			    "%s %s n=%ld: result differs from reference",
			    c->name, mode, n);
		} else {
			cr_assert_eq(rc, CRDT_ENOMEM, "%s %s n=%ld: got %s",
			    c->name, mode, n, crdt_err_name(rc));
			cr_assert(same(&s, &ref_before),
			    "%s %s n=%ld: state changed by a failed call",
			    c->name, mode, n);
			/* Still usable: the same call now succeeds and
			 * gives the undisturbed result. */
			crdt_buf_fini(&s);
			rc = c->call(&f);
			cr_assert_eq(rc, 0, "%s %s n=%ld: retry: %s", c->name,
			    mode, n, crdt_err_name(rc));
			snapshot(&f, &s);
			cr_assert(same(&s, &ref_after),
			    "%s %s n=%ld: retry result differs", c->name,
			    mode, n);
		}
		crdt_buf_fini(&s);
		fx_fini(&f);
		cr_assert(test_alloc_live_bytes() == 0 &&
			test_alloc_live_blocks() == 0,
		    "%s %s n=%ld: %zu bytes in %zu blocks leaked", c->name,
		    mode, n, test_alloc_live_bytes(), test_alloc_live_blocks());
		if (!fired)
			break;
	}
	crdt_buf_fini(&ref_before);
	crdt_buf_fini(&ref_after);
}

static void
run_both(const oom_case *c)
{
	run_case(c, false);
	run_case(c, true);
	ASSERT_NO_LEAKS();
}

/* ---- G-Set ---- */

/* 12 local elements: the next insert grows the slot table (3/4 load of
 * 16), and the sorted view is stale. Plus one element from B. */
static void
gset_fixture(fx *f)
{
	crdt_replica_id a = id_(1);
	cr_assert_eq(crdt_gset_new(&f->cfg, &a, (crdt_gset **)&f->obj), 0);
	char e[8];
	for (int i = 0; i < 11; i++) {
		snprintf(e, sizeof e, "e%d", i);
		cr_assert_eq(crdt_gset_add(f->obj, e, strlen(e), &f->in), 0);
	}
	crdt_buf_clear(&f->in);
	mk_gset_op(&f->in, id_(2), 4, "from-b", 6);
	cr_assert_eq(crdt_gset_apply_op(f->obj, f->in.data, f->in.len), 0);
	crdt_buf_clear(&f->in);
}

/* The same, after an encode: the lazily sorted view is now built and
 * points into the entry array, which the call under test may move. */
static void
gset_fixture_warm(fx *f)
{
	gset_fixture(f);
	crdt_buf scratch;
	tb_init(&scratch);
	cr_assert_eq(crdt_gset_encode(f->obj, &scratch), 0);
	crdt_buf_fini(&scratch);
}

static void
gset_with_op_warm(fx *f)
{
	gset_fixture_warm(f);
	mk_gset_op(&f->in, id_(3), 9, "remote-new", 10);
}

static void
gset_empty(fx *f)
{
	(void)f;
}

static int
gset_new_call(fx *f)
{
	crdt_replica_id a = id_(1);
	return crdt_gset_new(&f->cfg, &a, (crdt_gset **)&f->obj);
}

static int
gset_add_new_call(fx *f)
{
	return crdt_gset_add(f->obj, "fresh", 5, &f->out);
}

static int
gset_add_existing_call(fx *f)
{
	return crdt_gset_add(f->obj, "e3", 2, &f->out);
}

static void
gset_with_op(fx *f)
{
	gset_fixture(f);
	mk_gset_op(&f->in, id_(3), 9, "remote-new", 10);
}

static int
gset_apply_call(fx *f)
{
	return crdt_gset_apply_op(f->obj, f->in.data, f->in.len);
}

static void
gset_with_src(fx *f)
{
	gset_fixture(f);
	crdt_replica_id b = id_(2);
	cr_assert_eq(crdt_gset_new(&f->cfg, &b, (crdt_gset **)&f->src), 0);
	char e[8];
	crdt_buf op;
	tb_init(&op);
	for (int i = 5; i < 20; i++) {
		snprintf(e, sizeof e, i < 10 ? "e%d" : "s%d", i);
		cr_assert_eq(crdt_gset_add(f->src, e, strlen(e), &op), 0);
	}
	crdt_buf_fini(&op);
}

static void
gset_with_src_warm(fx *f)
{
	gset_with_src(f);
	crdt_buf scratch;
	tb_init(&scratch);
	cr_assert_eq(crdt_gset_encode(f->obj, &scratch), 0);
	crdt_buf_fini(&scratch);
}

static int
gset_merge_call(fx *f)
{
	return crdt_gset_merge(f->obj, f->src);
}

static int
gset_encode_call(fx *f)
{
	return crdt_gset_encode(f->obj, &f->out);
}

static int
seen_elem(void *ud, const uint8_t *e, size_t len, crdt_dot dot)
{
	crdt_buf *s = ud;
	(void)dot;
	mp_bin(s, e, len);
	return 0;
}

static int
gset_foreach_call(fx *f)
{
	return crdt_gset_foreach(f->obj, seen_elem, &f->seen);
}

static void
gset_encoded(fx *f)
{
	gset_fixture(f);
	cr_assert_eq(crdt_gset_encode(f->obj, &f->in), 0);
	crdt_gset_free(f->obj);
	f->obj = SENTINEL;
}

static int
gset_decode_call(fx *f)
{
	crdt_replica_id a = id_(1);
	return crdt_gset_decode(&f->cfg, &a, f->in.data, f->in.len,
	    (crdt_gset **)&f->obj);
}

/* ---- LWW register ---- */

static void
lww_fixture(fx *f)
{
	crdt_replica_id a = id_(1);
	cr_assert_eq(crdt_lww_new(&f->cfg, &a, (crdt_lww **)&f->obj), 0);
	cr_assert_eq(crdt_lww_set(f->obj, "old", 3, &f->in), 0);
	crdt_buf_clear(&f->in);
}

static int
lww_new_call(fx *f)
{
	crdt_replica_id a = id_(1);
	return crdt_lww_new(&f->cfg, &a, (crdt_lww **)&f->obj);
}

static int
lww_set_call(fx *f)
{
	return crdt_lww_set(f->obj, "a newer value", 13, &f->out);
}

static int
lww_clear_call(fx *f)
{
	return crdt_lww_clear(f->obj, &f->out);
}

static void
lww_with_op(fx *f)
{
	lww_fixture(f);
	mk_lww_op(&f->in, PACK(2000, 1), id_(2), true, "remote", 6);
}

static int
lww_apply_call(fx *f)
{
	return crdt_lww_apply_op(f->obj, f->in.data, f->in.len);
}

static void
lww_with_src(fx *f)
{
	lww_fixture(f);
	crdt_replica_id b = id_(2);
	cr_assert_eq(crdt_lww_new(&f->cfg, &b, (crdt_lww **)&f->src), 0);
	f->clk.ms = 1500;
	crdt_buf op;
	tb_init(&op);
	cr_assert_eq(crdt_lww_set(f->src, "newer", 5, &op), 0);
	crdt_buf_fini(&op);
	f->clk.ms = 1000;
}

static int
lww_merge_call(fx *f)
{
	return crdt_lww_merge(f->obj, f->src);
}

static int
lww_encode_call(fx *f)
{
	return crdt_lww_encode(f->obj, &f->out);
}

static void
lww_encoded(fx *f)
{
	lww_fixture(f);
	cr_assert_eq(crdt_lww_encode(f->obj, &f->in), 0);
	crdt_lww_free(f->obj);
	f->obj = SENTINEL;
}

static int
lww_decode_call(fx *f)
{
	crdt_replica_id a = id_(1);
	return crdt_lww_decode(&f->cfg, &a, f->in.data, f->in.len,
	    (crdt_lww **)&f->obj);
}

/* ---- LWW map ---- */

static void
map_fixture(fx *f)
{
	crdt_replica_id a = id_(1);
	cr_assert_eq(crdt_lww_map_new(&f->cfg, &a, (crdt_lww_map **)&f->obj),
	    0);
	char k[8];
	for (int i = 0; i < 11; i++) {
		snprintf(k, sizeof k, "k%d", i);
		cr_assert_eq(crdt_lww_map_set(f->obj, k, strlen(k), "v", 1,
				 &f->in),
		    0);
	}
	cr_assert_eq(crdt_lww_map_remove(f->obj, "gone", 4, &f->in), 0);
	crdt_buf_clear(&f->in);
}

static void
map_fixture_warm(fx *f)
{
	map_fixture(f);
	crdt_buf scratch;
	tb_init(&scratch);
	cr_assert_eq(crdt_lww_map_encode(f->obj, &scratch), 0);
	crdt_buf_fini(&scratch);
}

static int
map_new_call(fx *f)
{
	crdt_replica_id a = id_(1);
	return crdt_lww_map_new(&f->cfg, &a, (crdt_lww_map **)&f->obj);
}

static int
map_set_new_call(fx *f)
{
	return crdt_lww_map_set(f->obj, "new-key", 7, "value", 5, &f->out);
}

static int
map_set_existing_call(fx *f)
{
	return crdt_lww_map_set(f->obj, "k4", 2, "replaced", 8, &f->out);
}

static int
map_remove_call(fx *f)
{
	return crdt_lww_map_remove(f->obj, "k7", 2, &f->out);
}

static void
map_with_op(fx *f)
{
	map_fixture(f);
	mk_map_op(&f->in, PACK(3000, 0), id_(3), true, "val", 3, "remote", 6);
}

static void
map_with_op_warm(fx *f)
{
	map_fixture_warm(f);
	mk_map_op(&f->in, PACK(3000, 0), id_(3), true, "val", 3, "remote", 6);
}

static int
map_apply_call(fx *f)
{
	return crdt_lww_map_apply_op(f->obj, f->in.data, f->in.len);
}

/* src: some keys new to dst, some newer, some older, a tombstone. */
static void
map_with_src(fx *f)
{
	map_fixture(f);
	crdt_replica_id b = id_(2);
	cr_assert_eq(crdt_lww_map_new(&f->cfg, &b, (crdt_lww_map **)&f->src),
	    0);
	crdt_buf op;
	tb_init(&op);
	char k[8];
	for (int i = 0; i < 16; i++) {
		f->clk.ms = i % 2 ? 900 : 1100;
		snprintf(k, sizeof k, i < 8 ? "k%d" : "n%d", i);
		cr_assert_eq(crdt_lww_map_set(f->src, k, strlen(k), "src", 3,
				 &op),
		    0);
	}
	cr_assert_eq(crdt_lww_map_remove(f->src, "k0", 2, &op), 0);
	crdt_buf_fini(&op);
	f->clk.ms = 1000;
}

static void
map_with_src_warm(fx *f)
{
	map_with_src(f);
	crdt_buf scratch;
	tb_init(&scratch);
	cr_assert_eq(crdt_lww_map_encode(f->obj, &scratch), 0);
	crdt_buf_fini(&scratch);
}

static int
map_merge_call(fx *f)
{
	return crdt_lww_map_merge(f->obj, f->src);
}

static int
map_encode_call(fx *f)
{
	return crdt_lww_map_encode(f->obj, &f->out);
}

static int
seen_kv(void *ud, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	crdt_buf *s = ud;
	mp_bin(s, k, kl);
	mp_bin(s, v, vl);
	return 0;
}

static int
map_foreach_call(fx *f)
{
	return crdt_lww_map_foreach(f->obj, seen_kv, &f->seen);
}

static void
map_encoded(fx *f)
{
	map_fixture(f);
	cr_assert_eq(crdt_lww_map_encode(f->obj, &f->in), 0);
	crdt_lww_map_free(f->obj);
	f->obj = SENTINEL;
}

static int
map_decode_call(fx *f)
{
	crdt_replica_id a = id_(1);
	return crdt_lww_map_decode(&f->cfg, &a, f->in.data, f->in.len,
	    (crdt_lww_map **)&f->obj);
}

/* ---- vector clock ---- */

/* 8 entries: exactly the first capacity step, so one more grows it. */
static void
vc_fixture(fx *f)
{
	cr_assert_eq(crdt_vclock_new(&f->cfg, (crdt_vclock **)&f->obj), 0);
	for (uint8_t i = 0; i < 8; i++) {
		crdt_replica_id id = id_((uint8_t)(10 + 2 * i));
		cr_assert_eq(crdt_vclock_set(f->obj, &id, 5 + i), 0);
	}
}

static int
vc_new_call(fx *f)
{
	return crdt_vclock_new(&f->cfg, (crdt_vclock **)&f->obj);
}

static int
vc_set_call(fx *f)
{
	crdt_replica_id id = id_(11);
	return crdt_vclock_set(f->obj, &id, 99);
}

static void
vc_with_src(fx *f)
{
	vc_fixture(f);
	cr_assert_eq(crdt_vclock_new(&f->cfg, (crdt_vclock **)&f->src), 0);
	for (uint8_t i = 0; i < 6; i++) {
		crdt_replica_id id = id_((uint8_t)(7 + 3 * i));
		cr_assert_eq(crdt_vclock_set(f->src, &id, 3 + 2 * i), 0);
	}
}

static int
vc_merge_call(fx *f)
{
	return crdt_vclock_merge(f->obj, f->src);
}

static int
vc_clone_call(fx *f)
{
	return crdt_vclock_clone(f->obj, (crdt_vclock **)&f->src);
}

static int
vc_encode_call(fx *f)
{
	return crdt_vclock_encode(f->obj, &f->out);
}

static void
vc_encoded(fx *f)
{
	vc_fixture(f);
	cr_assert_eq(crdt_vclock_encode(f->obj, &f->in), 0);
	crdt_vclock_free(f->obj);
	f->obj = SENTINEL;
}

static int
vc_decode_call(fx *f)
{
	return crdt_vclock_decode(&f->cfg, f->in.data, f->in.len,
	    (crdt_vclock **)&f->obj);
}

#define OOM_TEST(tname, kd, build, call)                                  \
	Test(oom, tname)                                                  \
	{                                                                 \
		static const oom_case c = { #tname, kd, build, call };    \
		run_both(&c);                                             \
	}

OOM_TEST(gset_new_fails_cleanly, T_GSET, gset_empty, gset_new_call)
OOM_TEST(gset_add_of_new_element_fails_cleanly, T_GSET, gset_fixture,
    gset_add_new_call)
OOM_TEST(gset_add_of_existing_element_fails_cleanly, T_GSET, gset_fixture,
    gset_add_existing_call)
OOM_TEST(gset_apply_op_fails_cleanly, T_GSET, gset_with_op, gset_apply_call)
/* "_after_encode": a failure after the entry array moved must not leave
 * the sorted view pointing into the old array. */
OOM_TEST(gset_add_after_encode_fails_cleanly, T_GSET, gset_fixture_warm,
    gset_add_new_call)
OOM_TEST(gset_apply_op_after_encode_fails_cleanly, T_GSET,
    gset_with_op_warm, gset_apply_call)
OOM_TEST(gset_merge_after_encode_fails_cleanly, T_GSET, gset_with_src_warm,
    gset_merge_call)
OOM_TEST(gset_merge_fails_cleanly, T_GSET, gset_with_src, gset_merge_call)
OOM_TEST(gset_encode_fails_cleanly, T_GSET, gset_fixture, gset_encode_call)
OOM_TEST(gset_foreach_fails_cleanly, T_GSET, gset_fixture, gset_foreach_call)
OOM_TEST(gset_decode_fails_cleanly, T_GSET, gset_encoded, gset_decode_call)

OOM_TEST(lww_new_fails_cleanly, T_LWW, gset_empty, lww_new_call)
OOM_TEST(lww_set_fails_cleanly, T_LWW, lww_fixture, lww_set_call)
OOM_TEST(lww_clear_fails_cleanly, T_LWW, lww_fixture, lww_clear_call)
OOM_TEST(lww_apply_op_fails_cleanly, T_LWW, lww_with_op, lww_apply_call)
OOM_TEST(lww_merge_fails_cleanly, T_LWW, lww_with_src, lww_merge_call)
OOM_TEST(lww_encode_fails_cleanly, T_LWW, lww_fixture, lww_encode_call)
OOM_TEST(lww_decode_fails_cleanly, T_LWW, lww_encoded, lww_decode_call)

OOM_TEST(map_new_fails_cleanly, T_MAP, gset_empty, map_new_call)
OOM_TEST(map_set_of_new_key_fails_cleanly, T_MAP, map_fixture,
    map_set_new_call)
OOM_TEST(map_set_of_existing_key_fails_cleanly, T_MAP, map_fixture,
    map_set_existing_call)
OOM_TEST(map_remove_fails_cleanly, T_MAP, map_fixture, map_remove_call)
OOM_TEST(map_apply_op_fails_cleanly, T_MAP, map_with_op, map_apply_call)
OOM_TEST(map_set_after_encode_fails_cleanly, T_MAP, map_fixture_warm,
    map_set_new_call)
OOM_TEST(map_apply_op_after_encode_fails_cleanly, T_MAP, map_with_op_warm,
    map_apply_call)
OOM_TEST(map_merge_after_encode_fails_cleanly, T_MAP, map_with_src_warm,
    map_merge_call)
OOM_TEST(map_merge_fails_cleanly, T_MAP, map_with_src, map_merge_call)
OOM_TEST(map_encode_fails_cleanly, T_MAP, map_fixture, map_encode_call)
OOM_TEST(map_foreach_fails_cleanly, T_MAP, map_fixture, map_foreach_call)
OOM_TEST(map_decode_fails_cleanly, T_MAP, map_encoded, map_decode_call)

OOM_TEST(vclock_new_fails_cleanly, T_VCLOCK, gset_empty, vc_new_call)
OOM_TEST(vclock_set_fails_cleanly, T_VCLOCK, vc_fixture, vc_set_call)
OOM_TEST(vclock_merge_fails_cleanly, T_VCLOCK, vc_with_src, vc_merge_call)
OOM_TEST(vclock_clone_fails_cleanly, T_VCLOCK, vc_fixture, vc_clone_call)
OOM_TEST(vclock_encode_fails_cleanly, T_VCLOCK, vc_fixture, vc_encode_call)
OOM_TEST(vclock_decode_fails_cleanly, T_VCLOCK, vc_encoded, vc_decode_call)

/* The driver itself must be able to fail: an allocator that injects
 * nothing would make every case above pass vacuously. */
Test(oom, injection_reaches_the_library)
{
	test_alloc_reset();
	fx f;
	fx_init(&f, T_GSET);
	test_alloc_fail_at(0);
	int rc = gset_new_call(&f);
	cr_assert(test_alloc_fired());
	cr_assert_eq(rc, CRDT_ENOMEM);
	cr_assert_eq(f.obj, SENTINEL);
	test_alloc_disarm();
	fx_fini(&f);
	ASSERT_NO_LEAKS();
}
