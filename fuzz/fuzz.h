/* Shared helpers for the fuzz targets (each defines only
 * LLVMFuzzerTestOneInput). */
#ifndef CRDT_FUZZ_H
#define CRDT_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <crdt/crdt.h>

/* An oracle violation: report and abort so libFuzzer keeps the input. */
#define FUZZ_ASSERT(x)                                                  \
	do {                                                            \
		if (!(x)) {                                             \
			fprintf(stderr, "%s:%d: oracle failed: %s\n",   \
			    __FILE__, __LINE__, #x);                    \
			abort();                                        \
		}                                                       \
	} while (0)

/* Reads parameters from the input, front to back; zeros when exhausted. */
typedef struct fuzz_in {
	const uint8_t *p;
	size_t n;
} fuzz_in;

static inline uint8_t
fuzz_u8(fuzz_in *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

static inline size_t
fuzz_take(fuzz_in *in, size_t want, const uint8_t **out)
{
	size_t k = want < in->n ? want : in->n;
	*out = in->p;
	in->p += k;
	in->n -= k;
	return k;
}

static uint64_t fuzz_ms = UINT64_C(1700000000000);

static inline uint64_t
fuzz_clock(void *ud)
{
	(void)ud;
	return fuzz_ms;
}

static inline crdt_replica_id
fuzz_id(uint8_t n)
{
	uint8_t b[16] = { 0 };
	crdt_replica_id id;
	b[0] = (uint8_t)(n + 1);
	b[15] = 0x5a;
	if (crdt_replica_id_from_bytes(&id, b, sizeof b) != 0)
		abort();
	return id;
}

/* A document with every object type and a chat thread, bounded limits. */
static inline crdt_doc *
fuzz_doc(uint8_t n)
{
	crdt_config cfg;
	crdt_doc *d;
	crdt_replica_id id = fuzz_id(n);
	crdt_config_default(&cfg);
	cfg.clock = fuzz_clock;
	cfg.limits.max_bytes = 1 << 20;
	cfg.limits.max_elems = 1 << 16;
	cfg.max_buffered_msgs = 256;
	cfg.max_buffered_bytes = 1 << 20;
	cfg.log_max_msgs = 64;
	if (crdt_doc_new(&cfg, &id, &d) != 0 ||
	    crdt_doc_register(d, "set", CRDT_OBJ_GSET, NULL) != 0 ||
	    crdt_doc_register(d, "reg", CRDT_OBJ_LWW, NULL) != 0 ||
	    crdt_doc_register(d, "map", CRDT_OBJ_MAP, NULL) != 0 ||
	    crdt_doc_register_chat(d, "chat", NULL, NULL) != 0)
		abort();
	return d;
}

/* The k-th message ID of replica `r` (a chat post target; it may not
 * exist, which is fine: reactions to unknown messages are state too). */
static inline crdt_dot
fuzz_dot(uint8_t r, uint8_t k)
{
	crdt_dot d = { fuzz_id((uint8_t)(r % 5)), 1 + k % 8 };
	return d;
}

/* Apply local op number `k` (0..9) with a small payload: every object type
 * and every chat op a member can make. */
static inline int
fuzz_local_op(crdt_doc *d, unsigned k, const uint8_t *p, size_t n,
    crdt_buf *out)
{
	static const char *users[] = { "u", "v", "w" };
	const char *u = users[n > 0 ? p[0] % 3 : 0];
	crdt_dot ref = fuzz_dot(n > 1 ? p[1] : 0, n > 2 ? p[2] : 0);
	crdt_chat_post post = { u, 1, p, n, n > 3 ? &ref : NULL, NULL, 0 };
	fuzz_ms += 7;
	switch (k % 9) {
	case 0:
		return crdt_doc_gset_add(d, 0, p, n, out);
	case 1:
		return crdt_doc_lww_set(d, 1, p, n, out);
	case 2:
		return crdt_doc_lww_clear(d, 1, out);
	case 3:
		return crdt_doc_map_set(d, 2, p, n < 2 ? n : 2, p, n, out);
	case 4:
		return crdt_doc_map_remove(d, 2, p, n < 2 ? n : 2, out);
	case 5:
		return crdt_doc_chat_post(d, 3, &post, NULL, out);
	case 6:
		return crdt_doc_chat_react(d, 3, ref, u, 1, p, n < 2 ? n : 2,
		    n % 2 == 0, out);
	case 7:
		return crdt_doc_chat_mark_read(d, 3, u, 1, out);
	default:
		return crdt_doc_chat_member(d, 3, u, 1, n % 2 == 0, out);
	}
}

static inline void
fuzz_save(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf_init(out, NULL);
	if (crdt_doc_save(d, out) != 0)
		abort();
}

/* Whether `b` saves to exactly the bytes of `ref`. */
static inline int
fuzz_matches(const crdt_buf *ref, const crdt_doc *b)
{
	crdt_buf y;
	fuzz_save(b, &y);
	int eq = ref->len == y.len && memcmp(ref->data, y.data, y.len) == 0;
	crdt_buf_fini(&y);
	return eq;
}

static inline int
fuzz_same(const crdt_doc *a, const crdt_doc *b)
{
	crdt_buf x;
	fuzz_save(a, &x);
	int eq = fuzz_matches(&x, b);
	crdt_buf_fini(&x);
	return eq;
}

#endif /* CRDT_FUZZ_H */
