/*
 * Transactions and local mutations (doc.h): ops are staged in d->stage,
 * and commit encodes them as one message and applies it through the same
 * path as a remote message (crdt__apply_msg), so the local state is
 * exactly what every receiver will get.
 */
#include <stdlib.h>

#include "doc_impl.h"

int
crdt_doc_begin(crdt_doc *d)
{
	if (d == NULL)
		return CRDT_EINVAL;
	if (d->in_txn)
		return CRDT_ESTATE;
	d->in_txn = true;
	d->txn_serial++;
	crdt_buf_clear(&d->stage);
	d->stage_ops = 0;
	return 0;
}

void
crdt_doc_abort(crdt_doc *d)
{
	if (d == NULL)
		return;
	d->in_txn = false;
	crdt_buf_clear(&d->stage);
	d->stage_ops = 0;
}

static int
dep_id_cmp(const void *x, const void *y)
{
	return crdt_replica_id_cmp(&((const iddep *)x)->id,
	    &((const iddep *)y)->id);
}

/* The auth slot: nil, or [public key, Ed25519 signature of the
 * personalised BLAKE2b-256 of the message bytes before this slot]. */
static int
w_auth(const crdt_doc *d, crdt_buf *out, size_t mark)
{
	uint8_t h[32], sig[CRDT__SIG_BYTES];
	if (d->ident == NULL)
		return crdt__w_nil(out);
	CRDT_TRY(crdt__env_sig_digest(h, CRDT__DOC_FORMAT_VERSION,
	    &d->cfg.doc_id, out->data + mark, out->len - mark));
	crdt__sign(sig, h, sizeof h, crdt__identity_sk(d->ident));
	CRDT_TRY(crdt__w_array(out, 2));
	CRDT_TRY(crdt__w_bin(out, crdt__identity_pk(d->ident),
	    CRDT_PUBLIC_KEY_BYTES));
	return crdt__w_bin(out, sig, sizeof sig);
}

static int
encode_msg(crdt_doc *d, crdt_buf *out, uint64_t counter, uint64_t hlc,
    size_t *ndeps)
{
	size_t mark = out->len;
	/* Deps: only the entries that grew since our previous message. */
	void *v = d->sdeps;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &d->capsdeps, d->ndirty,
	    sizeof *d->sdeps));
	d->sdeps = v;
	size_t n = 0;
	for (size_t i = 0; i < d->ndirty; i++) {
		const rstate *r = &d->rs[d->dirty[i]];
		if (r->vc > r->sent)
			d->sdeps[n++] = (iddep){ r->id, r->vc };
	}
	/* With an allowlist, always name the admin entry: receivers judge
	 * this message by the allowlist as of that counter. */
	uint64_t adm = crdt__own_admin(d);
	if (adm > 0 && crdt_replica_id_cmp(&d->self, &d->admin) != 0) {
		bool listed = false;
		for (size_t i = 0; i < n; i++)
			listed |= crdt_replica_id_cmp(&d->sdeps[i].id,
			    &d->admin) == 0;
		if (!listed) {
			v = d->sdeps;
			CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &d->capsdeps,
			    n + 1, sizeof *d->sdeps));
			d->sdeps = v;
			d->sdeps[n++] = (iddep){ d->admin, adm };
		}
	}
	if (n > 1)
		qsort(d->sdeps, n, sizeof *d->sdeps, dep_id_cmp);
	CRDT_TRY(crdt__w_header(out, CRDT__KIND_MSG, 6));
	CRDT_TRY(crdt__w_id(out, &d->self));
	CRDT_TRY(crdt__w_uint(out, counter));
	CRDT_TRY(crdt__w_uint(out, hlc));
	CRDT_TRY(crdt__w_array(out, 2 * n));
	for (size_t i = 0; i < n; i++) {
		CRDT_TRY(crdt__w_id(out, &d->sdeps[i].id));
		CRDT_TRY(crdt__w_uint(out, d->sdeps[i].c));
	}
	/* payload = bin(array(nops) ++ staged ops) */
	uint8_t hdr[5];
	size_t hl;
	if (d->stage_ops < 16) {
		hdr[0] = (uint8_t)(0x90 | d->stage_ops);
		hl = 1;
	} else if (d->stage_ops <= UINT16_MAX) {
		hdr[0] = 0xdc;
		hdr[1] = (uint8_t)(d->stage_ops >> 8);
		hdr[2] = (uint8_t)d->stage_ops;
		hl = 3;
	} else {
		if (d->stage_ops > UINT32_MAX)
			return CRDT_ETOOBIG;
		hdr[0] = 0xdd;
		for (int i = 0; i < 4; i++)
			hdr[1 + i] = (uint8_t)(d->stage_ops >> (24 - 8 * i));
		hl = 5;
	}
	size_t plen = hl + d->stage.len;
	if (d->encrypted) {
		crdt_buf_clear(&d->plain);
		CRDT_TRY(crdt_buf_append(&d->plain, hdr, hl));
		CRDT_TRY(crdt_buf_append(&d->plain, d->stage.data,
		    d->stage.len));
		CRDT_TRY(crdt__keys_seal(&d->keys, &d->cfg.doc_id, out, mark,
		    d->plain.data, d->plain.len));
	} else {
		CRDT_TRY(crdt__w_bin_header(out, plen));
		CRDT_TRY(crdt_buf_append(out, hdr, hl));
		CRDT_TRY(crdt_buf_append(out, d->stage.data, d->stage.len));
	}
	CRDT_TRY(w_auth(d, out, mark));
	*ndeps = n;
	return 0;
}

int
crdt_doc_commit(crdt_doc *d, crdt_buf *msg_out)
{
	if (d == NULL || msg_out == NULL)
		return CRDT_EINVAL;
	if (!d->in_txn || (d->signed_mode && d->ident == NULL) ||
	    crdt__is_relay(d))
		return CRDT_ESTATE;
	/* More of our own history exists than we hold (fork.c): the next
	 * counter may already name other ops, so no dot is issued until we
	 * caught up on it or the application dismissed the claim. */
	if (crdt__forked(d))
		return CRDT_EFORKED;
	rstate *me = &d->rs[d->self_idx];
	if (me->vc == UINT64_MAX)
		return CRDT_EOVERFLOW;
	uint64_t counter = me->vc + 1;
	crdt_hlc saved = d->clock;
	uint64_t hlc;
	CRDT_TRY(crdt_hlc_now(&d->clock, &hlc));
	if (d->stage_ops > 0 && hlc > UINT64_MAX - (d->stage_ops - 1)) {
		d->clock = saved;
		return CRDT_EOVERFLOW;
	}
	size_t mark = msg_out->len, ndeps = 0;
	int rc = encode_msg(d, msg_out, counter, hlc, &ndeps);
	if (rc == 0 && msg_out->len - mark > d->cfg.limits.max_bytes)
		rc = CRDT_ETOOBIG;
	if (rc == 0) {
		const uint8_t *m = msg_out->data + mark;
		size_t mlen = msg_out->len - mark;
		msgview mv;
		/* Apply through the same path as a remote message, so the
		 * local state is exactly what every receiver will get. */
		rc = crdt__parse_msg(d, m, mlen, &mv, false);
		if (rc == 0)
			rc = crdt__open_msg(d, &mv, false);
		if (rc == 0)
			rc = crdt__apply_msg(d, d->self_idx, counter, hlc, m,
			    mlen, mv.payload, mv.plen, CRDT_UPDATE_LOCAL, NULL,
			    crdt__own_admin(d), 0);
	}
	if (rc < 0) {
		d->clock = saved;
		msg_out->len = mark;
		return rc;
	}
	for (size_t i = 0; i < d->ndirty; i++) {
		rstate *r = &d->rs[d->dirty[i]];
		r->sent = r->vc;
		r->dirty = false;
	}
	d->ndirty = 0;
	crdt_doc_abort(d);
	rc = crdt__release(d, d->self_idx);
	crdt__store_settle(d); /* an automatic checkpoint falls due here */
	return rc;
}

/*
 * Staging: every mutation appends one op to the open transaction, or, with
 * none open, runs as a one-op transaction. crdt__stage_open/close carry
 * that logic for all object types (and chat_api.c's, authz.c's ops).
 */
int
crdt__stage_open(crdt_doc *d, crdt_buf *msg_out, bool *one, size_t *mark)
{
	if (d->in_txn == (msg_out != NULL))
		return CRDT_ESTATE;
	*one = !d->in_txn;
	if (*one)
		CRDT_TRY(crdt_doc_begin(d));
	*mark = d->stage.len;
	return 0;
}

int
crdt__stage_close(crdt_doc *d, bool one, size_t mark, int rc,
    crdt_buf *msg_out)
{
	if (rc < 0) {
		d->stage.len = mark;
		if (one)
			crdt_doc_abort(d);
		return rc;
	}
	d->stage_ops++;
	if (!one)
		return 0;
	rc = crdt_doc_commit(d, msg_out);
	if (rc < 0)
		crdt_doc_abort(d);
	return rc;
}

static int
stage_op(crdt_doc *d, uint32_t on, crdt_obj_type type, const void *a,
    size_t alen, bool bpresent, const void *b, size_t blen,
    crdt_buf *msg_out)
{
	bool one;
	size_t mark;

	if (d == NULL || (a == NULL && alen != 0) ||
	    (bpresent && b == NULL && blen != 0))
		return CRDT_EINVAL;
	if (on >= d->nobjs || d->objs[on].type != type || d->objs[on].acl)
		return CRDT_ESCHEMA;
	if (alen > d->cfg.limits.max_value_bytes ||
	    blen > d->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	CRDT_TRY(crdt__stage_open(d, msg_out, &one, &mark));
	crdt_buf *s = &d->stage;
	int rc = crdt__w_array(s, crdt__op_arity(type));
	if (rc == 0)
		rc = crdt__w_uint(s, on);
	if (rc == 0 && type == CRDT_OBJ_GSET)
		rc = crdt__w_bin(s, a, alen);
	else if (rc == 0 && type == CRDT_OBJ_LWW)
		rc = bpresent ? crdt__w_bin(s, a, alen) : crdt__w_nil(s);
	else if (rc == 0) {
		rc = crdt__w_bin(s, a, alen);
		if (rc == 0)
			rc = bpresent ? crdt__w_bin(s, b, blen) :
			    crdt__w_nil(s);
	}
	return crdt__stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_gset_add(crdt_doc *d, uint32_t on, const void *elem, size_t len,
    crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_GSET, elem, len, false, NULL, 0,
	    msg_out);
}

int
crdt_doc_lww_set(crdt_doc *d, uint32_t on, const void *value, size_t len,
    crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_LWW, value, len, true, NULL, 0,
	    msg_out);
}

int
crdt_doc_lww_clear(crdt_doc *d, uint32_t on, crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_LWW, NULL, 0, false, NULL, 0,
	    msg_out);
}

int
crdt_doc_map_set(crdt_doc *d, uint32_t on, const void *key, size_t klen,
    const void *value, size_t vlen, crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_MAP, key, klen, true, value, vlen,
	    msg_out);
}

int
crdt_doc_map_remove(crdt_doc *d, uint32_t on, const void *key, size_t klen,
    crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_MAP, key, klen, false, NULL, 0,
	    msg_out);
}

/* The admin's grant or revoke: [obj, writer, allowed] on the hidden
 * allowlist G-Set, staged like any other op (security.md). */
int
crdt_doc_allow(crdt_doc *d, const crdt_replica_id *writer, bool allowed,
    crdt_buf *msg_out)
{
	bool one;
	size_t mark;

	if (d == NULL || writer == NULL)
		return CRDT_EINVAL;
	if (!d->has_admin)
		return CRDT_ESTATE;
	if (crdt_replica_id_cmp(&d->self, &d->admin) != 0)
		return CRDT_EPERM;
	CRDT_TRY(crdt__stage_open(d, msg_out, &one, &mark));
	crdt_buf *s = &d->stage;
	int rc = crdt__w_array(s, 3);
	if (rc == 0)
		rc = crdt__w_uint(s, d->acl_obj);
	if (rc == 0)
		rc = crdt__w_id(s, writer);
	if (rc == 0)
		rc = crdt__w_uint(s, allowed ? 1 : 0);
	return crdt__stage_close(d, one, mark, rc, msg_out);
}
