/*
 * Snapshots: crdt_doc_save / crdt_doc_load and their sealed form (doc.h,
 * secure.h; layout in docs/document.md, "Snapshot (kind 6)").
 *
 * A snapshot is merged state: the clock, every object's state, the causal
 * buffer, the allowlist's admin_seen and the equivocation evidence. A load
 * parses and checks all of it before anything changes, and what it brings
 * is then delivered through the same ingest as any message (buffered
 * messages are re-offered; the clock releases what waited on it).
 */
#include <stdlib.h>

#include "doc_impl.h"

/* Whether any replica's admin_seen is non-zero: the snapshot then has the
 * optional admin_seen field (absent otherwise, so every snapshot of a
 * document without an allowlist keeps its layout). */
static bool
any_admin_seen(const crdt_doc *d)
{
	for (size_t i = 0; i < d->nrs; i++)
		if (d->rs[i].admin_seen > 0)
			return true;
	return false;
}

static int
encode_obj(const dobj *o, crdt_buf *out)
{
	switch (o->type) {
	case CRDT_OBJ_GSET:
		return crdt_gset_encode(o->o, out);
	case CRDT_OBJ_LWW:
		return crdt_lww_encode(o->o, out);
	case CRDT_OBJ_MAP:
		return crdt_lww_map_encode(o->o, out);
	case CRDT_OBJ_CHAT:
		return crdt__chat_encode(o->o, out);
	}
	return CRDT_EINVAL;
}

/* A buffered message and its dot, for sorting without the document. */
typedef struct bm_sort {
	crdt_dot dot;
	const bmsg *m;
} bm_sort;

static int
bm_cmp(const void *x, const void *y)
{
	const bm_sort *a = x, *b = y;
	int c = crdt_dot_cmp(a->dot, b->dot);
	/* Variants of one dot (both halves waiting): by bytes. */
	return c != 0 ? c :
			crdt__key_cmp(crdt__bm_bytes(a->m), a->m->len,
			    crdt__bm_bytes(b->m), b->m->len);
}

static int
save_body(const crdt_doc *d, crdt_buf *out, crdt_buf *tmp)
{
	const crdt_allocator *a = &d->cfg.alloc;
	bool seen = any_admin_seen(d);

	/* doc_id, clock, stamps, hlc_max, objects, buffered, [admin_seen,]
	 * evidence */
	CRDT_TRY(crdt__w_header(out, CRDT__KIND_SNAP, seen ? 8 : 7));
	CRDT_TRY(crdt__w_bin(out, d->cfg.doc_id.bytes, CRDT_DOC_ID_BYTES));
	CRDT_TRY(crdt__w_vc_pairs(d, out));
	CRDT_TRY(crdt__w_stamps(d, out));
	CRDT_TRY(crdt__w_uint(out, d->hlc_max));
	CRDT_TRY(crdt__w_array(out, d->nobjs));
	for (size_t i = 0; i < d->nobjs; i++) {
		const dobj *o = &d->objs[i];
		crdt_buf_clear(tmp);
		CRDT_TRY(encode_obj(o, tmp));
		CRDT_TRY(crdt__w_array(out, 3));
		CRDT_TRY(crdt__w_bin(out, o->name, strlen(o->name)));
		CRDT_TRY(crdt__w_uint(out, (uint64_t)o->type));
		CRDT_TRY(crdt__w_bin(out, tmp->data, tmp->len));
	}
	bm_sort *v = NULL;
	if (d->nbuffered > 0) {
		v = crdt__malloc(a, d->nbuffered * sizeof *v);
		if (v == NULL)
			return CRDT_ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < d->nbm; i++)
		/* A copy of what is applied meanwhile (a snapshot moved the
		 * clock past it before its wait ended) is redundant and not
		 * saved, so every covered message a snapshot lists is a
		 * variant, which is how load takes it. */
		if (d->bm[i].live &&
		    (d->bm[i].counter > d->rs[d->bm[i].sender].vc ||
			crdt__covered_variant(d, &d->bm[i]))) {
			const bmsg *m = &d->bm[i];
			v[n++] = (bm_sort){ { d->rs[m->sender].id, m->counter },
				m };
		}
	if (n > 1)
		qsort(v, n, sizeof *v, bm_cmp);
	int rc = crdt__w_array(out, n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = crdt__w_bin(out, crdt__bm_bytes(v[i].m), v[i].m->len);
	crdt__free(a, v, d->nbuffered * sizeof *v);
	if (rc == 0 && seen)
		rc = crdt__w_admin_seen(d, out);
	return rc == 0 ? crdt__ev_write(&d->ev, out) : rc;
}

int
crdt_doc_save(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf tmp;

	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	if (crdt__is_relay(d))
		return CRDT_ESTATE; /* no content to snapshot */
	crdt_buf_init(&tmp, &d->cfg.alloc);
	size_t mark = out->len;
	int rc = save_body(d, out, &tmp);
	crdt_buf_fini(&tmp);
	if (rc < 0)
		out->len = mark;
	return rc;
}

int
crdt_doc_save_sealed(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf plain;

	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	if (!d->encrypted || crdt__is_relay(d))
		return CRDT_ESTATE;
	crdt_buf_init(&plain, &d->cfg.alloc);
	size_t mark = out->len;
	int rc = crdt_doc_save(d, &plain);
	if (rc == 0)
		rc = crdt__w_header(out, CRDT__KIND_SEALED_SNAP, 1);
	if (rc == 0)
		rc = crdt__keys_seal(&d->keys, &d->cfg.doc_id, out, mark,
		    plain.data, plain.len);
	crdt__memzero(plain.data, plain.cap);
	crdt_buf_fini(&plain);
	if (rc < 0)
		out->len = mark;
	return rc;
}

/* Smallest message as an item of a snapshot list: bin8 header (2) and
 * [1, 5, id (18), counter, hlc, [], bin (2), nil] (27). Checked against
 * the bytes left before sizing the list's arrays. */
#define MIN_MSG_BIN 29

/* Everything a snapshot holds, decoded but not yet merged. */
typedef struct snapview {
	iddep *vc;
	size_t nvc;
	uint64_t *stamps; /* per clock entry (version 2), or NULL */
	uint64_t hlc_max;
	void **tmp; /* one decoded object per schema entry */
	bool *changed;
	const uint8_t **bp; /* buffered messages */
	size_t *bl;
	size_t nb;
	uint32_t *jumped;
	size_t njumped;
	const uint8_t **ep; /* equivocation evidence */
	size_t *el;
	size_t ne;
	iddep *seen; /* admin_seen per replica (allowlist only) */
	size_t nseen;
} snapview;

static int
decode_obj(const crdt_doc *d, const dobj *like, const uint8_t *p, size_t n,
    void **o)
{
	switch (like->type) {
	case CRDT_OBJ_CHAT:
		return crdt__chat_decode(like->o, p, n, (crdt_chat **)o);
	case CRDT_OBJ_GSET:
		return crdt_gset_decode(&d->cfg, &d->self, p, n,
		    (crdt_gset **)o);
	case CRDT_OBJ_LWW:
		return crdt_lww_decode(&d->cfg, &d->self, p, n,
		    (crdt_lww **)o);
	case CRDT_OBJ_MAP:
		return crdt_lww_map_decode(&d->cfg, &d->self, p, n,
		    (crdt_lww_map **)o);
	}
	return CRDT_EINVAL;
}

static void
snapview_free(const crdt_doc *d, snapview *sv)
{
	const crdt_allocator *a = &d->cfg.alloc;
	if (sv->tmp != NULL) {
		for (size_t i = 0; i < d->nobjs; i++) {
			dobj o;
			memset(&o, 0, sizeof o);
			o.type = d->objs[i].type;
			o.o = sv->tmp[i];
			crdt__obj_free(&o);
		}
	}
	crdt__free(a, sv->tmp, d->nobjs * sizeof *sv->tmp);
	crdt__free(a, sv->changed, d->nobjs * sizeof *sv->changed);
	crdt__free(a, sv->vc, sv->nvc * sizeof *sv->vc);
	if (sv->stamps != NULL)
		crdt__free(a, sv->stamps, sv->nvc * sizeof *sv->stamps);
	crdt__free(a, sv->bp, sv->nb * sizeof *sv->bp);
	crdt__free(a, sv->bl, sv->nb * sizeof *sv->bl);
	crdt__free(a, sv->jumped, sv->nvc * sizeof *sv->jumped);
	crdt__free(a, sv->ep, sv->ne * sizeof *sv->ep);
	crdt__free(a, sv->el, sv->ne * sizeof *sv->el);
	crdt__free(a, sv->seen, sv->nseen * sizeof *sv->seen);
	memset(sv, 0, sizeof *sv);
}

/* The snapshot's clock entry for `id` (0 if none); sv->vc is ascending. */
static uint64_t
sv_clock(const snapview *sv, const crdt_replica_id *id)
{
	size_t lo = 0, hi = sv->nvc;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = crdt_replica_id_cmp(&sv->vc[mid].id, id);
		if (c == 0)
			return sv->vc[mid].c;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* The optional admin_seen field: present only when non-empty (one
 * encoding per state), only with an allowlist, and each entry as a
 * message would leave it: a replica the snapshot's clock holds messages
 * of, at most the admin counter that clock holds. */
static int
rd_admin_seen(crdt_doc *d, crdt__rd *r, snapview *sv)
{
	CRDT_TRY(crdt__rd_vc_pairs(d, r, &sv->seen, &sv->nseen));
	if (sv->nseen == 0 || !d->has_admin)
		return CRDT_EMALFORMED;
	uint64_t admin = sv_clock(sv, &d->admin);
	for (size_t i = 0; i < sv->nseen; i++)
		if (sv->seen[i].c > admin ||
		    sv_clock(sv, &sv->seen[i].id) == 0)
			return CRDT_EMALFORMED;
	return 0;
}

static int
parse_snap(crdt_doc *d, const void *bytes, size_t len, snapview *sv)
{
	const crdt_allocator *a = &d->cfg.alloc;
	crdt__rd r;
	size_t n;

	CRDT_TRY(crdt__rd_init(&r, &d->cfg.limits, bytes, len));
	unsigned ver;
	CRDT_TRY(crdt__rd_header_v(&r, CRDT__KIND_SNAP, &n, &ver));
	/* Version 2 adds doc_id and stamps; admin_seen is there only when not
	 * empty. */
	size_t base = ver == 1 ? 7 : 9;
	if (n != base && n != base + 1)
		return CRDT_EMALFORMED;
	bool has_seen = n == base + 1;
	/* Checked before anything is decoded: another document's state
	 * must not even be interned. A version-1 snapshot names no
	 * document: only an unbound document takes it. */
	if (ver == 1) {
		if (!crdt__doc_id_zero(&d->cfg.doc_id))
			return CRDT_EWRONGDOC;
	} else {
		const uint8_t *docid;
		size_t idlen;
		CRDT_TRY(crdt__rd_bin(&r, &docid, &idlen));
		if (idlen != CRDT_DOC_ID_BYTES)
			return CRDT_EMALFORMED;
		if (memcmp(docid, d->cfg.doc_id.bytes, CRDT_DOC_ID_BYTES) != 0)
			return CRDT_EWRONGDOC;
	}
	CRDT_TRY(crdt__rd_vc_pairs(d, &r, &sv->vc, &sv->nvc));
	if (ver >= 2) {
		/* One stamp per clock entry: sized by the clock already
		 * checked, never by a claimed count. */
		CRDT_TRY(crdt__rd_array(&r, &n));
		if (n != sv->nvc)
			return CRDT_EMALFORMED;
		if (n > 0) {
			sv->stamps = crdt__malloc(a, n * sizeof *sv->stamps);
			if (sv->stamps == NULL)
				return CRDT_ENOMEM;
		}
		for (size_t i = 0; i < n; i++)
			CRDT_TRY(crdt__rd_uint(&r, &sv->stamps[i]));
		r.depth--;
	}
	CRDT_TRY(crdt__rd_uint(&r, &sv->hlc_max));
	CRDT_TRY(crdt__rd_array(&r, &n));
	if (n != d->nobjs)
		return CRDT_ESCHEMA;
	sv->tmp = crdt__malloc(a, d->nobjs * sizeof *sv->tmp);
	if (sv->tmp == NULL)
		return CRDT_ENOMEM;
	/* Zero at once: snapview_free walks it whatever fails next. */
	memset(sv->tmp, 0, d->nobjs * sizeof *sv->tmp);
	sv->changed = crdt__malloc(a, d->nobjs * sizeof *sv->changed);
	if (sv->changed == NULL)
		return CRDT_ENOMEM;
	memset(sv->changed, 0, d->nobjs * sizeof *sv->changed);
	for (size_t i = 0; i < d->nobjs; i++) {
		const uint8_t *name, *st;
		size_t nlen, slen;
		uint64_t type;
		CRDT_TRY(crdt__rd_array_n(&r, 3));
		CRDT_TRY(crdt__rd_bin(&r, &name, &nlen));
		CRDT_TRY(crdt__rd_uint(&r, &type));
		CRDT_TRY(crdt__rd_blob(&r, &st, &slen));
		r.depth--;
		const dobj *o = &d->objs[i];
		if (nlen != strlen(o->name) || memcmp(name, o->name, nlen) ||
		    type != (uint64_t)o->type)
			return CRDT_ESCHEMA;
		CRDT_TRY(decode_obj(d, o, st, slen, &sv->tmp[i]));
	}
	r.depth--;
	CRDT_TRY(crdt__rd_array(&r, &n));
	CRDT_TRY(crdt__rd_fits(&r, n, MIN_MSG_BIN));
	sv->bp = crdt__malloc(a, n * sizeof *sv->bp);
	sv->bl = crdt__malloc(a, n * sizeof *sv->bl);
	sv->nb = n;
	if (sv->bp == NULL || sv->bl == NULL)
		return CRDT_ENOMEM;
	crdt_dot prev = { { { 0 } }, 0 };
	for (size_t i = 0; i < n; i++) {
		msgview mv;
		CRDT_TRY(crdt__rd_blob(&r, &sv->bp[i], &sv->bl[i]));
		CRDT_TRY(crdt__parse_msg(d, sv->bp[i], sv->bl[i], &mv, true));
		crdt_dot dot = { mv.sender, mv.counter };
		/* Ascending by dot, then bytes: both halves of an
		 * equivocation may wait (see buffer_msg). */
		int dc = i > 0 ? crdt_dot_cmp(prev, dot) : -1;
		if (dc > 0 || (dc == 0 && crdt__key_cmp(sv->bp[i - 1],
		    sv->bl[i - 1], sv->bp[i], sv->bl[i]) >= 0))
			return CRDT_EMALFORMED;
		prev = dot;
	}
	r.depth--;
	if (has_seen)
		CRDT_TRY(rd_admin_seen(d, &r, sv));
	CRDT_TRY(crdt__rd_array(&r, &n));
	CRDT_TRY(crdt__rd_fits(&r, n, MIN_MSG_BIN));
	sv->ep = crdt__malloc(a, n * sizeof *sv->ep);
	sv->el = crdt__malloc(a, n * sizeof *sv->el);
	sv->ne = n;
	if (sv->ep == NULL || sv->el == NULL)
		return CRDT_ENOMEM;
	CRDT_TRY(crdt__rd_evidence(d, &r, n, sv->ep, sv->el));
	CRDT_TRY(crdt__rd_done(&r));
	/* Evidence is kept and served to every sync peer: each variant must
	 * pass what crdt_doc_receive() checks (signature, decryption, every
	 * op), or one forged variant makes every peer refuse our frames. */
	for (size_t i = 0; i < sv->ne; i++) {
		msgview mv;
		CRDT_TRY(crdt__parse_msg(d, sv->ep[i], sv->el[i], &mv, true));
	}
	return 0;
}

/* Before the commit point: the snapshot's evidence dots that are new
 * here fit the evidence bound (max_buffered_msgs dots), so none is
 * dropped for it after the commit. `*nfresh`: how many are new. */
static int
evid_room(crdt_doc *d, const snapview *sv, size_t *nfresh)
{
	size_t fresh = 0, at;
	crdt_dot prev = { { { 0 } }, 0 };
	for (size_t i = 0; i < sv->ne; i++) {
		msgview mv;
		CRDT_TRY(crdt__parse_msg(d, sv->ep[i], sv->el[i], &mv, false));
		crdt_dot dot = { mv.sender, mv.counter };
		if ((i == 0 || crdt_dot_cmp(prev, dot) != 0) &&
		    crdt__ev_find(&d->ev, dot, &at) == NULL)
			fresh++;
		prev = dot;
	}
	*nfresh = fresh;
	if (fresh > 0 && fresh > d->cfg.max_buffered_msgs - CRDT_MIN(d->ev.n,
	    d->cfg.max_buffered_msgs))
		return CRDT_EBUFFULL;
	return 0;
}

static int
merge_into_tmp(const dobj *o, void *tmp, bool *changed)
{
	switch (o->type) {
	case CRDT_OBJ_GSET:
		CRDT_TRY(crdt_gset_merge(tmp, o->o));
		*changed = !crdt_gset_equal(tmp, o->o);
		return 0;
	case CRDT_OBJ_LWW:
		CRDT_TRY(crdt_lww_merge(tmp, o->o));
		*changed = !crdt_lww_equal(tmp, o->o);
		return 0;
	case CRDT_OBJ_MAP:
		CRDT_TRY(crdt_lww_map_merge(tmp, o->o));
		*changed = !crdt_lww_map_equal(tmp, o->o);
		return 0;
	case CRDT_OBJ_CHAT:
		CRDT_TRY(crdt__chat_merge(tmp, o->o));
		*changed = !crdt__chat_equal(tmp, o->o);
		return 0;
	}
	return CRDT_EINVAL;
}

/* Whether merging `sv` changes what the document saves: an object, a
 * clock entry, a stamp, admin_seen, hlc_max, or an evidence dot new here
 * (before the commit point, so the store's write-ahead is skipped only
 * for a load that changes none of them). O(objects + clock entries). */
static bool
load_brings(const crdt_doc *d, const snapview *sv, size_t fresh_ev)
{
	if (fresh_ev > 0)
		return true;
	for (size_t i = 0; i < d->nobjs; i++)
		if (sv->changed[i])
			return true;
	if (sv->hlc_max > d->hlc_max)
		return true;
	for (size_t i = 0; i < sv->nvc; i++) {
		uint32_t ri = 0;
		if (crdt__rep_find(d, &sv->vc[i].id, &ri) != 0 ||
		    sv->vc[i].c > d->rs[ri].vc ||
		    (sv->stamps != NULL && sv->stamps[i] > d->rs[ri].stamp))
			return true;
	}
	for (size_t i = 0; i < sv->nseen; i++) {
		uint32_t ri = 0;
		if (crdt__rep_find(d, &sv->seen[i].id, &ri) != 0 ||
		    sv->seen[i].c > d->rs[ri].admin_seen)
			return true;
	}
	return false;
}

/*
 * load = parse everything, build the merged objects aside, intern and
 * reserve; only then swap in (nothing after that point can fail). The
 * merged object is snapshot ∪ current, which is current ∪ snapshot:
 * merge is commutative.
 */
static int load_plain(crdt_doc *d, const void *snap, size_t len,
    const void *orig, size_t origlen, void *caller);

static int open_sealed_snapshot(crdt_doc *d, const void *bytes, size_t len,
    crdt_buf *plain);

int
crdt_doc_load(crdt_doc *d, const void *snap, size_t len, void *caller)
{
	if (d == NULL || snap == NULL)
		return CRDT_EINVAL;
	/* A relay holds no content: it cannot merge states. */
	if (d->in_txn || crdt__is_relay(d))
		return CRDT_ESTATE;
	int rc;
	if (!crdt__is_sealed_snapshot(snap, len)) {
		rc = load_plain(d, snap, len, snap, len, caller);
	} else {
		crdt_buf plain;
		crdt_buf_init(&plain, &d->cfg.alloc);
		rc = open_sealed_snapshot(d, snap, len, &plain);
		if (rc == 0)
			rc = load_plain(d, plain.data, plain.len, snap, len,
			    caller);
		crdt__memzero(plain.data, plain.cap);
		crdt_buf_fini(&plain);
	}
	/* Attached: the checkpoint that drops the snapshot's record is due
	 * (crdt__store_snap_done); taken here, in the background, and its
	 * failure fails nothing (crdt_doc_checkpoint_status). */
	if (rc == 0)
		crdt__store_settle(d);
	return rc;
}

/* crdt__log_repoint()'s finder: a spliced entry's record (object `tag`,
 * always a chat thread: apply_core splices only posts) in the object now
 * in the document, which holds every record the one it replaced held (a
 * load merges). */
static const uint8_t *
repoint_rec(void *ud, uint32_t tag, const uint8_t *base, size_t len)
{
	const crdt_doc *d = ud;
	if (tag >= d->nobjs || d->objs[tag].type != CRDT_OBJ_CHAT)
		return NULL;
	return crdt__chat_rec_find(d->objs[tag].o, base, len);
}

/* Listeners see `orig` (the sealed bytes when the input was sealed), so a
 * provider never forwards a decrypted snapshot by accident. */
static int
load_plain(crdt_doc *d, const void *snap, size_t len, const void *orig,
    size_t origlen, void *caller)
{
	snapview sv;
	int rc;

	memset(&sv, 0, sizeof sv);
	rc = parse_snap(d, snap, len, &sv);
	for (size_t i = 0; rc == 0 && i < d->nobjs; i++)
		rc = merge_into_tmp(&d->objs[i], sv.tmp[i], &sv.changed[i]);
	if (rc == 0) {
		sv.jumped = crdt__malloc(&d->cfg.alloc,
		    sv.nvc * sizeof *sv.jumped);
		if (sv.jumped == NULL)
			rc = CRDT_ENOMEM;
	}
	/* Interned last and forgotten on failure: a refused snapshot must
	 * not fill max_replicas with its IDs. */
	size_t nrs0 = d->nrs;
	for (size_t i = 0; rc == 0 && i < sv.nvc; i++) {
		uint32_t ri;
		rc = crdt__rep_intern(d, &sv.vc[i].id, &ri);
	}
	if (rc == 0) {
		void *v = d->dirty;
		rc = crdt__grow(&d->cfg.alloc, &v, &d->capdirty, d->nrs,
		    sizeof *d->dirty);
		d->dirty = v;
	}
	size_t fresh_ev = 0;
	if (rc == 0)
		rc = evid_room(d, &sv, &fresh_ev);
	/* The allowlist index of the merged allowlist, before the commit
	 * point: it is current from the moment the state is. */
	crdt__table acl;
	memset(&acl, 0, sizeof acl);
	bool acl_built = false;
	if (rc == 0 && d->has_admin) {
		rc = crdt__acl_build(&acl, &d->cfg.alloc, sv.tmp[d->acl_obj]);
		acl_built = rc == 0;
	}
	/* Attached to a store: the last step before the commit point is the
	 * write-ahead of the snapshot itself (no stored message carries what
	 * it brings), as received, so sealed bytes stay sealed. A store that
	 * cannot take it fails the load with nothing changed; once it is
	 * stored, a restart merges it again. A snapshot that brings nothing
	 * the saved bytes would show (no object, clock entry or evidence
	 * dot new here) is not written; its buffered messages, re-offered
	 * below, are stored like any received message. */
	uint64_t snap_id = 0;
	if (rc == 0 && load_brings(d, &sv, fresh_ev))
		rc = crdt__store_snap_put(d, orig, origlen, &snap_id);
	if (rc < 0) {
		if (acl_built)
			crdt__acl_fini(&acl);
		crdt__unintern_to(d, nrs0);
		snapview_free(d, &sv);
		return rc;
	}
	crdt__store_snap_done(d, snap_id, origlen);
	/* Commit: cannot fail from here, and nothing after it returns an
	 * error (an error return means nothing changed). */
	bool any = false;
	for (size_t i = 0; i < d->nobjs; i++) {
		void *old = d->objs[i].o;
		d->objs[i].o = sv.tmp[i];
		sv.tmp[i] = old; /* freed with the view */
		any |= sv.changed[i];
	}
	/* The log's spliced entries hold the old objects' records, which go
	 * with the view: each moves to its copy in the merged object. */
	if (crdt__log_spliced(&d->log) > 0)
		crdt__log_repoint(&d->log, repoint_rec, d);
	for (size_t i = 0; i < sv.nvc; i++) {
		uint32_t ri = 0;
		if (crdt__rep_find(d, &sv.vc[i].id, &ri) != 0)
			continue; /* cannot happen: interned above */
		rstate *r = &d->rs[ri];
		if (sv.vc[i].c <= r->vc)
			continue;
		crdt__log_reset(&d->log, ri, sv.vc[i].c + 1);
		r->vc = sv.vc[i].c;
		(void)crdt__mark_dirty(d, ri); /* capacity reserved above */
		sv.jumped[sv.njumped++] = ri;
		any = true;
	}
	for (size_t i = 0; i < sv.nseen; i++) {
		uint32_t ri = 0;
		if (crdt__rep_find(d, &sv.seen[i].id, &ri) != 0)
			continue; /* cannot happen: in the clock, interned */
		if (sv.seen[i].c > d->rs[ri].admin_seen)
			d->rs[ri].admin_seen = sv.seen[i].c;
	}
	for (size_t i = 0; sv.stamps != NULL && i < sv.nvc; i++) {
		uint32_t ri = 0;
		if (crdt__rep_find(d, &sv.vc[i].id, &ri) != 0)
			continue; /* cannot happen: interned above */
		if (sv.stamps[i] > d->rs[ri].stamp)
			d->rs[ri].stamp = sv.stamps[i];
	}
	if (sv.hlc_max > d->hlc_max)
		d->hlc_max = sv.hlc_max;
	if (d->has_admin)
		crdt__acl_swap(&d->acl, &acl);
	/* Our own stamps are ours: restore them whatever the device clock
	 * says (a restart with a clock behind the saved stamp must not
	 * stamp new writes below our earlier ones). Others' stamps move the
	 * clock only within the drift bound. */
	if (d->rs[d->self_idx].stamp > d->clock.last)
		d->clock.last = d->rs[d->self_idx].stamp;
	rc = crdt_hlc_update(&d->clock, d->hlc_max, NULL);
	(void)rc; /* beyond the drift bound: keep the clock (clock.h) */
	if (any) {
		d->has_data = true;
		if (d->l.on_update != NULL)
			d->l.on_update(d->l.ud, CRDT_UPDATE_SNAPSHOT, orig,
			    origlen, caller);
		for (size_t i = 0; d->l.on_change != NULL && i < d->nobjs;
		     i++) {
			if (!sv.changed[i])
				continue;
			crdt_change ch;
			memset(&ch, 0, sizeof ch);
			ch.kind = CRDT_CHANGE_RELOADED;
			ch.obj = (uint32_t)i;
			d->l.on_change(d->l.ud, &ch);
		}
	}
	/* Deliver what the new clock unblocks, then re-offer the snapshot's
	 * buffered messages, each like a received one. The snapshot is in:
	 * what fails here (out of memory; a buffered message the buffer has
	 * no room for or the allowlist refuses) is what a later sync brings
	 * again, as for any message refused on receipt, so the load still
	 * succeeds. Ready messages left queued are retried at the next
	 * clock move. */
	for (size_t i = 0; i < sv.njumped; i++)
		(void)crdt__release(d, sv.jumped[i]);
	/* A buffered message whose dot the snapshot's own clock covers is a
	 * variant that waited beside the applied one (the saver drops plain
	 * copies of what it applied): re-offered as evidence, so it waits
	 * here too although this replica has no log entry to compare it
	 * with; otherwise the loader takes it for a duplicate and saves other
	 * bytes (found by fuzz_receive). A dot only this replica's clock
	 * covers is judged as on receipt. */
	for (size_t i = 0; i < sv.nb; i++) {
		crdt_dot dot;
		bool variant = crdt_msg_peek(sv.bp[i], sv.bl[i], &dot, NULL) ==
			0 &&
		    dot.counter <= sv_clock(&sv, &dot.replica);
		(void)crdt__receive_msg(d, sv.bp[i], sv.bl[i], caller,
		    variant);
	}
	/* The merged state already holds the union of every variant; the
	 * variants were verified by parse_snap() and evid_room() made sure
	 * the dots fit. Out of memory drops a variant: every DATA frame
	 * carries evidence, so sync brings it back. */
	for (size_t i = 0; i < sv.ne; i++) {
		msgview mv;
		if (crdt__parse_msg(d, sv.ep[i], sv.el[i], &mv, false) != 0)
			continue;
		crdt_dot dot = { mv.sender, mv.counter };
		/* Room was made before the commit point (evid_room); a
		 * variant over the evidence bounds is not kept, like any
		 * variant past them: the snapshot itself is in. */
		(void)crdt__ev_add(&d->ev, dot, crdt__rep_index(d,
		    &dot.replica), sv.ep[i], sv.el[i]);
	}
	snapview_free(d, &sv);
	return 0;
}

/* Open a sealed snapshot into `plain` (caller's buffer: d->plain is
 * reused by every message the load re-offers). */
static int
open_sealed_snapshot(crdt_doc *d, const void *bytes, size_t len,
    crdt_buf *plain)
{
	crdt__rd r;
	size_t n, nl, ctlen;
	uint64_t ep;
	const uint8_t *nonce, *ct;

	CRDT_TRY(crdt__rd_init(&r, &d->cfg.limits, bytes, len));
	unsigned ver;
	CRDT_TRY(crdt__rd_header_v(&r, CRDT__KIND_SEALED_SNAP, &n, &ver));
	if (n != 3)
		return CRDT_EMALFORMED;
	uint8_t adbuf[32];
	const uint8_t *ad;
	size_t adlen;
	CRDT_TRY(crdt__env_ad(adbuf, ver, &d->cfg.doc_id, bytes,
	    (size_t)(r.p - (const uint8_t *)bytes), &ad, &adlen));
	CRDT_TRY(crdt__rd_array_n(&r, 3));
	CRDT_TRY(crdt__rd_uint(&r, &ep));
	CRDT_TRY(crdt__rd_bin(&r, &nonce, &nl));
	CRDT_TRY(crdt__rd_blob(&r, &ct, &ctlen));
	CRDT_TRY(crdt__rd_done(&r));
	if (ep > UINT32_MAX || nl != CRDT__NONCE_BYTES ||
	    ctlen < CRDT__TAG_BYTES)
		return CRDT_EMALFORMED;
	const crdt__epoch_key *k = crdt__keys_find(&d->keys, (uint32_t)ep);
	if (k == NULL)
		return CRDT_ENOKEY;
	CRDT_TRY(crdt_buf_append(plain, ct, ctlen));
	CRDT_TRY(crdt__aead_open(plain->data, ct, ctlen, ad, adlen, nonce,
	    k->key));
	plain->len = ctlen - CRDT__TAG_BYTES;
	return 0;
}

bool
crdt__is_sealed_snapshot(const uint8_t *b, size_t len)
{
	return len >= 3 && b[0] == 0x93 && b[1] >= CRDT__DOC_FORMAT_OLDEST &&
	    b[1] <= CRDT__DOC_FORMAT_VERSION &&
	    b[2] == CRDT__KIND_SEALED_SNAP;
}

/* Evidence lists (snapshots and DATA frames): n messages, ascending by
 * (dot, bytes), at least two variants a dot. A lone variant proves
 * nothing, and a list we wrote must load again. */
int
crdt__rd_evidence(crdt_doc *d, crdt__rd *r, size_t n, const uint8_t **ep,
    size_t *el)
{
	crdt_dot prev = { { { 0 } }, 0 };
	const uint8_t *pp = NULL;
	size_t pl = 0, run = 0;
	for (size_t i = 0; i < n; i++) {
		msgview mv;
		const uint8_t *m;
		size_t ml;
		CRDT_TRY(crdt__rd_blob(r, &m, &ml));
		CRDT_TRY(crdt__parse_msg(d, m, ml, &mv, false));
		crdt_dot dot = { mv.sender, mv.counter };
		int c = i == 0 ? 1 : crdt_dot_cmp(prev, dot);
		if (c > 0 && i > 0)
			return CRDT_EMALFORMED;
		if (c == 0 && crdt__key_cmp(pp, pl, m, ml) >= 0)
			return CRDT_EMALFORMED;
		if (c != 0) {
			if (i > 0 && run < 2)
				return CRDT_EMALFORMED;
			run = 0;
		}
		run++;
		prev = dot;
		pp = m;
		pl = ml;
		if (ep != NULL) {
			ep[i] = m;
			el[i] = ml;
		}
	}
	return n > 0 && run < 2 ? CRDT_EMALFORMED : 0;
}
