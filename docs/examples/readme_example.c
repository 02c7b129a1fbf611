#include <crdt/crdt.h>
#include <stdio.h>

int main(void) {
	crdt_replica_id ida, idb;
	crdt_doc *a = NULL, *b = NULL;
	crdt_buf msg;
	const crdt_lww *title;
	const uint8_t *v;
	size_t n;
	int rc = crdt_replica_id_random(&ida) || crdt_replica_id_random(&idb) ||
	    crdt_doc_new(NULL, &ida, &a) || crdt_doc_new(NULL, &idb, &b) ||
	    crdt_doc_register(a, "title", CRDT_OBJ_LWW, NULL) ||  /* same schema */
	    crdt_doc_register(b, "title", CRDT_OBJ_LWW, NULL);    /* everywhere */
	crdt_buf_init(&msg, NULL);
	rc = rc || crdt_doc_lww_set(a, 0, "hello", 5, &msg)       /* one-op transaction */
	    || crdt_doc_receive(b, msg.data, msg.len, NULL)       /* any order, any time */
	    || crdt_doc_lww(b, 0, &title) || crdt_lww_get(title, &v, &n);
	if (rc == 0)
		printf("b sees: %.*s\n", (int)n, (const char *)v);
	crdt_buf_fini(&msg);
	crdt_doc_free(a);
	crdt_doc_free(b);
	return rc;
}
