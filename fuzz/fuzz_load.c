/* crdt_doc_load of arbitrary bytes into a non-empty document: refused ⇒
 * byte-identical; accepted ⇒ loading it again changes nothing, and the
 * document's save loads into a fresh replica that saves the same bytes. */
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
		/* What a replica saves, any fresh replica loads, into the same
		 * bytes (a dot with one evidence variant once made the save
		 * unloadable: fuzz/regressions/load). */
		crdt_doc *f = fuzz_doc(1);
		FUZZ_ASSERT(crdt_doc_load(f, after.data, after.len, NULL) == 0);
		fuzz_save(f, &again);
		FUZZ_ASSERT(again.len == after.len &&
		    memcmp(again.data, after.data, after.len) == 0);
		crdt_buf_fini(&again);
		crdt_doc_free(f);
		build_base();
	}
	crdt_buf_fini(&after);
	/* The same into an empty document (base's own ops can make it refuse
	 * what an empty one takes): accepted ⇒ its save loads into another
	 * fresh replica, into the same bytes. */
	crdt_doc *e = fuzz_doc(2);
	if (crdt_doc_load(e, data, size, NULL) == 0) {
		crdt_buf s1, s2;
		fuzz_save(e, &s1);
		crdt_doc *f = fuzz_doc(3);
		FUZZ_ASSERT(crdt_doc_load(f, s1.data, s1.len, NULL) == 0);
		fuzz_save(f, &s2);
		FUZZ_ASSERT(s1.len == s2.len &&
		    memcmp(s1.data, s2.data, s1.len) == 0);
		crdt_buf_fini(&s1);
		crdt_buf_fini(&s2);
		crdt_doc_free(f);
	}
	crdt_doc_free(e);
	return 0;
}
