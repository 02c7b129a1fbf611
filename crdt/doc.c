/*
 * Document runtime: schema, the ingest pipeline (decode, authenticate,
 * authorise, admit, apply or buffer) and change events. Transactions,
 * snapshots, sync and the chat mutations sit above it in their own files;
 * the log, evidence, keys, allowlist index and causal buffer structures
 * below it (docs/design.md, "Layers").
 *
 * Replica IDs are interned into a dense table (uint32_t index); the vector
 * clock, the causal buffer and the log are arrays indexed by it, so the hot
 * path never compares 16-byte IDs.
 */

#include "doc_impl.h"

/* ---------------------------------------------------------------- */
/* lifecycle and schema                                             */

void
crdt__obj_free(dobj *o)
{
	switch (o->type) {
	case CRDT_OBJ_GSET:
		crdt_gset_free(o->o);
		break;
	case CRDT_OBJ_LWW:
		crdt_lww_free(o->o);
		break;
	case CRDT_OBJ_MAP:
		crdt_lww_map_free(o->o);
		break;
	case CRDT_OBJ_CHAT:
		crdt__chat_free(o->o);
		break;
	}
	o->o = NULL;
}

int
crdt_doc_new(const crdt_config *cfg, const crdt_replica_id *self,
    crdt_doc **out)
{
	crdt_config c;

	if (self == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__config_resolve(cfg, &c));
	crdt_doc *d = crdt__malloc(&c.alloc, sizeof *d);
	if (d == NULL)
		return CRDT_ENOMEM;
	memset(d, 0, sizeof *d);
	d->cfg = c;
	d->self = *self;
	d->free_bm = UINT32_MAX;
	d->undo.a = &d->cfg.alloc;
	crdt_hlc_init(&d->clock, &d->cfg);
	crdt_buf_init(&d->stage, &d->cfg.alloc);
	crdt_buf_init(&d->scratch, &d->cfg.alloc);
	crdt_buf_init(&d->plain, &d->cfg.alloc);
	crdt__keys_init(&d->keys, &d->cfg.alloc);
	crdt__ev_init(&d->ev, &d->cfg.alloc, d->cfg.max_buffered_msgs,
	    d->cfg.max_variants, d->cfg.max_evidence_bytes);
	crdt__log_init(&d->log, &d->cfg.alloc, d->cfg.log_max_msgs,
	    d->cfg.log_max_bytes);
	int rc = crdt__table_init(&d->reps, &d->cfg.alloc, sizeof(rep_entry));
	if (rc == 0)
		rc = crdt__dots_init(&d->dots, &d->cfg.alloc);
	if (rc == 0)
		rc = crdt__rep_intern(d, self, &d->self_idx);
	if (rc == 0) {
		d->logview = crdt__malloc(&d->cfg.alloc, sizeof *d->logview);
		if (d->logview != NULL)
			crdt_buf_init(d->logview, &d->cfg.alloc);
		else
			rc = CRDT_ENOMEM;
	}
	if (rc < 0) {
		crdt_doc_free(d);
		return rc;
	}
	*out = d;
	return 0;
}


void
crdt_doc_free(crdt_doc *d)
{
	if (d == NULL)
		return;
	crdt_allocator a = d->cfg.alloc;
	crdt__undo_fini(&d->undo);
	for (size_t i = 0; i < d->nobjs; i++)
		crdt__obj_free(&d->objs[i]);
	crdt__free(&a, d->objs, d->capobjs * sizeof *d->objs);
	for (size_t i = 0; i < d->nbm; i++)
		if (d->bm[i].live)
			crdt__bmsg_release(d, (uint32_t)i);
	crdt__free(&a, d->bm, d->capbm * sizeof *d->bm);
	crdt__dots_fini(&d->dots);
	for (size_t i = 0; i < d->nrs; i++) {
		rstate *r = &d->rs[i];
		crdt__wheap_fini(&r->heap, &a);
		crdt__free(&a, r->steps, r->capsteps * sizeof *r->steps);
	}
	crdt__free(&a, d->rs, d->caprs * sizeof *d->rs);
	crdt__free(&a, d->dirty, d->capdirty * sizeof *d->dirty);
	crdt__log_fini(&d->log);
	crdt__free(&a, d->sdeps, d->capsdeps * sizeof *d->sdeps);
	crdt_buf_fini(&d->stage);
	crdt_buf_fini(&d->scratch);
	if (d->logview != NULL) {
		crdt_buf_fini(d->logview);
		crdt__free(&a, d->logview, sizeof *d->logview);
	}
	crdt_buf_fini(&d->plain);
	crdt__acl_fini(&d->acl);
	crdt__ev_fini(&d->ev);
	for (size_t i = 0; i < d->ndgc; i++)
		crdt__free(&d->cfg.alloc, d->dgc[i].v,
		    d->dgc[i].n * sizeof *d->dgc[i].v);
	crdt__free(&d->cfg.alloc, d->dgc, d->ndgc * sizeof *d->dgc);
	crdt__keys_fini(&d->keys);
	crdt__table_fini(&d->reps, NULL);
	crdt__store_fini(d);
	crdt__free(&a, d, sizeof *d);
}

const crdt_replica_id *
crdt_doc_self(const crdt_doc *d)
{
	return d ? &d->self : NULL;
}

static int
new_object(const crdt_doc *d, crdt_obj_type type,
    const crdt_replica_id *server, void **o)
{
	switch (type) {
	case CRDT_OBJ_CHAT:
		return crdt__chat_new(&d->cfg, &d->self, server,
		    (crdt_chat **)o);
	case CRDT_OBJ_GSET:
		return crdt_gset_new(&d->cfg, &d->self, (crdt_gset **)o);
	case CRDT_OBJ_LWW:
		return crdt_lww_new(&d->cfg, &d->self, (crdt_lww **)o);
	case CRDT_OBJ_MAP:
		return crdt_lww_map_new(&d->cfg, &d->self, (crdt_lww_map **)o);
	}
	return CRDT_EINVAL;
}

int
crdt_doc_lookup(const crdt_doc *d, const char *name, uint32_t *objn)
{
	if (d == NULL || name == NULL)
		return CRDT_EINVAL;
	for (size_t i = 0; i < d->nobjs; i++) {
		if (strcmp(d->objs[i].name, name) == 0) {
			if (objn != NULL)
				*objn = (uint32_t)i;
			return 0;
		}
	}
	return CRDT_ENOTFOUND;
}

static int get_obj(const crdt_doc *d, uint32_t n, crdt_obj_type type,
    const void *out);

int
crdt__register_obj(crdt_doc *d, const char *name, crdt_obj_type type,
    const crdt_replica_id *server, uint32_t *objn)
{
	if (d == NULL || name == NULL)
		return CRDT_EINVAL;
	size_t nlen = strlen(name);
	if (nlen == 0 || nlen > CRDT_OBJ_NAME_MAX)
		return CRDT_EINVAL;
	if (d->has_data || d->in_txn)
		return CRDT_ESTATE;
	if (crdt_doc_lookup(d, name, NULL) == 0)
		return CRDT_EINVAL;
	void *v = d->objs;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &d->capobjs, d->nobjs + 1,
	    sizeof *d->objs));
	d->objs = v;
	dobj *o = &d->objs[d->nobjs];
	memset(o, 0, sizeof *o);
	CRDT_TRY(new_object(d, type, server, &o->o));
	memcpy(o->name, name, nlen + 1);
	o->type = type;
	if (objn != NULL)
		*objn = (uint32_t)d->nobjs;
	d->nobjs++;
	return 0;
}

int
crdt_doc_register(crdt_doc *d, const char *name, crdt_obj_type type,
    uint32_t *objn)
{
	if (type != CRDT_OBJ_GSET && type != CRDT_OBJ_LWW &&
	    type != CRDT_OBJ_MAP)
		return CRDT_EINVAL;
	return crdt__register_obj(d, name, type, NULL, objn);
}

int
crdt_doc_register_chat(crdt_doc *d, const char *name,
    const crdt_replica_id *server, uint32_t *objn)
{
	return crdt__register_obj(d, name, CRDT_OBJ_CHAT, server, objn);
}

int
crdt_doc_chat(const crdt_doc *d, uint32_t n, const crdt_chat **out)
{
	CRDT_TRY(get_obj(d, n, CRDT_OBJ_CHAT, out));
	*out = d->objs[n].o;
	return 0;
}

static int
get_obj(const crdt_doc *d, uint32_t n, crdt_obj_type type, const void *out)
{
	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	if (n >= d->nobjs || d->objs[n].type != type)
		return CRDT_ESCHEMA;
	return 0;
}

int
crdt_doc_gset(const crdt_doc *d, uint32_t n, const crdt_gset **out)
{
	CRDT_TRY(get_obj(d, n, CRDT_OBJ_GSET, out));
	*out = d->objs[n].o;
	return 0;
}

int
crdt_doc_lww(const crdt_doc *d, uint32_t n, const crdt_lww **out)
{
	CRDT_TRY(get_obj(d, n, CRDT_OBJ_LWW, out));
	*out = d->objs[n].o;
	return 0;
}

int
crdt_doc_map(const crdt_doc *d, uint32_t n, const crdt_lww_map **out)
{
	CRDT_TRY(get_obj(d, n, CRDT_OBJ_MAP, out));
	*out = d->objs[n].o;
	return 0;
}

void
crdt_doc_set_listener(crdt_doc *d, const crdt_doc_listener *l)
{
	if (d == NULL)
		return;
	if (l != NULL)
		d->l = *l;
	else
		memset(&d->l, 0, sizeof d->l);
}

/* ---------------------------------------------------------------- */
/* message decoding                                                 */

size_t
crdt__op_arity(crdt_obj_type t)
{
	return t == CRDT_OBJ_MAP ? 3 : 2;
}

/* What apply_ops needs to stamp writes; NULL = validate only. */
typedef struct stamp {
	crdt_dot dot;
	uint64_t hlc;
} stamp;

/*
 * Walk a payload: [op, op, ...], op = [obj, elem] (G-Set),
 * [obj, value|nil] (LWW), [obj, key, value|nil] (map). With `st`, apply
 * each op through the undo log; op i is stamped hlc + i so a later write in
 * the same transaction wins over an earlier one.
 */
static int
walk_ops(crdt_doc *d, const uint8_t *p, size_t len, size_t *nops,
    const stamp *st, const crdt_replica_id *sender)
{
	crdt__rd r;
	size_t n;

	CRDT_TRY(crdt__rd_init(&r, &d->cfg.limits, p, len));
	CRDT_TRY(crdt__rd_array(&r, &n));
	uint64_t walk = ++d->walk_serial;
	d->splice_obj = UINT32_MAX;
	d->ptail.src = NULL;
	for (size_t i = 0; i < n; i++) {
		size_t k;
		uint64_t on;
		const uint8_t *a, *b = NULL;
		size_t alen, blen = 0;
		bool present = true;

		CRDT_TRY(crdt__rd_array(&r, &k));
		CRDT_TRY(crdt__rd_uint(&r, &on));
		if (on >= d->nobjs)
			return CRDT_ESCHEMA;
		dobj *o = &d->objs[on];
		if (o->type == CRDT_OBJ_CHAT) {
			uint64_t kind;
			if (k < 2)
				return CRDT_EMALFORMED;
			CRDT_TRY(crdt__rd_uint(&r, &kind));
			if (kind == 0) { /* one post per thread per message */
				if (o->post_walk == walk)
					return CRDT_EMALFORMED;
				o->post_walk = walk;
			}
			crdt_dot dot = { { { 0 } }, 0 };
			uint64_t ts = 0;
			if (st != NULL) {
				dot = st->dot;
				ts = st->hlc + i;
			} else if (sender != NULL) {
				dot.replica = *sender;
			}
			bool one = st != NULL && n == 1;
			CRDT_TRY(crdt__chat_op(o->o, &r, k, kind, dot, ts,
			    st ? &d->undo : NULL, (uint32_t)on, &d->scratch,
			    walk, one ? &d->ptail : NULL));
			r.depth--;
			if (one && d->ptail.src != NULL)
				d->splice_obj = (uint32_t)on;
			continue;
		}
		if (o->acl) {
			/* [obj, writer id, allowed]: the admin's alone. The
			 * record kept is [writer, admin counter, allowed]. */
			crdt_replica_id wid;
			uint64_t allowed;
			if (k != 3)
				return CRDT_EMALFORMED;
			CRDT_TRY(crdt__rd_id(&r, &wid));
			CRDT_TRY(crdt__rd_uint(&r, &allowed));
			r.depth--;
			const crdt_replica_id *who = st ? &st->dot.replica :
							  sender;
			if (allowed > 1 || who == NULL)
				return CRDT_EMALFORMED;
			if (crdt_replica_id_cmp(who, &d->admin) != 0)
				return CRDT_EPERM;
			if (st == NULL)
				continue;
			crdt_buf *sc = &d->scratch;
			crdt_buf_clear(sc);
			CRDT_TRY(crdt__w_array(sc, 3));
			CRDT_TRY(crdt__w_id(sc, &wid));
			CRDT_TRY(crdt__w_uint(sc, st->dot.counter));
			CRDT_TRY(crdt__w_uint(sc, allowed));
			CRDT_TRY(crdt__gset_write(o->o, sc->data, sc->len,
			    st->dot, &d->undo, (uint32_t)on));
			continue;
		}
		if (k != crdt__op_arity(o->type))
			return CRDT_EMALFORMED;
		if (o->type == CRDT_OBJ_GSET) {
			CRDT_TRY(crdt__rd_bin(&r, &a, &alen));
		} else if (o->type == CRDT_OBJ_LWW) {
			CRDT_TRY(crdt__rd_opt_bin(&r, &a, &alen, &present));
		} else {
			CRDT_TRY(crdt__rd_bin(&r, &a, &alen));
			CRDT_TRY(crdt__rd_opt_bin(&r, &b, &blen, &present));
		}
		r.depth--;
		if (st == NULL)
			continue;
		uint64_t ts = st->hlc + i;
		const crdt_replica_id *w = &st->dot.replica;
		uint32_t oi = (uint32_t)on;
		if (o->type == CRDT_OBJ_GSET)
			CRDT_TRY(crdt__gset_write(o->o, a, alen, st->dot,
			    &d->undo, oi));
		else if (o->type == CRDT_OBJ_LWW)
			CRDT_TRY(crdt__lww_write(o->o, ts, w, present, a, alen,
			    &d->undo, oi));
		else
			CRDT_TRY(crdt__map_write(o->o, a, alen, ts, w, present,
			    b, blen, &d->undo, oi));
	}
	CRDT_TRY(crdt__rd_done(&r));
	*nops = n;
	return 0;
}

/* crdt__env_parse()'s sink: the document's dependency scratch array. */
static crdt__iddep *
sdeps_room(void *ud, size_t n)
{
	crdt_doc *d = ud;
	void *v = d->sdeps;
	if (crdt__grow(&d->cfg.alloc, &v, &d->capsdeps, n,
		sizeof *d->sdeps) != 0)
		return NULL;
	d->sdeps = v;
	return d->sdeps;
}

/*
 * Message: [1, 5, sender, counter, hlc, deps, payload, auth]. `payload` is
 * a bin holding the ops so that encrypted mode can seal it without changing
 * the header a relay reads; `auth` (nil) is where a signature will go.
 */
static int
validate_ops(crdt_doc *d, msgview *mv)
{
	CRDT_TRY(walk_ops(d, mv->payload, mv->plen, &mv->nops, NULL,
	    &mv->sender));
	/* Op stamps are hlc + i; they must not wrap. */
	if (mv->nops > 0 && mv->hlc > UINT64_MAX - (mv->nops - 1))
		return CRDT_EMALFORMED;
	return 0;
}

/*
 * Check the signature (`verify`) and open a sealed payload. The signature
 * covers every byte before the auth slot; the AEAD's associated data is
 * every byte before the payload (the header a relay reads). A relay keeps
 * the payload opaque (mv->payload NULL).
 */
int
crdt__open_msg(crdt_doc *d, msgview *mv, bool verify)
{
	if (verify && (mv->has_auth || d->signed_mode)) {
		uint8_t h[32];
		crdt_replica_id id;
		if (!mv->has_auth)
			return CRDT_EBADSIG;
		CRDT_TRY(crdt_replica_id_from_public_key(mv->pk, &id));
		if (crdt_replica_id_cmp(&id, &mv->sender) != 0)
			return CRDT_EBADKEY;
		CRDT_TRY(crdt__env_sig_digest(h, mv->version, &d->cfg.doc_id,
		    mv->bytes, mv->auth_off));
		CRDT_TRY(crdt__verify(mv->sig, h, sizeof h, mv->pk));
	}
	if (!mv->sealed || mv->opened || crdt__is_relay(d)) {
		mv->opened = true;
		return 0;
	}
	const crdt__epoch_key *k = crdt__keys_find(&d->keys, mv->epoch);
	if (k == NULL)
		return CRDT_ENOKEY;
	size_t plen = mv->ctlen - CRDT__TAG_BYTES;
	crdt_buf_clear(&d->plain);
	if (plen + 1 > d->plain.cap) { /* grow; ctlen >= plen + 16 */
		CRDT_TRY(crdt_buf_append(&d->plain, mv->ct, plen + 1));
		crdt_buf_clear(&d->plain);
	}
	uint8_t adbuf[32];
	const uint8_t *ad;
	size_t adlen;
	CRDT_TRY(crdt__env_ad(adbuf, mv->version, &d->cfg.doc_id, mv->bytes,
	    mv->payload_off, &ad, &adlen));
	CRDT_TRY(crdt__aead_open(d->plain.data, mv->ct, mv->ctlen, ad, adlen,
	    mv->nonce, k->key));
	d->plain.len = plen;
	mv->payload = d->plain.data;
	mv->plen = plen;
	mv->opened = true;
	return 0;
}

/*
 * Decode the envelope; with `ops`, also validate every op. A message that
 * is applied at once skips the op validation: applying walks the ops
 * anyway, through the undo log, and rolls everything back on the first
 * bad op, so the result is the same for half the work.
 */
int
crdt__parse_msg(crdt_doc *d, const void *bytes, size_t len, msgview *mv,
    bool ops)
{
	crdt__env e;

	CRDT_TRY(crdt__env_parse(&d->cfg.limits, bytes, len, &e, sdeps_room,
	    d));
	/* A version-1 message names no document, signed or not. */
	if (e.version == 1 && !crdt__doc_id_zero(&d->cfg.doc_id))
		return CRDT_EWRONGDOC;
	mv->version = e.version;
	mv->sender = e.sender;
	mv->counter = e.counter;
	mv->hlc = e.hlc;
	mv->ndeps = e.ndeps;
	mv->bytes = bytes;
	mv->end = (const uint8_t *)bytes + len;
	mv->payload_off = e.payload_off;
	mv->auth_off = e.auth_off;
	mv->sealed = e.sealed;
	mv->opened = false;
	mv->payload = e.payload;
	mv->plen = e.plen;
	mv->epoch = e.epoch;
	mv->nonce = e.nonce;
	mv->ct = e.ct;
	mv->ctlen = e.ctlen;
	mv->has_auth = e.has_auth;
	mv->pk = e.pk;
	mv->sig = e.sig;
	/* The mode is part of the document's schema: a plaintext message in
	 * an encrypted document, or the reverse, is refused everywhere. */
	if (mv->sealed != d->encrypted)
		return d->encrypted ? CRDT_EDECRYPT : CRDT_EMALFORMED;
	mv->nops = 0;
	if (!ops)
		return mv->sealed ? 0 : (mv->opened = true, 0);
	CRDT_TRY(crdt__open_msg(d, mv, true));
	return mv->payload != NULL ? validate_ops(d, mv) : 0;
}

/* ---------------------------------------------------------------- */
/* apply                                                            */

static void
emit_changes(crdt_doc *d, crdt_dot dot)
{
	for (size_t i = 0; i < d->undo.n; i++) {
		const crdt__undo_rec *u = &d->undo.v[i];
		crdt_change ch;
		const crdt__reg *now = NULL;
		const crdt__key *k = NULL;
		memset(&ch, 0, sizeof ch);
		ch.obj = u->obj;
		ch.dot = dot;
		if (d->objs[u->obj].acl) {
			if (u->kind == CRDT__UNDO_GSET_NEW) {
				const crdt__key *ak = crdt__gset_entry_key(
				    u->target, u->idx);
				/* Cannot fail: crdt__authz_prepare made
				 * room. */
				int arc = crdt__acl_add(&d->acl, ak->ptr,
				    ak->len);
				assert(arc == 0);
				(void)arc;
			}
			continue;
		}
		if (d->objs[u->obj].type == CRDT_OBJ_CHAT) {
			/* The thread's index follows every change, listener
			 * or not. */
			if (crdt__chat_after(d->objs[u->obj].o, u, &ch,
			    d->l.on_change != NULL) && d->l.on_change != NULL)
				d->l.on_change(d->l.ud, &ch);
			continue;
		}
		if (d->l.on_change == NULL)
			continue;
		switch (u->kind) {
		case CRDT__UNDO_GSET_NEW:
			ch.kind = CRDT_CHANGE_GSET_ADD;
			k = crdt__gset_entry_key(u->target, u->idx);
			break;
		case CRDT__UNDO_LWW:
			ch.kind = CRDT_CHANGE_LWW_SET;
			now = crdt__lww_reg(u->target);
			break;
		case CRDT__UNDO_MAP_NEW:
		case CRDT__UNDO_MAP_REG:
			ch.kind = CRDT_CHANGE_MAP_SET;
			k = crdt__map_entry(u->target, u->idx, &now);
			break;
		default:
			continue; /* dot lowered: nothing a UI shows */
		}
		if (k != NULL) {
			ch.key = k->ptr;
			ch.key_len = k->len;
		}
		if (now != NULL) {
			const crdt__reg *old = &u->old;
			if (u->kind == CRDT__UNDO_MAP_NEW)
				old = NULL;
			ch.has_old = old != NULL &&
			    old->state == CRDT__REG_VALUE;
			ch.old_value = ch.has_old ? old->val : NULL;
			ch.old_len = ch.has_old ? old->len : 0;
			ch.has_new = now->state == CRDT__REG_VALUE;
			ch.new_value = ch.has_new ? now->val : NULL;
			ch.new_len = ch.has_new ? now->len : 0;
			if (!ch.has_old && !ch.has_new)
				continue; /* absent -> absent */
		}
		d->l.on_change(d->l.ud, &ch);
	}
}

/* One message on its way into the state (see apply_core). */
typedef struct ingest {
	uint32_t sender;
	uint64_t counter, hlc;
	const uint8_t *bytes;
	size_t len;
	const uint8_t *payload; /* NULL: a relay, the ops are sealed */
	size_t plen;
	crdt_update_source src;
	void *caller;
	uint64_t listed, causal; /* admin counters: named, and causal past */
	/* An equivocation variant: the dot is applied already, so only its
	 * ops join (the union); `first` is the variant it conflicts with. */
	bool variant;
	const uint8_t *first;
	size_t flen;
} ingest;

/*
 * Whether the message's only op, a chat post, wrote a record holding the
 * op's tail as the message has it (crdt__chat_tail), so the log can
 * keep the message without it: stored once, in the state (msglog.h). Not
 * for a sealed message, whose payload is a decrypted copy, not a part of
 * its bytes; nor when the splice would not be smaller.
 */
static bool
log_splice(const crdt_doc *d, const ingest *in, crdt__log_splice *sp)
{
	if (d->splice_obj == UINT32_MAX)
		return false;
	const crdt__chat_tail *t = &d->ptail;
	uintptr_t b = (uintptr_t)in->bytes, s = (uintptr_t)t->src;
	if (s < b || s - b > in->len || t->len > in->len - (s - b))
		return false;
	*sp = (crdt__log_splice){ t->rec, t->off, (size_t)(s - b), t->len,
		d->splice_obj };
	return crdt__log_stored_size(in->len, sp) < in->len;
}

/*
 * Apply one authenticated, causally ready message: a fresh one, a
 * buffered one released, a local commit or an equivocation variant, all
 * through here, so each is authorised, stamped and reported alike.
 * All or nothing: on failure the document is exactly as before.
 */
static int
apply_core(crdt_doc *d, const ingest *in)
{
	uint32_t sender = in->sender;
	size_t nops = 0;
	stamp st = { { d->rs[sender].id, in->counter }, in->hlc };
	uint64_t admin_at = CRDT_MAX(in->listed, in->causal);

	CRDT_TRY(crdt__authorise(d, &d->rs[sender].id, in->listed, in->causal));
	if (!in->variant)
		CRDT_TRY(crdt__steps_reserve(d, sender, admin_at));
	int rc = 0;
	d->splice_obj = UINT32_MAX;
	if (in->payload != NULL)
		rc = walk_ops(d, in->payload, in->plen, &nops, &st, NULL);
	if (rc == 0 && nops > 0 && in->hlc > UINT64_MAX - (nops - 1))
		rc = CRDT_EMALFORMED; /* op stamps hlc + i must not wrap */
	/* Room for the log's entry (msglog.h), spliced when the ops just
	 * copied most of the message into the state: the push below
	 * cannot fail, and a failure here or below frees nothing. */
	crdt__log_splice sp, *spp = NULL;
	if (rc == 0 && !in->variant) {
		if (nops == 1 && log_splice(d, in, &sp))
			spp = &sp;
		rc = crdt__log_reserve(&d->log, sender,
		    crdt__log_stored_size(in->len, spp));
	}
	if (rc == 0)
		rc = crdt__authz_prepare(d);
	/* Write-ahead: durable before anything is visible (doc_store.c). A
	 * failure after the append (no memory for the dirty list) leaves the
	 * message stored but not applied: not acknowledged, and replayed on
	 * restart, which is what any stored-unacked message is. */
	if (rc == 0)
		rc = crdt__store_put(d, in->bytes, in->len);
	if (rc == 0 && !in->variant && sender != d->self_idx &&
	    d->rs[sender].vc < in->counter)
		rc = crdt__mark_dirty(d, sender);
	if (rc < 0) {
		crdt__undo_rollback(&d->undo);
		return rc;
	}
	/* Nothing below can fail. */
	if (!in->variant) {
		d->has_data = true;
		d->rs[sender].vc = in->counter;
		crdt__steps_push(d, sender, in->counter, admin_at);
	}
	/* Saved state (snapshots): the greatest admin counter the sender's
	 * messages named, over every variant held. From the bytes alone, not
	 * from this replica's causal-past figure, which depends on which
	 * variant of an equivocated dependency came first: replicas holding
	 * the same messages then save the same bytes. */
	if (!d->has_admin || sender != d->admin_idx) /* the admin names
						     * none of its own */
		d->rs[sender].admin_seen = CRDT_MAX(in->listed,
		    d->rs[sender].admin_seen);
	uint64_t top = nops ? in->hlc + (nops - 1) : in->hlc;
	if (top > d->rs[sender].stamp)
		d->rs[sender].stamp = top;
	if (top > d->hlc_max)
		d->hlc_max = top;
	if (in->src == CRDT_UPDATE_LOCAL) {
		/* Our own commit: stamped by our clock, within the drift
		 * bound, with one stamp per op. */
		if (top > d->clock.last)
			d->clock.last = top;
	} else {
		/* A peer's stamp, even one under our own ID (a peer can
		 * claim any ID in unsigned mode, and our old messages come
		 * back after a restart): the clock follows it only within
		 * the drift bound. */
		int hrc = crdt_hlc_update(&d->clock, top, NULL);
		if (hrc == CRDT_EDRIFT && d->l.on_skew != NULL)
			d->l.on_skew(d->l.ud, &d->rs[sender].id, top,
			    crdt_hlc_physical(&d->clock));
	}
	if (!in->variant)
		crdt__log_push(&d->log, sender, in->counter, in->bytes,
		    in->len, spp);
	if (d->l.on_update != NULL)
		d->l.on_update(d->l.ud, in->src, in->bytes, in->len,
		    in->caller);
	emit_changes(d, st.dot);
	crdt__undo_commit(&d->undo);
	if (in->variant && d->l.on_equivocation != NULL)
		d->l.on_equivocation(d->l.ud, st.dot, in->first, in->flen,
		    in->bytes, in->len);
	return 0;
}

/* A fresh, causally ready message (or our own commit, `admin_listed`
 * being what we have applied of the admin's history). */
int
crdt__apply_msg(crdt_doc *d, uint32_t sender, uint64_t counter, uint64_t hlc,
    const uint8_t *bytes, size_t len, const uint8_t *payload, size_t plen,
    crdt_update_source src, void *caller, uint64_t admin_listed,
    uint64_t admin_causal)
{
	ingest in = { sender, counter, hlc, bytes, len, payload, plen, src,
		caller, admin_listed, admin_causal, false, NULL, 0 };
	return apply_core(d, &in);
}

/* ---------------------------------------------------------------- */
/* receive                                                          */

/* Intern every replica a message names; harmless if it is then refused
 * (the table is internal and never encoded). */
static int
intern_deps(crdt_doc *d, const msgview *mv, uint32_t *sender, bool known,
    dep **out)
{
	if (!known)
		CRDT_TRY(crdt__rep_intern(d, &mv->sender, sender));
	dep *deps = NULL;
	if (mv->ndeps > 0) {
		deps = crdt__malloc(&d->cfg.alloc, mv->ndeps * sizeof *deps);
		if (deps == NULL)
			return CRDT_ENOMEM;
	}
	for (size_t i = 0; i < mv->ndeps; i++) {
		int rc = crdt__rep_intern(d, &d->sdeps[i].id, &deps[i].r);
		if (rc < 0) {
			crdt__free(&d->cfg.alloc, deps,
			    mv->ndeps * sizeof *deps);
			return rc;
		}
		deps[i].c = d->sdeps[i].c;
	}
	*out = deps;
	return 0;
}


/*
 * A message whose dot is already applied. Byte-identical: a duplicate.
 * Different: an equivocation. The resolution must not depend on which
 * half arrived first, and nothing already applied can be taken back, so
 * every replica applies the union of both halves' ops (CRDT ops commute
 * and are idempotent), keeps both halves as evidence (saved in snapshots,
 * sent in every sync DATA frame so the other halves travel too) and
 * reports them. A variant is a write like any other: it is authorised by
 * its own causal past, so a revoked writer cannot write by re-signing an
 * old dot. Detection needs the first half in the log or the evidence; a
 * variant whose dependencies are not all here waits for them in the
 * buffer like any message (buffer_variant), and joins when they come
 * (crdt__release()): dropping it would lose it for good, since sync sees
 * equal clocks and never sends it again.
 */
static int buffer_variant(crdt_doc *d, msgview *mv, uint32_t s, void *caller);

/* crdt__equivocation() against `first` (flen bytes), the logged half, or
 * NULL when the log does not hold the dot. */
static int
equivocation_vs(crdt_doc *d, msgview *mv, uint32_t s, void *caller,
    bool evidence, const uint8_t *first, size_t flen)
{
	crdt_dot dot = { mv->sender, mv->counter };
	size_t at;
	const uint8_t *bytes = mv->bytes;
	size_t len = (size_t)(mv->end - mv->bytes);

	crdt__evid *ev = crdt__ev_find(&d->ev, dot, &at);
	/* Nothing to compare with (the dot came in a snapshot, or left the
	 * log): a duplicate, unless the variant comes in an evidence list,
	 * which carries every variant of the dot. Then apply it like the
	 * others (the union) and keep it; crdt__ev_prune() drops a dot left
	 * with one variant. */
	if (first == NULL && ev == NULL && !evidence)
		return 0;
	if (crdt__ev_has(ev, bytes, len))
		return 0;
	bool need_first = first != NULL && !crdt__ev_has(ev, first, flen);
	CRDT_TRY(crdt__ev_fits(&d->ev, dot, s, len + (need_first ? flen : 0),
	    need_first ? 2 : 1));
	CRDT_TRY(crdt__open_msg(d, mv, true));
	uint64_t listed = 0, causal = crdt__adm_at(d, s, mv->counter - 1);
	for (size_t i = 0; i < mv->ndeps; i++) {
		uint32_t ri;
		if (crdt__rep_find(d, &d->sdeps[i].id, &ri) != 0 ||
		    d->rs[ri].vc < d->sdeps[i].c)
			return buffer_variant(d, mv, s, caller);
	}
	for (size_t i = 0; i < mv->ndeps; i++) {
		uint32_t ri = 0;
		(void)crdt__rep_find(d, &d->sdeps[i].id, &ri); /* found above */
		if (d->has_admin && ri == d->admin_idx)
			listed = d->sdeps[i].c;
		causal = CRDT_MAX(causal, crdt__adm_at(d, ri, d->sdeps[i].c));
	}
	int fadded = 0;
	if (first != NULL) {
		fadded = crdt__ev_add(&d->ev, dot, s, first, flen);
		if (fadded < 0)
			return fadded;
	}
	int added = crdt__ev_add(&d->ev, dot, s, bytes, len);
	if (added < 0) {
		if (fadded == 1)
			crdt__ev_remove(&d->ev, dot, first, flen);
		return added;
	}
	ingest in = { s, mv->counter, mv->hlc, bytes, len, mv->payload,
		mv->plen, CRDT_UPDATE_REMOTE, caller, listed, causal, true,
		first, flen };
	int rc = apply_core(d, &in);
	if (rc < 0) {
		/* Refused: the variant is not evidence of anything, and
		 * nothing changed. */
		crdt__ev_remove(&d->ev, dot, bytes, len);
		if (fadded == 1)
			crdt__ev_remove(&d->ev, dot, first, flen);
		return rc;
	}
	crdt__store_variant(d);
	return 0;
}

int
crdt__equivocation(crdt_doc *d, msgview *mv, uint32_t s, void *caller,
    bool evidence)
{
	const uint8_t *bytes = mv->bytes;
	size_t len = (size_t)(mv->end - mv->bytes);
	logent e;
	if (!crdt__log_get(&d->log, s, mv->counter, &e))
		return equivocation_vs(d, mv, s, caller, evidence, NULL, 0);
	if (crdt__lent_eq(e, bytes, len))
		return 0; /* a duplicate */
	/* The logged half whole, a copy when it is spliced (only an
	 * equivocation pays for it), so evidence and the listener get the
	 * message's bytes. */
	crdt_buf fb;
	const uint8_t *first;
	size_t flen;
	crdt_buf_init(&fb, &d->cfg.alloc);
	int rc = crdt__lent_view(e, &fb, &first, &flen);
	if (rc == 0)
		rc = equivocation_vs(d, mv, s, caller, evidence, first, flen);
	crdt_buf_fini(&fb);
	return rc;
}

/*
 * Authorise before anything is interned or buffered, when that can be
 * decided now: the allowlist as of the admin counter a message lists is
 * known once we hold the admin's history up to it, and it can only be
 * refused later, never allowed (see crdt__authorise()). So a non-member's
 * message is refused here, and its made-up dependencies and bytes never
 * reach the replica table or the buffer. A message listing admin history
 * we lack waits, bounded per sender (buffer_msg).
 */
static int
admit_early(crdt_doc *d, const msgview *mv)
{
	if (!d->has_admin || crdt__is_relay(d))
		return 0;
	uint64_t listed = 0;
	for (size_t i = 0; i < mv->ndeps; i++)
		if (crdt_replica_id_cmp(&d->sdeps[i].id, &d->admin) == 0)
			listed = d->sdeps[i].c;
	if (listed > d->rs[d->admin_idx].vc)
		return 0;
	return crdt__authorise(d, &mv->sender, listed, 0);
}

/*
 * A variant of an applied dot (sender `s` known) whose dependencies are
 * not all here: it waits in the buffer, beside any other variant of the
 * dot that waits, under the same bounds as a fresh message.
 */
static int
buffer_variant(crdt_doc *d, msgview *mv, uint32_t s, void *caller)
{
	const uint8_t *bytes = mv->bytes;
	size_t len = (size_t)(mv->end - mv->bytes);
	uint32_t head = UINT32_MAX, at;
	if (crdt__dots_get(&d->dots, s, mv->counter, &at)) {
		size_t nvar;
		if (crdt__buffered_copy(d, at, bytes, len, &nvar))
			return 0;
		if (nvar >= d->cfg.max_variants)
			return CRDT_ETOOBIG;
		head = at;
	}
	CRDT_TRY(admit_early(d, mv));
	size_t nrs0 = d->nrs;
	dep *deps;
	int rc = intern_deps(d, mv, &s, true, &deps);
	if (rc == 0) {
		rc = mv->payload != NULL ? validate_ops(d, mv) : 0;
		if (rc == 0)
			rc = crdt__buffer_msg(d, mv, s, deps, caller, head,
			    true);
		crdt__free(&d->cfg.alloc, deps, mv->ndeps * sizeof *deps);
	}
	if (rc < 0) /* nothing refers to what it interned */
		crdt__unintern_to(d, nrs0);
	else
		crdt__store_variant(d);
	return rc;
}

/*
 * The ingest pipeline for one message from a peer (docs/security.md,
 * "Ingest"): bounded decode (parse_msg), authenticate (open_msg:
 * signature, AEAD), authorise what can be decided now (admit_early),
 * admit (duplicate and equivocation against the log, the evidence and the
 * buffer), then apply (apply_core) or buffer, then events.
 */
int
crdt__receive_msg(crdt_doc *d, const void *bytes, size_t len, void *caller,
    bool evidence)
{
	msgview mv;
	uint32_t s;
	dep *deps;
	uint32_t head = UINT32_MAX;

	CRDT_TRY(crdt__parse_msg(d, bytes, len, &mv, false));
	/* Cheap duplicate test before any allocation. */
	bool known = crdt__rep_find(d, &mv.sender, &s) == 0;
	if (known && mv.counter <= d->rs[s].vc)
		return crdt__equivocation(d, &mv, s, caller, evidence);
	uint32_t at;
	if (known && crdt__dots_get(&d->dots, s, mv.counter, &at)) {
		size_t nvar;
		if (crdt__buffered_copy(d, at, bytes, len, &nvar))
			return 0;
		/* A second half while the first waits: both wait, and
		 * whichever is applied first, the other joins as an
		 * equivocation, on every replica alike. */
		if (nvar >= d->cfg.max_variants)
			return CRDT_ETOOBIG;
		head = at;
	}
	CRDT_TRY(crdt__open_msg(d, &mv, true));
	CRDT_TRY(admit_early(d, &mv));
	size_t nrs0 = d->nrs;
	int irc = intern_deps(d, &mv, &s, known, &deps);
	if (irc < 0) {
		crdt__unintern_to(d, nrs0);
		return irc;
	}
	bool ready = d->rs[s].vc == mv.counter - 1;
	for (size_t i = 0; ready && i < mv.ndeps; i++)
		ready = d->rs[deps[i].r].vc >= deps[i].c;
	int rc;
	if (ready) {
		rc = crdt__apply_msg(d, s, mv.counter, mv.hlc, bytes, len,
		    mv.payload, mv.plen, CRDT_UPDATE_REMOTE, caller,
		    crdt__listed_admin(d, deps, mv.ndeps),
		    crdt__causal_admin(d, s, mv.counter, deps, mv.ndeps));
		if (rc == 0)
			rc = crdt__release(d, s);
	} else {
		/* Buffered bytes must be known good: validate now (a relay
		 * cannot read them; it checked the signature). */
		rc = mv.payload != NULL ? validate_ops(d, &mv) : 0;
		if (rc == 0)
			rc = crdt__buffer_msg(d, &mv, s, deps, caller, head,
			    false);
		/* Only a waiting message can name our ID above our clock. */
		if (rc == 0)
			crdt__fork_waiting(d, s, mv.counter, deps, mv.ndeps,
			    caller);
	}
	crdt__free(&d->cfg.alloc, deps, mv.ndeps * sizeof *deps);
	/* Refused before anything referred to them (an applied message that
	 * then failed to release others keeps its sender: it is in). */
	if (rc < 0 && d->rs[s].vc < mv.counter &&
	    !crdt__dots_get(&d->dots, s, mv.counter, &at))
		crdt__unintern_to(d, nrs0);
	return rc;
}

int
crdt__receive_one(crdt_doc *d, const void *bytes, size_t len, void *caller)
{
	return crdt__receive_msg(d, bytes, len, caller, false);
}

int
crdt_doc_receive(crdt_doc *d, const void *msg, size_t len, void *caller)
{
	if (d == NULL || msg == NULL)
		return CRDT_EINVAL;
	if (d->in_txn)
		return CRDT_ESTATE;
	int rc = crdt__receive_one(d, msg, len, caller);
	crdt__store_settle(d);
	return rc;
}

size_t
crdt_doc_buffered(const crdt_doc *d)
{
	return d ? d->nbuffered : 0;
}

uint64_t
crdt_doc_hlc(const crdt_doc *d)
{
	return d ? crdt_hlc_last(&d->clock) : 0;
}
