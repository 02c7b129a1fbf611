#include <crdt/crdt.h>
#include <stdio.h>

int main(void) {
	crdt_replica_id ida, idb;
	crdt_doc *a = NULL, *b = NULL;
	crdt_buf msg;
	const crdt_lww *title;
	const uint8_t *v;
	size_t n;
	int rc;

	crdt_buf_init(&msg, NULL);
	if ((rc = crdt_replica_id_random(&ida)) == 0 &&
	    (rc = crdt_replica_id_random(&idb)) == 0 &&
	    (rc = crdt_doc_new(NULL, &ida, &a)) == 0 &&
	    (rc = crdt_doc_new(NULL, &idb, &b)) == 0 &&
	    (rc = crdt_doc_register(a, "title", CRDT_OBJ_LWW, NULL)) == 0 && /* same schema */
	    (rc = crdt_doc_register(b, "title", CRDT_OBJ_LWW, NULL)) == 0 && /* everywhere */
	    (rc = crdt_doc_lww_set(a, 0, "hello", 5, &msg)) == 0 &&          /* one-op transaction */
	    (rc = crdt_doc_receive(b, msg.data, msg.len, NULL)) == 0 &&      /* any order, any time */
	    (rc = crdt_doc_lww(b, 0, &title)) == 0 &&
	    (rc = crdt_lww_get(title, &v, &n)) == 0)
		printf("b sees: %.*s\n", (int)n, (const char *)v);
	else
		fprintf(stderr, "example: %s\n", crdt_strerror(rc));
	crdt_buf_fini(&msg);
	crdt_doc_free(a); /* NULL is a no-op */
	crdt_doc_free(b);
	return rc == 0 ? 0 : 1;
}
