/*
 * Writes the files tests/cli/run.py drives the crdt command with, through
 * the public API only (nothing here knows the wire format):
 *   a.snap, b.snap   two replicas that each committed their own changes
 *   full.snap        a third replica that received every message of both
 *   clock.state, gset.state: full's clock and its G-Set's state
 *   a1.msg           the first message of replica A (plain)
 *   hello.frame      A's HELLO; data.frame: B's DATA reply to it
 *   signed.msg       a signed message of document docid.hex
 *   sealed.msg, sealed.snap, key.bin: an encrypted document's message and
 *                    sealed snapshot, and its key
 *   store.db         an SQLite store: A's messages and a checkpoint
 *   loaded.db, loaded-expected.snap: a store holding a loaded snapshot
 *                    record (B's snapshot loaded while attached, no
 *                    checkpoint after it), and the document that wrote it
 *   chat.msg, chat.snap: a chat post and the snapshot after it
 *   acl.snap, admin.hex: a document with an allowlist, its admin's key
 * Usage: gen DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"

#define TRY(x)                                                           \
	do {                                                             \
		int rc_ = (x);                                           \
		if (rc_ != 0) {                                          \
			fprintf(stderr, "gen: %s:%d: %s: %s\n", __FILE__, \
			    __LINE__, #x, crdt_err_name(rc_));           \
			exit(1);                                         \
		}                                                        \
	} while (0)

static const char *dir;

static void
put(const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static crdt_doc_id doc_id;
static bool ckpt_off; /* mkdoc: no automatic checkpoints */

static crdt_doc *
mkdoc(uint8_t idbyte)
{
	crdt_config cfg;
	crdt_replica_id id;
	uint8_t raw[16] = { idbyte, 0x42 };
	crdt_doc *d;

	crdt_config_default(&cfg);
	cfg.doc_id = doc_id;
	if (ckpt_off)
		cfg.ckpt_tail_pct = UINT32_MAX;
	TRY(crdt_replica_id_from_bytes(&id, raw, sizeof raw));
	TRY(crdt_doc_new(&cfg, &id, &d));
	TRY(crdt_doc_register(d, "tags", CRDT_OBJ_GSET, NULL));
	TRY(crdt_doc_register(d, "title", CRDT_OBJ_LWW, NULL));
	TRY(crdt_doc_register(d, "meta", CRDT_OBJ_MAP, NULL));
	return d;
}

static void
save(crdt_doc *d, const char *name)
{
	crdt_buf b;
	crdt_buf_init(&b, NULL);
	TRY(crdt_doc_save(d, &b));
	put(name, b.data, b.len);
	crdt_buf_fini(&b);
}

/* n one-op commits on `d`; messages appended to msgs[] (each its own
 * buffer). */
static size_t
edits(crdt_doc *d, const char *who, int n, crdt_buf *msgs, size_t at)
{
	for (int i = 0; i < n; i++) {
		char v[32];
		snprintf(v, sizeof v, "%s-%d", who, i);
		crdt_buf_init(&msgs[at], NULL);
		switch (i % 3) {
		case 0:
			TRY(crdt_doc_gset_add(d, 0, v, strlen(v), &msgs[at]));
			break;
		case 1:
			TRY(crdt_doc_lww_set(d, 1, v, strlen(v), &msgs[at]));
			break;
		default:
			TRY(crdt_doc_map_set(d, 2, who, strlen(who), v,
			    strlen(v), &msgs[at]));
		}
		at++;
	}
	return at;
}

static void
plain_docs(void)
{
	crdt_buf msgs[32], f, r;
	crdt_doc *a = mkdoc(0xa1), *b = mkdoc(0xb2), *c = mkdoc(0xc3);
	size_t n = edits(a, "a", 7, msgs, 0);
	size_t na = n;
	n = edits(b, "b", 5, msgs, n);
	for (size_t i = 0; i < n; i++)
		TRY(crdt_doc_receive(c, msgs[i].data, msgs[i].len, NULL));
	save(a, "a.snap");
	save(b, "b.snap");

	crdt_vclock *vc;
	const crdt_gset *g;
	crdt_buf_init(&f, NULL);
	TRY(crdt_doc_vclock(c, &vc));
	TRY(crdt_vclock_encode(vc, &f));
	put("clock.state", f.data, f.len);
	crdt_vclock_free(vc);
	crdt_buf_clear(&f);
	TRY(crdt_doc_gset(c, 0, &g));
	TRY(crdt_gset_encode(g, &f));
	put("gset.state", f.data, f.len);
	crdt_buf_fini(&f);
	save(c, "full.snap");
	put("a1.msg", msgs[0].data, msgs[0].len);

	crdt_buf_init(&f, NULL);
	crdt_buf_init(&r, NULL);
	TRY(crdt_doc_sync_start(a, &f));
	put("hello.frame", f.data, f.len);
	TRY(crdt_doc_sync_handle(b, f.data, f.len, NULL, &r));
	put("data.frame", r.data, r.len);
	crdt_buf_fini(&f);
	crdt_buf_fini(&r);

	/* A's store: its messages, then a checkpoint, then two more. */
	char path[4096];
	crdt_store *s;
	crdt_doc *a2 = mkdoc(0xa1);
	snprintf(path, sizeof path, "%s/store.db", dir);
	TRY(crdt_store_open_sqlite(NULL, path, NULL, &s));
	TRY(crdt_doc_attach_store(a2, s, 0));
	for (size_t i = 0; i < na; i++)
		TRY(crdt_doc_receive(a2, msgs[i].data, msgs[i].len, NULL));
	TRY(crdt_doc_checkpoint(a2));
	for (size_t i = na; i < na + 2; i++)
		TRY(crdt_doc_receive(a2, msgs[i].data, msgs[i].len, NULL));
	save(a2, "store-expected.snap");
	TRY(crdt_doc_attach_store(a2, NULL, 0));
	crdt_store_close(s);
	crdt_doc_free(a2);

	/* A's first messages, then B's snapshot loaded while attached: its
	 * record stays (no automatic checkpoint drops it). */
	ckpt_off = true;
	a2 = mkdoc(0xa1);
	ckpt_off = false;
	snprintf(path, sizeof path, "%s/loaded.db", dir);
	TRY(crdt_store_open_sqlite(NULL, path, NULL, &s));
	TRY(crdt_doc_attach_store(a2, s, 0));
	for (size_t i = 0; i < 3; i++)
		TRY(crdt_doc_receive(a2, msgs[i].data, msgs[i].len, NULL));
	crdt_buf_init(&f, NULL);
	TRY(crdt_doc_save(b, &f));
	TRY(crdt_doc_load(a2, f.data, f.len, NULL));
	crdt_buf_fini(&f);
	save(a2, "loaded-expected.snap");
	TRY(crdt_doc_attach_store(a2, NULL, 0));
	crdt_store_close(s);
	crdt_doc_free(a2);

	for (size_t i = 0; i < n; i++)
		crdt_buf_fini(&msgs[i]);
	crdt_doc_free(a);
	crdt_doc_free(b);
	crdt_doc_free(c);
}

static void
secure_docs(void)
{
	static const uint8_t seed[32] = { 5, 4, 3, 2, 1 };
	uint8_t key[32];
	crdt_identity *ident;
	crdt_config cfg;
	crdt_replica_id id;
	crdt_doc *d, *e;
	crdt_buf m;
	char hex[2 * CRDT_DOC_ID_BYTES + 2];

	crdt_config_default(&cfg);
	cfg.doc_id = doc_id;
	TRY(crdt_identity_from_seed(NULL, seed, &ident));
	crdt_identity_replica_id(ident, &id);
	TRY(crdt_doc_new(&cfg, &id, &d));
	crdt_doc_security sec = { true, ident, false, NULL, 0, NULL, false };
	TRY(crdt_doc_set_security(d, &sec));
	TRY(crdt_doc_register(d, "tags", CRDT_OBJ_GSET, NULL));
	crdt_buf_init(&m, NULL);
	TRY(crdt_doc_gset_add(d, 0, "signed", 6, &m));
	put("signed.msg", m.data, m.len);
	crdt_buf_clear(&m);
	TRY(crdt_doc_gset_add(d, 0, "again", 5, &m));
	save(d, "signed.snap");

	for (size_t i = 0; i < CRDT_DOC_ID_BYTES; i++)
		snprintf(hex + 2 * i, 3, "%02x", doc_id.bytes[i]);
	hex[2 * CRDT_DOC_ID_BYTES] = '\n';
	put("docid.hex", hex, 2 * CRDT_DOC_ID_BYTES + 1);

	for (size_t i = 0; i < sizeof key; i++)
		key[i] = (uint8_t)(i * 7 + 1);
	put("key.bin", key, sizeof key);
	uint8_t raw[16] = { 0xe5 };
	TRY(crdt_replica_id_from_bytes(&id, raw, sizeof raw));
	TRY(crdt_doc_new(&cfg, &id, &e));
	crdt_doc_security enc = { false, NULL, true, key, 0, NULL, false };
	TRY(crdt_doc_set_security(e, &enc));
	TRY(crdt_doc_register(e, "tags", CRDT_OBJ_GSET, NULL));
	crdt_buf_clear(&m);
	TRY(crdt_doc_gset_add(e, 0, "secret", 6, &m));
	put("sealed.msg", m.data, m.len);
	crdt_buf_clear(&m);
	TRY(crdt_doc_save_sealed(e, &m));
	put("sealed.snap", m.data, m.len);
	crdt_buf_fini(&m);
	crdt_doc_free(d);
	crdt_doc_free(e);
	crdt_identity_free(ident);
}

/* A chat post (an op of more fields than the basic types'). */
static void
chat_doc(void)
{
	crdt_config cfg;
	crdt_replica_id id;
	uint8_t raw[16] = { 0xcc };
	crdt_doc *d;
	crdt_buf m;
	crdt_dot dot;

	crdt_config_default(&cfg);
	TRY(crdt_replica_id_from_bytes(&id, raw, sizeof raw));
	TRY(crdt_doc_new(&cfg, &id, &d));
	TRY(crdt_doc_register_chat(d, "chat", NULL, NULL));
	crdt_chat_post p = { "ann", 3, "hello", 5, NULL, NULL, 0 };
	crdt_buf_init(&m, NULL);
	TRY(crdt_doc_chat_post(d, 0, &p, &dot, &m));
	put("chat.msg", m.data, m.len);
	crdt_buf_fini(&m);
	save(d, "chat.snap");
	crdt_doc_free(d);
}

/* A document with an allowlist: the admin allows a writer, who writes. */
static void
acl_doc(void)
{
	static const uint8_t s1[32] = { 9, 9 }, s2[32] = { 8, 8 };
	crdt_identity *admin, *writer;
	crdt_replica_id aid, wid;
	crdt_config cfg;
	crdt_doc *a, *w;
	crdt_buf m;
	uint8_t pk[32];
	char hex[66];

	crdt_config_default(&cfg);
	cfg.doc_id = doc_id;
	TRY(crdt_identity_from_seed(NULL, s1, &admin));
	TRY(crdt_identity_from_seed(NULL, s2, &writer));
	crdt_identity_public_key(admin, pk);
	crdt_identity_replica_id(admin, &aid);
	crdt_identity_replica_id(writer, &wid);
	TRY(crdt_doc_new(&cfg, &aid, &a));
	TRY(crdt_doc_new(&cfg, &wid, &w));
	crdt_doc_security sa = { true, admin, false, NULL, 0, pk, false };
	crdt_doc_security sw = { true, writer, false, NULL, 0, pk, false };
	TRY(crdt_doc_set_security(a, &sa));
	TRY(crdt_doc_set_security(w, &sw));
	TRY(crdt_doc_register(a, "tags", CRDT_OBJ_GSET, NULL));
	TRY(crdt_doc_register(w, "tags", CRDT_OBJ_GSET, NULL));
	crdt_buf_init(&m, NULL);
	TRY(crdt_doc_allow(a, &wid, true, &m));
	TRY(crdt_doc_receive(w, m.data, m.len, NULL));
	crdt_buf_clear(&m);
	TRY(crdt_doc_gset_add(w, 1, "ok", 2, &m)); /* 0 is "__acl" */
	TRY(crdt_doc_receive(a, m.data, m.len, NULL));
	save(a, "acl.snap");
	for (size_t i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", pk[i]);
	hex[64] = '\n';
	put("admin.hex", hex, 65);
	crdt_buf_fini(&m);
	crdt_doc_free(a);
	crdt_doc_free(w);
	crdt_identity_free(admin);
	crdt_identity_free(writer);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen DIR\n");
		return 2;
	}
	dir = argv[1];
	for (size_t i = 0; i < CRDT_DOC_ID_BYTES; i++)
		doc_id.bytes[i] = (uint8_t)(0x30 + i);
	plain_docs();
	secure_docs();
	acl_doc();
	chat_doc();
	return 0;
}
