/* crdt_doc_load of arbitrary bytes into a non-empty document: refused ⇒
 * byte-identical; accepted ⇒ loading it again changes nothing. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Built once, reused while inputs are refused (see fuzz_receive.c). */
static crdt_doc *base;
static crdt_buf base_snap;

static void
build_base(void)
{
	crdt_buf m;

	fuzz_ms = UINT64_C(1700000000000);
	if (base != NULL) {
		crdt_doc_free(base);
		crdt_buf_fini(&base_snap);
	}
	base = fuzz_doc(0);
	crdt_buf_init(&m, NULL);
	for (unsigned k = 0; k < 9; k++) {
		crdt_buf_clear(&m);
		if (fuzz_local_op(base, k, (const uint8_t *)"xy", 2, &m) != 0)
			abort();
	}
	crdt_buf_fini(&m);
	fuzz_save(base, &base_snap);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	crdt_buf after, again;

	if (base == NULL)
		build_base();
	int rc = crdt_doc_load(base, data, size, NULL);
	fuzz_save(base, &after);
	if (rc != 0) {
		FUZZ_ASSERT(base_snap.len == after.len &&
		    memcmp(base_snap.data, after.data, after.len) == 0);
	} else {
		FUZZ_ASSERT(crdt_doc_load(base, data, size, NULL) == 0);
		fuzz_save(base, &again);
		FUZZ_ASSERT(again.len == after.len &&
		    memcmp(again.data, after.data, after.len) == 0);
		crdt_buf_fini(&again);
		build_base();
	}
	crdt_buf_fini(&after);
	return 0;
}
