/* crdt_doc_load of arbitrary bytes into a non-empty document: refused ⇒
 * byte-identical; accepted ⇒ loading it again changes nothing. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	crdt_doc *d = fuzz_doc(0);
	crdt_buf m, before, after, again;

	crdt_buf_init(&m, NULL);
	for (unsigned k = 0; k < 6; k++) {
		crdt_buf_clear(&m);
		if (fuzz_local_op(d, k, (const uint8_t *)"xy", 2, &m) != 0)
			abort();
	}
	crdt_buf_fini(&m);
	fuzz_save(d, &before);
	int rc = crdt_doc_load(d, data, size, NULL);
	fuzz_save(d, &after);
	if (rc != 0) {
		FUZZ_ASSERT(before.len == after.len &&
		    memcmp(before.data, after.data, before.len) == 0);
	} else {
		FUZZ_ASSERT(crdt_doc_load(d, data, size, NULL) == 0);
		fuzz_save(d, &again);
		FUZZ_ASSERT(again.len == after.len &&
		    memcmp(again.data, after.data, after.len) == 0);
		crdt_buf_fini(&again);
	}
	crdt_buf_fini(&before);
	crdt_buf_fini(&after);
	crdt_doc_free(d);
	return 0;
}
