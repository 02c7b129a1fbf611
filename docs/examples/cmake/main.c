/* One replica sets a register; prints the library version and the value. */
#include <crdt/crdt.h>
#include <stdio.h>

int
main(void)
{
	crdt_replica_id id;
	crdt_doc *d = NULL;
	crdt_buf msg;
	const crdt_lww *reg;
	const uint8_t *v;
	size_t n;
	int rc;

	crdt_buf_init(&msg, NULL);
	if ((rc = crdt_replica_id_random(&id)) == 0 &&
	    (rc = crdt_doc_new(NULL, &id, &d)) == 0 &&
	    (rc = crdt_doc_register(d, "title", CRDT_OBJ_LWW, NULL)) == 0 &&
	    (rc = crdt_doc_lww_set(d, 0, "consumer", 8, &msg)) == 0 &&
	    (rc = crdt_doc_lww(d, 0, &reg)) == 0 &&
	    (rc = crdt_lww_get(reg, &v, &n)) == 0)
		printf("libcrdt %s: %.*s\n", crdt_version_string(), (int)n,
		    (const char *)v);
	else
		fprintf(stderr, "consumer: %s\n", crdt_strerror(rc));
	crdt_buf_fini(&msg);
	crdt_doc_free(d);
	return rc == 0 ? 0 : 1;
}
