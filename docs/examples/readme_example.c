#include <crdt/crdt.h>
#include <stdio.h>

#define CHECK(x) do { int rc_ = (x); if (rc_ != 0) { \
	fprintf(stderr, "%s: %s\n", #x, crdt_strerror(rc_)); return 1; } } while (0)

int main(void) {
	crdt_replica_id ida, idb;
	crdt_doc *a, *b;
	crdt_buf msg;
	const crdt_lww *title;
	const uint8_t *v;
	size_t n;

	CHECK(crdt_replica_id_random(&ida));
	CHECK(crdt_replica_id_random(&idb));
	CHECK(crdt_doc_new(NULL, &ida, &a));
	CHECK(crdt_doc_new(NULL, &idb, &b));
	CHECK(crdt_doc_register(a, "title", CRDT_OBJ_LWW, NULL)); /* same schema */
	CHECK(crdt_doc_register(b, "title", CRDT_OBJ_LWW, NULL)); /* everywhere */
	crdt_buf_init(&msg, NULL);
	CHECK(crdt_doc_lww_set(a, 0, "hello", 5, &msg));   /* one-op transaction */
	CHECK(crdt_doc_receive(b, msg.data, msg.len, NULL)); /* ship bytes to b */
	CHECK(crdt_doc_lww(b, 0, &title));
	CHECK(crdt_lww_get(title, &v, &n));
	printf("b sees: %.*s\n", (int)n, (const char *)v);
	crdt_buf_fini(&msg);
	crdt_doc_free(a);
	crdt_doc_free(b);
	return 0;
}
