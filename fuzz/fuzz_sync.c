/* The sync protocol between two documents under fuzzer-chosen loss,
 * duplication and reordering of frames: nothing breaks, and afterwards at
 * most three loss-free rounds converge them. */
#include "fuzz.h"

#define QUEUE 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct frame {
	crdt_buf b;
	int to; /* 0 = A, 1 = B */
} frame;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_in in = { data, size };
	crdt_doc *d[2] = { fuzz_doc(0), fuzz_doc(1) };
	frame q[QUEUE];
	size_t nq = 0;
	crdt_buf m;

	fuzz_ms = UINT64_C(1700000000000);
	crdt_buf_init(&m, NULL);
	/* Histories: up to 12 ops on each side. */
	for (int side = 0; side < 2; side++) {
		unsigned n = fuzz_u8(&in) % 13;
		for (unsigned k = 0; k < n; k++) {
			const uint8_t *p;
			size_t len = fuzz_take(&in, 3, &p);
			crdt_buf_clear(&m);
			FUZZ_ASSERT(fuzz_local_op(d[side], fuzz_u8(&in), p, len,
			    &m) == 0);
		}
	}
	crdt_buf_fini(&m);
	for (size_t i = 0; i < QUEUE; i++)
		crdt_buf_init(&q[i].b, NULL);
	/* The exchange: start rounds, deliver / duplicate / drop frames. */
	while (in.n > 0) {
		uint8_t op = fuzz_u8(&in);
		size_t k = nq ? (size_t)(op >> 3) % nq : 0;
		switch (op % 4) {
		case 0: /* a side starts a round */
			if (nq < QUEUE) {
				int side = (op >> 2) & 1;
				crdt_buf_clear(&q[nq].b);
				FUZZ_ASSERT(crdt_doc_sync_start(d[side],
				    &q[nq].b) == 0);
				q[nq++].to = !side;
			}
			break;
		case 1: /* deliver frame k (its reply joins the queue) */
		case 2: /* deliver it but keep it queued: a duplicate */
			if (nq > 0) {
				crdt_buf reply;
				crdt_buf_init(&reply, NULL);
				int to = q[k].to;
				int rc = crdt_doc_sync_handle(d[to], q[k].b.data,
				    q[k].b.len, NULL, &reply);
				FUZZ_ASSERT(rc == 0 || rc == CRDT_EBUFFULL);
				if (op % 4 == 1) { /* consumed */
					crdt_buf t = q[k].b;
					q[k] = q[--nq];
					q[nq].b = t;
				}
				if (reply.len > 0 && nq < QUEUE) {
					crdt_buf_clear(&q[nq].b);
					FUZZ_ASSERT(crdt_buf_append(&q[nq].b,
					    reply.data, reply.len) == 0);
					q[nq++].to = !to;
				}
				crdt_buf_fini(&reply);
			}
			break;
		default: /* lose frame k */
			if (nq > 0) {
				crdt_buf t = q[k].b;
				q[k] = q[--nq];
				q[nq].b = t;
			}
		}
	}
	/* At most three loss-free rounds converge them. */
	for (int round = 0; round < 3 && !fuzz_same(d[0], d[1]); round++) {
		crdt_buf f[4];
		crdt_doc *to[3] = { d[1], d[0], d[1] };
		for (int i = 0; i < 4; i++)
			crdt_buf_init(&f[i], NULL);
		FUZZ_ASSERT(crdt_doc_sync_start(d[0], &f[0]) == 0);
		for (int i = 0; i < 3 && f[i].len > 0; i++)
			FUZZ_ASSERT(crdt_doc_sync_handle(to[i], f[i].data,
			    f[i].len, NULL, &f[i + 1]) == 0);
		for (int i = 0; i < 4; i++)
			crdt_buf_fini(&f[i]);
	}
	FUZZ_ASSERT(fuzz_same(d[0], d[1]));
	FUZZ_ASSERT(crdt_doc_buffered(d[0]) == 0 && crdt_doc_buffered(d[1]) == 0);
	for (size_t i = 0; i < QUEUE; i++)
		crdt_buf_fini(&q[i].b);
	crdt_doc_free(d[0]);
	crdt_doc_free(d[1]);
	return 0;
}
