/* Convergence: the input is a program over 3-5 replicas of a document
 * with every object type and a chat thread — local ops, then deliveries
 * of captured messages (any order, duplicates, drops), snapshot loads and
 * lossy sync rounds — then a heal. All replicas must end byte-identical. */
#include "fuzz.h"

#define POOL 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
round_trip(crdt_doc *x, crdt_doc *y, unsigned lose)
{
	crdt_buf f[4];
	crdt_doc *to[3] = { y, x, y };
	for (int i = 0; i < 4; i++)
		crdt_buf_init(&f[i], NULL);
	FUZZ_ASSERT(crdt_doc_sync_start(x, &f[0]) == 0);
	for (unsigned k = 0; k < 3 && f[k].len > 0; k++) {
		if (lose & (1u << k))
			break;
		int rc = crdt_doc_sync_handle(to[k], f[k].data, f[k].len, NULL,
		    &f[k + 1]);
		FUZZ_ASSERT(rc == 0 || rc == CRDT_EBUFFULL);
	}
	for (int i = 0; i < 4; i++)
		crdt_buf_fini(&f[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_in in = { data, size };
	size_t nr = 3 + fuzz_u8(&in) % 3;
	crdt_doc *r[5];
	crdt_buf pool[POOL];
	size_t np = 0;

	fuzz_ms = UINT64_C(1700000000000);
	for (size_t i = 0; i < nr; i++)
		r[i] = fuzz_doc((uint8_t)i);
	for (size_t i = 0; i < POOL; i++)
		crdt_buf_init(&pool[i], NULL);
	while (in.n >= 3) {
		uint8_t op = fuzz_u8(&in), a = fuzz_u8(&in), b = fuzz_u8(&in);
		crdt_doc *x = r[a % nr], *y = r[b % nr];
		switch (op % 8) {
		case 0:
		case 1:
		case 2:
		case 3: {
			const uint8_t *p;
			size_t n = fuzz_take(&in, b % 5, &p);
			crdt_buf *m = &pool[np % POOL];
			crdt_buf_clear(m);
			int rc = fuzz_local_op(x, op + b, p, n, m);
			FUZZ_ASSERT(rc == 0);
			np++;
			break;
		}
		case 4:
		case 5:
			if (np > 0) {
				crdt_buf *m = &pool[a % (np < POOL ? np : POOL)];
				int rc = crdt_doc_receive(y, m->data, m->len,
				    NULL);
				FUZZ_ASSERT(rc == 0 || rc == CRDT_EBUFFULL);
			}
			break;
		case 6: {
			crdt_buf s;
			fuzz_save(x, &s);
			int rc = crdt_doc_load(y, s.data, s.len, NULL);
			FUZZ_ASSERT(rc == 0 || rc == CRDT_EBUFFULL);
			crdt_buf_fini(&s);
			break;
		}
		default:
			if (x != y)
				round_trip(x, y, b >> 5);
		}
	}
	/* Heal through a hub: one loss-free round with each replica gives r[0]
	 * the union (a round carries both directions), a second spreads it.
	 * A star needs 2(n-1) rounds where all pairs need n(n-1); the sync
	 * target separately checks the protocol's bounded-rounds contract. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 1; i < nr; i++)
			round_trip(r[0], r[i], 0);
	crdt_buf hub;
	fuzz_save(r[0], &hub);
	for (size_t i = 1; i < nr; i++) {
		FUZZ_ASSERT(crdt_doc_buffered(r[i]) == 0);
		FUZZ_ASSERT(fuzz_matches(&hub, r[i]));
	}
	crdt_buf_fini(&hub);
	for (size_t i = 0; i < nr; i++)
		crdt_doc_free(r[i]);
	for (size_t i = 0; i < POOL; i++)
		crdt_buf_fini(&pool[i]);
	return 0;
}
