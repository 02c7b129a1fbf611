/* Every standalone decoder: never crashes; an accepted state re-encodes to
 * the input bytes; an accepted op applied twice changes nothing more. */
#include "fuzz.h"

static void
same_as_input(crdt_buf *re, const uint8_t *d, size_t n)
{
	FUZZ_ASSERT(re->len == n && memcmp(re->data, d, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	crdt_config cfg;
	crdt_buf re, a, b;
	crdt_replica_id self = fuzz_id(0);

	if (size < 1)
		return 0;
	uint8_t sel = data[0];
	data++;
	size--;
	crdt_config_default(&cfg);
	cfg.limits.max_bytes = 1 << 20;
	cfg.limits.max_elems = 1 << 16;
	crdt_buf_init(&re, NULL);
	crdt_buf_init(&a, NULL);
	crdt_buf_init(&b, NULL);
	switch (sel % 8) {
	case 0: {
		crdt_vclock *v;
		if (crdt_vclock_decode(&cfg, data, size, &v) == 0) {
			FUZZ_ASSERT(crdt_vclock_encode(v, &re) == 0);
			same_as_input(&re, data, size);
			crdt_vclock_free(v);
		}
		break;
	}
	case 1: {
		crdt_gset *s;
		if (crdt_gset_decode(&cfg, &self, data, size, &s) == 0) {
			FUZZ_ASSERT(crdt_gset_encode(s, &re) == 0);
			same_as_input(&re, data, size);
			crdt_gset_free(s);
		}
		break;
	}
	case 2: {
		crdt_lww *r;
		if (crdt_lww_decode(&cfg, &self, data, size, &r) == 0) {
			FUZZ_ASSERT(crdt_lww_encode(r, &re) == 0);
			same_as_input(&re, data, size);
			crdt_lww_free(r);
		}
		break;
	}
	case 3: {
		crdt_lww_map *m;
		if (crdt_lww_map_decode(&cfg, &self, data, size, &m) == 0) {
			FUZZ_ASSERT(crdt_lww_map_encode(m, &re) == 0);
			same_as_input(&re, data, size);
			crdt_lww_map_free(m);
		}
		break;
	}
	case 4: {
		crdt_gset *s;
		FUZZ_ASSERT(crdt_gset_new(&cfg, &self, &s) == 0);
		if (crdt_gset_apply_op(s, data, size) == 0) {
			FUZZ_ASSERT(crdt_gset_encode(s, &a) == 0);
			FUZZ_ASSERT(crdt_gset_apply_op(s, data, size) == 0);
			FUZZ_ASSERT(crdt_gset_encode(s, &b) == 0);
			FUZZ_ASSERT(a.len == b.len &&
			    memcmp(a.data, b.data, a.len) == 0);
		} else {
			FUZZ_ASSERT(crdt_gset_size(s) == 0);
		}
		crdt_gset_free(s);
		break;
	}
	case 5: {
		crdt_lww *r;
		FUZZ_ASSERT(crdt_lww_new(&cfg, &self, &r) == 0);
		if (crdt_lww_apply_op(r, data, size) == 0) {
			FUZZ_ASSERT(crdt_lww_encode(r, &a) == 0);
			FUZZ_ASSERT(crdt_lww_apply_op(r, data, size) == 0);
			FUZZ_ASSERT(crdt_lww_encode(r, &b) == 0);
			FUZZ_ASSERT(a.len == b.len &&
			    memcmp(a.data, b.data, a.len) == 0);
		}
		crdt_lww_free(r);
		break;
	}
	case 6: {
		crdt_lww_map *m;
		FUZZ_ASSERT(crdt_lww_map_new(&cfg, &self, &m) == 0);
		if (crdt_lww_map_apply_op(m, data, size) == 0) {
			FUZZ_ASSERT(crdt_lww_map_encode(m, &a) == 0);
			FUZZ_ASSERT(crdt_lww_map_apply_op(m, data, size) == 0);
			FUZZ_ASSERT(crdt_lww_map_encode(m, &b) == 0);
			FUZZ_ASSERT(a.len == b.len &&
			    memcmp(a.data, b.data, a.len) == 0);
		} else {
			FUZZ_ASSERT(crdt_lww_map_size(m) == 0);
		}
		crdt_lww_map_free(m);
		break;
	}
	default: {
		crdt_dot dot;
		uint64_t hlc;
		if (crdt_msg_peek(data, size, &dot, &hlc) == 0)
			FUZZ_ASSERT(dot.counter >= 1);
		break;
	}
	}
	crdt_buf_fini(&re);
	crdt_buf_fini(&a);
	crdt_buf_fini(&b);
	return 0;
}
