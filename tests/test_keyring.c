/*
 * White-box: the epoch keys (crdt/keyring.h), below the document:
 *   - keys are found by epoch, replaced in place, and a reserved slot
 *     makes the next new key's put unable to fail;
 *   - sealing uses the current epoch's key and binds the header to the
 *     document: it opens with that key and that document's associated
 *     data only; without a current key it is CRDT_ENOKEY and writes
 *     nothing;
 *   - nothing leaks.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "keyring.h"
#include "envelope.h"
#include "test_alloc.h"
#include "test_util.h"

static crdt__keyring kr;

static void
setup(void)
{
	test_alloc_reset();
	cr_assert_eq(crdt_init(), 0);
	crdt__keys_init(&kr, test_alloc_hook());
}

static void
teardown(void)
{
	crdt__keys_fini(&kr);
	ASSERT_NO_LEAKS();
}

TestSuite(keyring, .init = setup, .fini = teardown);

static void
key(uint8_t k[CRDT_DOC_KEY_BYTES], uint8_t v)
{
	memset(k, v, CRDT_DOC_KEY_BYTES);
}

Test(keyring, keys_by_epoch_replaced_in_place)
{
	uint8_t k[CRDT_DOC_KEY_BYTES];
	for (uint32_t e = 1; e <= 9; e++) {
		key(k, (uint8_t)e);
		cr_assert_eq(crdt__keys_put(&kr, e * 10, k), 0);
	}
	cr_assert_eq(kr.n, 9);
	const crdt__epoch_key *f = crdt__keys_find(&kr, 70);
	cr_assert_not_null(f);
	cr_assert_eq(f->key[0], 7);
	key(k, 0xee);
	cr_assert_eq(crdt__keys_put(&kr, 70, k), 0);
	cr_assert_eq(kr.n, 9);
	cr_assert_eq(crdt__keys_find(&kr, 70)->key[5], 0xee);
	cr_assert_null(crdt__keys_find(&kr, 71));
}

Test(keyring, a_reserved_slot_makes_the_put_unable_to_fail)
{
	uint8_t k[CRDT_DOC_KEY_BYTES];
	key(k, 1);
	for (uint32_t e = 0; e < 12; e++) {
		cr_assert_eq(crdt__keys_reserve(&kr), 0);
		test_alloc_fail_from(0);
		cr_assert_eq(crdt__keys_put(&kr, e, k), 0);
		cr_assert(!test_alloc_fired());
		test_alloc_disarm();
	}
	/* Without the reservation, growth can fail, and then nothing
	 * changed. */
	while (kr.n < kr.cap)
		cr_assert_eq(crdt__keys_put(&kr, (uint32_t)(100 + kr.n), k), 0);
	size_t n = kr.n;
	test_alloc_fail_at(0);
	cr_assert_eq(crdt__keys_put(&kr, 999, k), CRDT_ENOMEM);
	test_alloc_disarm();
	cr_assert_eq(kr.n, n);
	cr_assert_null(crdt__keys_find(&kr, 999));
}

/* Open what crdt__keys_seal wrote after `hdr` in `out`. */
static int
open_sealed(const crdt_buf *out, size_t hdr, const crdt_doc_id *doc,
    const uint8_t *k, uint8_t *plain, uint32_t *epoch)
{
	crdt_limits lim;
	crdt_config c;
	crdt_config_default(&c);
	lim = c.limits;
	crdt__rd r;
	uint64_t ep;
	const uint8_t *nonce, *ct;
	size_t nl, cl;
	cr_assert_eq(crdt__rd_init(&r, &lim, out->data + hdr, out->len - hdr),
	    0);
	cr_assert_eq(crdt__rd_array_n(&r, 3), 0);
	cr_assert_eq(crdt__rd_uint(&r, &ep), 0);
	cr_assert_eq(crdt__rd_bin(&r, &nonce, &nl), 0);
	cr_assert_eq(crdt__rd_blob(&r, &ct, &cl), 0);
	cr_assert_eq(nl, CRDT__NONCE_BYTES);
	*epoch = (uint32_t)ep;
	uint8_t adbuf[32];
	const uint8_t *ad;
	size_t adlen;
	cr_assert_eq(crdt__env_ad(adbuf, CRDT__DOC_FORMAT_VERSION, doc,
	    out->data, hdr, &ad, &adlen), 0);
	return crdt__aead_open(plain, ct, cl, ad, adlen, nonce, k);
}

Test(keyring, seals_under_the_current_key_bound_to_the_document)
{
	uint8_t k1[CRDT_DOC_KEY_BYTES], k2[CRDT_DOC_KEY_BYTES];
	key(k1, 1);
	key(k2, 2);
	cr_assert_eq(crdt__keys_put(&kr, 1, k1), 0);
	cr_assert_eq(crdt__keys_put(&kr, 2, k2), 0);
	kr.cur = 2;
	crdt_doc_id doc, other;
	memset(&doc, 0, sizeof doc);
	memset(&other, 0, sizeof other);
	doc.bytes[0] = 1;
	other.bytes[0] = 2;
	static const char msg[] = "payload";
	crdt_buf out;
	tb_init(&out);
	mp_raw(&out, "header", 6);
	cr_assert_eq(crdt__keys_seal(&kr, &doc, &out, 0,
	    (const uint8_t *)msg, sizeof msg), 0);
	uint8_t plain[64];
	uint32_t ep;
	cr_assert_eq(open_sealed(&out, 6, &doc, k2, plain, &ep), 0);
	cr_assert_eq(ep, 2);
	cr_assert_eq(memcmp(plain, msg, sizeof msg), 0);
	cr_assert_neq(open_sealed(&out, 6, &doc, k1, plain, &ep), 0);
	cr_assert_neq(open_sealed(&out, 6, &other, k2, plain, &ep), 0);
	out.data[0] ^= 1; /* the header is authenticated */
	cr_assert_neq(open_sealed(&out, 6, &doc, k2, plain, &ep), 0);
	kr.cur = 3;
	crdt_buf_clear(&out);
	cr_assert_eq(crdt__keys_seal(&kr, &doc, &out, 0,
	    (const uint8_t *)msg, sizeof msg), CRDT_ENOKEY);
	cr_assert_eq(out.len, 0);
	crdt_buf_fini(&out);
}
