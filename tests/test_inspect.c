/*
 * Read-only checks without a document (crdt/inspect.h): a signature
 * verifies only for the document it was made for and fails on any flipped
 * bit or a foreign key; a sealed payload or snapshot opens with its key
 * only, and a failed open leaves the caller's buffer as it was; every
 * malformed input is refused by the same envelope rules as
 * crdt_msg_peek().
 */
#include <criterion/criterion.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_util.h"

static const uint8_t key1[32] = { 7, 7, 7, 1 };
static const uint8_t key2[32] = { 9 };

typedef struct writer {
	crdt_doc *d;
	crdt_identity *ident;
	crdt_config cfg;
} writer;

static void
writer_new(writer *w, uint8_t seed, const crdt_doc_id *doc, bool sign,
    bool enc)
{
	uint8_t s[32] = { seed };
	crdt_replica_id id;

	crdt_config_default(&w->cfg);
	if (doc != NULL)
		w->cfg.doc_id = *doc;
	cr_assert_eq(crdt_identity_from_seed(NULL, s, &w->ident), 0);
	crdt_identity_replica_id(w->ident, &id);
	cr_assert_eq(crdt_doc_new(&w->cfg, &id, &w->d), 0);
	crdt_doc_security sec = { sign, sign ? w->ident : NULL, enc,
		enc ? key1 : NULL, 3, NULL, false };
	cr_assert_eq(crdt_doc_set_security(w->d, &sec), 0);
	cr_assert_eq(crdt_doc_register(w->d, "tags", CRDT_OBJ_GSET, NULL), 0);
}

static void
writer_free(writer *w)
{
	crdt_doc_free(w->d);
	crdt_identity_free(w->ident);
}

static void
commit(writer *w, const char *elem, crdt_buf *msg)
{
	tb_init(msg);
	cr_assert_eq(crdt_doc_gset_add(w->d, 0, elem, strlen(elem), msg), 0);
}

static crdt_doc_id
doc_id(uint8_t b)
{
	crdt_doc_id d;
	memset(d.bytes, b, sizeof d.bytes);
	return d;
}

Test(inspect, signature_verifies_for_its_document_only)
{
	crdt_doc_id doc = doc_id(0x5a), other = doc_id(0x5b);
	writer w;
	crdt_buf m;
	uint8_t pk[32], want[32];

	writer_new(&w, 1, &doc, true, false);
	commit(&w, "x", &m);
	crdt_identity_public_key(w.ident, want);
	cr_assert_eq(crdt_msg_verify(m.data, m.len, &doc, pk), 0);
	cr_assert(bytes_eq(pk, 32, want, 32));
	cr_assert_eq(crdt_msg_verify(m.data, m.len, &other, NULL),
	    CRDT_EBADSIG);
	cr_assert_eq(crdt_msg_verify(m.data, m.len, NULL, NULL), CRDT_EBADSIG);
	crdt_buf_fini(&m);
	writer_free(&w);
}

Test(inspect, every_flipped_bit_before_the_signature_fails)
{
	crdt_doc_id doc = doc_id(1);
	writer w;
	crdt_buf m;

	writer_new(&w, 2, &doc, true, false);
	commit(&w, "hello", &m);
	for (size_t i = 0; i < m.len; i++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			m.data[i] ^= (uint8_t)(1u << bit);
			int rc = crdt_msg_verify(m.data, m.len, &doc, NULL);
			cr_assert_neq(rc, 0, "byte %zu bit %u accepted", i, bit);
			m.data[i] ^= (uint8_t)(1u << bit);
		}
	}
	cr_assert_eq(crdt_msg_verify(m.data, m.len, &doc, NULL), 0);
	crdt_buf_fini(&m);
	writer_free(&w);
}

Test(inspect, a_key_that_is_not_the_senders_is_badkey)
{
	crdt_doc_id doc = doc_id(3);
	writer a, b;
	crdt_buf ma, mb;

	writer_new(&a, 3, &doc, true, false);
	writer_new(&b, 4, &doc, true, false);
	commit(&a, "a", &ma);
	commit(&b, "b", &mb);
	/* The auth slot is the last 2 + 34 + 66 bytes: [bin32 pk, bin64 sig]. */
	size_t auth = 1 + 34 + 66;
	cr_assert_geq(ma.len, auth);
	memcpy(ma.data + ma.len - auth, mb.data + mb.len - auth, auth);
	cr_assert_eq(crdt_msg_verify(ma.data, ma.len, &doc, NULL),
	    CRDT_EBADKEY);
	crdt_buf_fini(&ma);
	crdt_buf_fini(&mb);
	writer_free(&a);
	writer_free(&b);
}

Test(inspect, unsigned_and_malformed_messages_are_refused)
{
	writer w;
	crdt_buf m;

	writer_new(&w, 5, NULL, false, false);
	commit(&w, "x", &m);
	cr_assert_eq(crdt_msg_verify(m.data, m.len, NULL, NULL), CRDT_EBADSIG);
	for (size_t cut = 0; cut < m.len; cut++) {
		int rc = crdt_msg_verify(m.data, cut, NULL, NULL);
		cr_assert(rc == CRDT_EMALFORMED || rc == CRDT_EVERSION,
		    "cut %zu: %s", cut, crdt_err_name(rc));
	}
	cr_assert_eq(crdt_msg_verify(NULL, 0, NULL, NULL), CRDT_EINVAL);
	crdt_buf_fini(&m);
	writer_free(&w);
}

Test(inspect, plaintext_payload_is_the_ops_bytes)
{
	writer w;
	crdt_buf m, p;
	uint32_t ep = 99;
	/* [[0, "x"]] */
	static const uint8_t ops[] = { 0x91, 0x92, 0x00, 0xc4, 0x01, 'x' };

	writer_new(&w, 6, NULL, false, false);
	commit(&w, "x", &m);
	tb_init(&p);
	cr_assert_eq(crdt_msg_payload(m.data, m.len, NULL, NULL, &p, &ep), 0);
	cr_assert(bytes_eq(p.data, p.len, ops, sizeof ops), "%s",
	    hexs(p.data, p.len));
	cr_assert_eq(ep, 0);
	crdt_buf_fini(&p);
	crdt_buf_fini(&m);
	writer_free(&w);
}

Test(inspect, sealed_payload_opens_with_its_key_and_document_only)
{
	crdt_doc_id doc = doc_id(8), other = doc_id(9);
	writer w;
	crdt_buf m, p;
	uint32_t ep = 0;
	static const uint8_t ops[] = { 0x91, 0x92, 0x00, 0xc4, 0x02, 's', 'k' };

	writer_new(&w, 7, &doc, false, true);
	commit(&w, "sk", &m);
	tb_init(&p);
	cr_assert_eq(crdt_buf_append(&p, "pre", 3), 0);
	cr_assert_eq(crdt_msg_payload(m.data, m.len, &doc, NULL, &p, NULL),
	    CRDT_ENOKEY);
	cr_assert_eq(crdt_msg_payload(m.data, m.len, &doc, key2, &p, NULL),
	    CRDT_EDECRYPT);
	cr_assert_eq(p.len, 3);
	cr_assert_eq(crdt_msg_payload(m.data, m.len, &other, key1, &p, NULL),
	    CRDT_EDECRYPT);
	cr_assert_eq(p.len, 3);
	m.data[m.len - 3] ^= 1; /* in the ciphertext (auth slot is nil) */
	cr_assert_eq(crdt_msg_payload(m.data, m.len, &doc, key1, &p, NULL),
	    CRDT_EDECRYPT);
	m.data[m.len - 3] ^= 1;
	cr_assert_eq(crdt_msg_payload(m.data, m.len, &doc, key1, &p, &ep), 0);
	cr_assert_eq(ep, 3);
	cr_assert(bytes_eq(p.data + 3, p.len - 3, ops, sizeof ops), "%s",
	    hexs(p.data, p.len));
	crdt_buf_fini(&p);
	crdt_buf_fini(&m);
	writer_free(&w);
}

Test(inspect, sealed_snapshot_unseals_to_the_plain_snapshot)
{
	crdt_doc_id doc = doc_id(0x11);
	writer w;
	crdt_buf m, plain, sealed, out;
	uint32_t ep = 0;

	writer_new(&w, 8, &doc, false, true);
	commit(&w, "a", &m);
	tb_init(&plain);
	tb_init(&sealed);
	tb_init(&out);
	cr_assert_eq(crdt_doc_save(w.d, &plain), 0);
	cr_assert_eq(crdt_doc_save_sealed(w.d, &sealed), 0);
	cr_assert_eq(crdt_snapshot_unseal(sealed.data, sealed.len, &doc, key2,
	    &out, NULL), CRDT_EDECRYPT);
	cr_assert_eq(out.len, 0);
	cr_assert_eq(crdt_snapshot_unseal(sealed.data, sealed.len, NULL, key1,
	    &out, NULL), CRDT_EDECRYPT);
	for (size_t cut = 0; cut < sealed.len; cut++)
		cr_assert_neq(crdt_snapshot_unseal(sealed.data, cut, &doc, key1,
		    &out, NULL), 0, "cut %zu", cut);
	cr_assert_eq(out.len, 0);
	cr_assert_eq(crdt_snapshot_unseal(plain.data, plain.len, &doc, key1,
	    &out, NULL), CRDT_EMALFORMED);
	cr_assert_eq(crdt_snapshot_unseal(sealed.data, sealed.len, &doc, key1,
	    &out, &ep), 0);
	cr_assert_eq(ep, 3);
	cr_assert(bytes_eq(out.data, out.len, plain.data, plain.len));
	cr_assert_eq(crdt_snapshot_unseal(sealed.data, sealed.len, &doc, NULL,
	    &out, NULL), CRDT_EINVAL);
	crdt_buf_fini(&m);
	crdt_buf_fini(&plain);
	crdt_buf_fini(&sealed);
	crdt_buf_fini(&out);
	writer_free(&w);
}

Test(inspect, missing_arguments_are_einval_and_write_nothing)
{
	static const uint8_t key[CRDT_DOC_KEY_BYTES] = { 1 };
	static const uint8_t junk[4] = { 0x93, 1, 5, 0 };
	crdt_buf out;
	tb_init(&out);
	cr_assert_eq(crdt_msg_payload(NULL, 4, NULL, NULL, &out, NULL),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_msg_payload(junk, sizeof junk, NULL, NULL, NULL,
			 NULL),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_snapshot_unseal(NULL, 4, NULL, key, &out, NULL),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_snapshot_unseal(junk, sizeof junk, NULL, NULL, &out,
			 NULL),
	    CRDT_EINVAL);
	cr_assert_eq(crdt_snapshot_unseal(junk, sizeof junk, NULL, key, NULL,
			 NULL),
	    CRDT_EINVAL);
	/* Bytes that are no sealed snapshot: refused, nothing written. */
	cr_assert_neq(crdt_snapshot_unseal(junk, sizeof junk, NULL, key, &out,
			  NULL),
	    0);
	cr_assert_eq(out.len, 0);
	crdt_buf_fini(&out);
}
