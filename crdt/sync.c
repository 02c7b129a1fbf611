/*
 * Sync protocol: HELLO and DATA frames (doc.h, crdt_doc_sync_*;
 * docs/document.md, "Sync protocol" and "Sync frames").
 *
 * HELLO = [4, 7, doc_id, our clock, digests]: "send me what I lack".
 * DATA = [4, 8, doc_id, our clock, [msg, ...], snapshot | nil, evidence,
 * flags, digests] (flags: CRDT__DATA_*, wire_ids.h; digests: what we
 * hold of each writer's counters, sync_digest.c, so that peers with
 * equal clocks still find variants of an equivocated dot they do not
 * share). The doc_id lets one
 * connection carry several documents: a frame for another document is
 * refused before anything else is read, and crdt_sync_peek() routes a
 * frame without a document.
 * Messages go in log order, which is an order in which this replica
 * applied them, hence causal: the peer applies them without buffering.
 * A frame carries a prefix of that order within the budget
 * (cfg.sync_max_bytes) and says CRDT__DATA_MORE when messages were left
 * out: the receiver that took something in then asks again
 * (CRDT__DATA_REPLY), and the next frame starts where the peer's new
 * clock says. If the log no
 * longer holds everything the peer lacks, send a snapshot instead; a
 * keyless relay cannot make one, so it sends what its log holds of the
 * other replicas and says CRDT__DATA_PARTIAL.
 *
 * Everything a frame carries goes through the same doors as the rest of
 * the document: messages through ingest (crdt__receive_msg), snapshots
 * through crdt_doc_load, so sync adds framing, paging and the reply rule,
 * never a second way in.
 */
#include "doc_impl.h"
#include "sync_digest.h"

int
crdt_doc_sync_start(const crdt_doc *d, crdt_buf *out)
{
	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	size_t mark = out->len;
	int rc = crdt__w_header(out, CRDT__KIND_HELLO, 3);
	if (rc == 0)
		rc = crdt__w_bin(out, d->cfg.doc_id.bytes, CRDT_DOC_ID_BYTES);
	if (rc == 0)
		rc = crdt__w_vc_pairs(d, out);
	/* The digests take what the budget leaves after the clock. */
	size_t used = out->len - mark;
	size_t budget = d->cfg.sync_max_bytes > used ?
	    d->cfg.sync_max_bytes - used : 0;
	if (rc == 0)
		rc = crdt__dg_write(d, NULL, NULL, 0, NULL, budget, 4 + 2 * d->nrs,
		    out, NULL);
	if (rc < 0)
		out->len = mark;
	return rc;
}

/* peer[r] for each of our replicas, from the peer's clock pairs. */
static int
peer_clock(const crdt_doc *d, const iddep *pairs, size_t n, uint64_t **out)
{
	uint64_t *p = crdt__malloc(&d->cfg.alloc, d->nrs * sizeof *p);
	if (p == NULL)
		return CRDT_ENOMEM;
	memset(p, 0, d->nrs * sizeof *p);
	for (size_t i = 0; i < n; i++) {
		uint32_t ri;
		if (crdt__rep_find(d, &pairs[i].id, &ri) == 0)
			p[ri] = pairs[i].c;
	}
	*out = p;
	return 0;
}

/*
 * Trust levels (security.md). A snapshot is merged state: nothing in it
 * proves who wrote what. Sync is the channel for untrusted peers, so in
 * signed mode it carries snapshots only when the application opted in
 * (sync_snapshots). In encrypted mode it carries them sealed under the
 * document key, never in plaintext (a keyless peer must read nothing):
 * the key proves a key holder sealed it, which is all that every holder
 * may write anyway unless an allowlist narrows writers to fewer than the
 * key holders; then only with the opt-in.
 */
enum { SNAP_NONE, SNAP_PLAIN, SNAP_SEALED };

static int
sync_snap_kind(const crdt_doc *d)
{
	if (d->encrypted)
		return !d->has_admin || d->sync_snaps ? SNAP_SEALED : SNAP_NONE;
	return !d->signed_mode || d->sync_snaps ? SNAP_PLAIN : SNAP_NONE;
}

/* The snapshot field of a DATA frame, as sync_snap_kind() allows. */
static int
w_sync_snapshot(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf tmp;
	crdt_buf_init(&tmp, &d->cfg.alloc);
	int rc = sync_snap_kind(d) == SNAP_SEALED ?
	    crdt_doc_save_sealed(d, &tmp) :
	    crdt_doc_save(d, &tmp);
	if (rc == 0)
		rc = crdt__w_bin(out, tmp.data, tmp.len);
	crdt__memzero(tmp.data, tmp.cap);
	crdt_buf_fini(&tmp);
	return rc;
}

/* A DATA frame's snapshot: merged only where sync_snap_kind() allows
 * it, checked before anything in the frame is applied. */
static int
sync_load(crdt_doc *d, const uint8_t *snap, size_t len, void *caller)
{
	switch (sync_snap_kind(d)) {
	case SNAP_NONE:
		return CRDT_EPERM;
	case SNAP_SEALED:
		/* A plaintext snapshot in an encrypted document is refused
		 * like a plaintext message. */
		if (!crdt__is_sealed_snapshot(snap, len))
			return CRDT_EDECRYPT;
		break;
	default:
		break;
	}
	return crdt_doc_load(d, snap, len, caller);
}

/* Encoded sizes, as msgpack-c writes them (smallest form). */
static size_t
bin_size(size_t n)
{
	return n + (n < 256 ? 2 : n < 65536 ? 3 : 5);
}

static size_t
arr_size(size_t n)
{
	return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

static size_t
evidence_size(const crdt_doc *d)
{
	size_t s = arr_size(crdt__ev_variants(&d->ev));
	for (size_t i = 0; i < d->ev.n; i++)
		for (size_t j = 0; j < d->ev.v[i].n; j++)
			s += bin_size(d->ev.v[i].v[j].len);
	return s;
}

/*
 * How many messages, in fifo order, fit in the frame after `used` bytes
 * and `elems` elements. A frame that would carry none gets the first one
 * anyway if that stays within limits.max_bytes (a small budget never
 * blocks a large message). *more: some were left out.
 */
static int
data_count(const crdt_doc *d, const uint64_t *peer, size_t used,
    size_t elems, size_t *count, bool *more)
{
	size_t budget = d->cfg.sync_max_bytes, hard = d->cfg.limits.max_bytes;
	size_t n = 0;

	*more = false;
	crdt__log_iter it;
	uint32_t r;
	uint64_t c;
	logent e;
	crdt__log_iter_init(&it, &d->log);
	while (crdt__log_next(&it, &r, &c, &e)) {
		if (c <= peer[r])
			continue; /* the peer has it */
		size_t sz = bin_size(crdt__lent_len(e));
		bool fits = used <= budget && sz <= budget - used;
		if (!fits && n == 0)
			fits = used <= hard && sz <= hard - used;
		if (!fits || elems + n + 1 > d->cfg.limits.max_elems) {
			*more = true;
			break;
		}
		used += sz;
		n++;
	}
	/* The next message cannot travel in any frame a peer with our
	 * limits accepts: refuse here rather than send what it refuses. */
	if (*more && n == 0)
		return CRDT_ETOOBIG;
	*count = n;
	return 0;
}

/* Whether the log holds all of replica r's messages past `from`. */
static bool
log_serves(const crdt_doc *d, uint32_t r, uint64_t from)
{
	return crdt__log_has(&d->log, r, from + 1) &&
	    crdt__log_has(&d->log, r, d->rs[r].vc);
}

/* A DATA frame's last fields: evidence, flags, digests. */
static int
w_tail(const crdt_doc *d, unsigned flags, const crdt_buf *dg, crdt_buf *out)
{
	CRDT_TRY(crdt__ev_write(&d->ev, out));
	CRDT_TRY(crdt__w_uint(out, flags));
	return crdt_buf_append(out, dg->data, dg->len);
}

static int
w_data_body(const crdt_doc *d, uint64_t *peer, unsigned flags,
    const crdt_buf *dg, size_t ndg, crdt_buf *out)
{
	size_t mark = out->len, npairs = 0;
	bool complete = true;

	for (size_t i = 0; i < d->nrs; i++) {
		const rstate *r = &d->rs[i];
		npairs += r->vc > 0;
		if (r->vc <= peer[i])
			continue;
		if (!log_serves(d, (uint32_t)i, peer[i]))
			complete = false;
	}
	CRDT_TRY(crdt__w_header(out, CRDT__KIND_DATA, 7));
	CRDT_TRY(crdt__w_bin(out, d->cfg.doc_id.bytes, CRDT_DOC_ID_BYTES));
	CRDT_TRY(crdt__w_vc_pairs(d, out));
	if (!complete && d->store != NULL) {
		/* The log evicted part of what the peer lacks: the store has
		 * it (doc_store.c), so any replica, a relay too, serves a
		 * peer at any distance with messages. */
		size_t at = out->len;
		size_t used = (out->len - mark) + 5 + 1 + evidence_size(d) + 1 +
		    dg->len;
		size_t elems = 9 + 2 * npairs + crdt__ev_variants(&d->ev) +
		    3 * ndg;
		size_t budget = d->cfg.sync_max_bytes > used ?
		    d->cfg.sync_max_bytes - used : 1;
		size_t room = d->cfg.limits.max_elems > elems ?
		    d->cfg.limits.max_elems - elems : 0;
		bool more = false;
		int rc = crdt__store_serve(d, peer, budget, room, out, &more);
		if (rc == 0) {
			CRDT_TRY(crdt__w_nil(out));
			CRDT_TRY(w_tail(d, flags | (more ? CRDT__DATA_MORE : 0),
			    dg, out));
			return out->len - mark > d->cfg.limits.max_bytes ?
			    CRDT_ETOOBIG : 0;
		}
		if (rc != CRDT_ENOTFOUND)
			return rc;
		out->len = at; /* not all there: as without a store */
	}
	if (!complete && !crdt__is_relay(d) && sync_snap_kind(d) != SNAP_NONE) {
		CRDT_TRY(crdt__w_array(out, 0));
		CRDT_TRY(w_sync_snapshot(d, out));
		CRDT_TRY(w_tail(d, flags, dg, out));
		return out->len - mark > d->cfg.limits.max_bytes ?
		    CRDT_ETOOBIG : 0;
	}
	if (!complete) {
		/* No snapshot to send (a keyless relay cannot make one; signed
		 * mode sends none unless opted in): serve the replicas whose
		 * lacking run the log still holds in full; the others' later
		 * messages would only wait. */
		for (size_t j = 0; j < d->nrs; j++) {
			const rstate *rj = &d->rs[j];
			if (rj->vc > peer[j] && !log_serves(d, (uint32_t)j,
			    peer[j]))
				peer[j] = rj->vc;
		}
		flags |= CRDT__DATA_PARTIAL;
	}
	/* fixed part: what is written, the message array's header (at most
	 * 5 bytes), nil, the evidence and the flags (1 byte) */
	size_t used = (out->len - mark) + 5 + 1 + evidence_size(d) + 1 +
	    dg->len;
	size_t elems = 9 + 2 * npairs + crdt__ev_variants(&d->ev) + 3 * ndg;
	size_t count;
	bool more;
	CRDT_TRY(data_count(d, peer, used, elems, &count, &more));
	if (more)
		flags |= CRDT__DATA_MORE;
	CRDT_TRY(crdt__w_array(out, count));
	crdt__log_iter it;
	uint32_t r;
	uint64_t c;
	logent e;
	crdt__log_iter_init(&it, &d->log);
	for (size_t k = 0; k < count && crdt__log_next(&it, &r, &c, &e);) {
		if (c <= peer[r])
			continue; /* as data_count() skipped it */
		CRDT_TRY(crdt__w_bin_header(out, crdt__lent_len(e)));
		CRDT_TRY(crdt__lent_append(e, out));
		k++;
	}
	CRDT_TRY(crdt__w_nil(out));
	CRDT_TRY(w_tail(d, flags, dg, out));
	return out->len - mark > d->cfg.limits.max_bytes ? CRDT_ETOOBIG : 0;
}

/*
 * A DATA frame. Its digests (what we hold now, lo past cursor[r] for a
 * writer whose earlier counters the frame being answered already
 * re-sent) are those of the writers whose entry in the peer's clock
 * (`eq`, as its frame said) is ours: only those can it compare, so a
 * frame paging a catch-up does not hash the whole log again and again.
 * They take at most a quarter of the budget: a writer left out is only
 * a comparison not made in this frame.
 */
static int
w_data(crdt_doc *d, uint64_t *peer, const uint64_t *eq,
    const uint64_t *cursor, size_t ncursor, unsigned flags, crdt_buf *out)
{
	crdt_buf dg;
	size_t ndg = 0;

	crdt_buf_init(&dg, &d->cfg.alloc);
	int rc = crdt__dg_write(d, d, cursor, ncursor, eq,
	    d->cfg.sync_max_bytes / 4, d->cfg.limits.max_elems / 4, &dg, &ndg);
	if (rc == 0)
		rc = w_data_body(d, peer, flags, &dg, ndg, out);
	crdt_buf_fini(&dg);
	return rc;
}

static bool
peer_lacks(const crdt_doc *d, const uint64_t *peer)
{
	for (size_t i = 0; i < d->nrs; i++)
		if (d->rs[i].vc > peer[i])
			return true;
	return false;
}

/*
 * Grows with every message taken in (applied, buffered or kept as
 * evidence) and with every clock a snapshot raised: a frame that leaves
 * it unchanged brought nothing new. O(replicas + evidence), like the
 * frame's own clock.
 */
static uint64_t
progress_mark(const crdt_doc *d)
{
	uint64_t m = d->nbuffered + crdt__ev_variants(&d->ev);
	for (size_t i = 0; i < d->nrs; i++)
		m += d->rs[i].vc;
	return m;
}

/*
 * Whether and what to answer. A HELLO is always answered (CRDT__DATA_REPLY:
 * its sender answers back with what we lack). A DATA frame is answered
 * when its sender lacks something of ours (or holds fewer equivocation
 * variants), or said CRDT__DATA_MORE, but only if the frame asked for it
 * (CRDT__DATA_REPLY) or brought something new: every frame of a round past the
 * third is paid for by progress, so a round always ends, also between
 * replicas that each refuse something the other holds.
 */
typedef struct frame_in {
	const iddep *pairs;
	size_t npairs;
	const crdt__dgent *dg; /* the frame's digests (version 4) */
	size_t ndg;
	const uint64_t *cursor; /* per replica, or NULL (resent_cursor()) */
	size_t ncursor;
} frame_in;

static int
reply_data(crdt_doc *d, const frame_in *in, bool hello, unsigned in_flags,
    bool progressed, size_t nevid, bool resend_own, crdt_buf *reply,
    bool *replied)
{
	uint64_t *peer, *eq;
	unsigned flags = CRDT__DATA_REPLY;
	bool want = true, differ;

	*replied = false;
	CRDT_TRY(peer_clock(d, in->pairs, in->npairs, &peer));
	/* The peer's clock as it said, before the digests lower it. */
	eq = crdt__malloc(&d->cfg.alloc, d->nrs * sizeof *eq);
	if (eq == NULL) {
		crdt__free(&d->cfg.alloc, peer, d->nrs * sizeof *peer);
		return CRDT_ENOMEM;
	}
	memcpy(eq, peer, d->nrs * sizeof *eq);
	/* A digest that differs from ours over a range we hold, at an equal
	 * clock entry: the peer holds other variants there (or lies). Serve
	 * it the range; a liar gets no more than one frame per frame of its
	 * own, and past a round's third frame only with progress. */
	int rc = crdt__dg_mismatch(d, in->dg, in->ndg, peer, &differ);
	if (rc < 0) {
		crdt__free(&d->cfg.alloc, peer, d->nrs * sizeof *peer);
		crdt__free(&d->cfg.alloc, eq, d->nrs * sizeof *eq);
		return rc;
	}
	if (!hello) {
		bool cont = progressed && (in_flags & CRDT__DATA_MORE);
		flags = cont ? CRDT__DATA_REPLY : 0;
		want = ((in_flags & CRDT__DATA_REPLY) || progressed) &&
		    (cont || peer_lacks(d, peer) ||
			crdt__ev_variants(&d->ev) > nevid);
	}
	/* This frame showed a fork of our own history (fork.c): the peer
	 * holds our counters up to a point we also issued, maybe with other
	 * ops (two devices with one ID, commits after a restore). Offer it
	 * every own message the log holds, once per fork claim: it takes
	 * copies as duplicates and reports a different one as an
	 * equivocation, whose evidence every later frame carries back. */
	const crdt__rlog *own = &d->log.r[d->self_idx];
	if (resend_own && own->n > 0) {
		if (own->lo - 1 < peer[d->self_idx])
			peer[d->self_idx] = own->lo - 1;
		want = true;
	}
	if (want) {
		size_t mark = reply->len;
		rc = w_data(d, peer, eq, in->cursor, in->ncursor, flags,
		    reply);
		if (rc < 0)
			reply->len = mark;
		*replied = rc == 0;
	}
	crdt__free(&d->cfg.alloc, peer, d->nrs * sizeof *peer);
	crdt__free(&d->cfg.alloc, eq, d->nrs * sizeof *eq);
	return rc;
}

/* A message of a DATA frame refused for its own content is skipped (a
 * keyless relay forwards what keyed replicas refuse); running out of
 * memory, and an attached store that cannot take the message (full, I/O,
 * busy), stop the frame with that code: the message is not in, and
 * skipping it would report a frame handled that was not. */
static int
data_fatal(int rc)
{
	switch (rc) {
	case CRDT_ENOMEM:
	case CRDT_EFULL:
	case CRDT_EIO:
	case CRDT_EBUSY:
	case CRDT_ECORRUPT:
		return rc;
	default:
		return 0;
	}
}

/*
 * A sync frame's head: [version, kind, doc_id (version 3), ...], the
 * field count checked against the kind. A frame of version 1 or 2 names
 * no document: *named false, *id zero.
 */
static int
rd_sync_head(crdt__rd *r, uint64_t *ver, uint64_t *kind, crdt_doc_id *id,
    bool *named)
{
	size_t n;
	const uint8_t *p;
	size_t plen;

	CRDT_TRY(crdt__rd_array(r, &n));
	CRDT_TRY(crdt__rd_uint(r, ver));
	if (*ver < CRDT__DOC_FORMAT_OLDEST || *ver > CRDT__SYNC_FORMAT_VERSION)
		return CRDT_EVERSION;
	CRDT_TRY(crdt__rd_uint(r, kind));
	*named = *ver >= 3;
	/* A version-1 DATA frame had no flags (read as 0); version 4 adds
	 * the digests. */
	size_t dg = *ver >= 4;
	size_t data_n = (*ver == 1 ? 6 : 7) + *named + dg;
	size_t hello_n = 3 + *named + dg;
	if (!((*kind == CRDT__KIND_HELLO && n == hello_n) ||
		(*kind == CRDT__KIND_DATA && n == data_n)))
		return CRDT_EMALFORMED;
	memset(id, 0, sizeof *id);
	if (!*named)
		return 0;
	CRDT_TRY(crdt__rd_bin(r, &p, &plen));
	if (plen != CRDT_DOC_ID_BYTES)
		return CRDT_EMALFORMED;
	memcpy(id->bytes, p, CRDT_DOC_ID_BYTES);
	return 0;
}

int
crdt_sync_peek(const void *frame, size_t len, crdt_doc_id *id, int *kind)
{
	crdt_config c;
	crdt__rd r;
	uint64_t ver, k;
	crdt_doc_id got;
	bool named;

	if (frame == NULL)
		return CRDT_EINVAL;
	/* Only the head is read, bounded by its own few fields: a relay
	 * routes frames of any size its transport carries. */
	crdt_config_default(&c);
	c.limits.max_bytes = SIZE_MAX;
	CRDT_TRY(crdt__rd_init(&r, &c.limits, frame, len));
	CRDT_TRY(rd_sync_head(&r, &ver, &k, &got, &named));
	if (id != NULL)
		*id = got;
	if (kind != NULL)
		*kind = k == CRDT__KIND_HELLO ? CRDT_SYNC_HELLO : CRDT_SYNC_DATA;
	return 0;
}

/*
 * One message of a DATA frame (its list or its evidence), counted into
 * `rep` when the caller asked for a report. Without one it is exactly
 * the receive; with one, a probe before and a judge after (recv.c), so
 * the plain sync_handle pays one branch per message.
 */
static int
frame_msg(crdt_doc *d, const uint8_t *m, size_t ml, void *caller,
    bool evidence, crdt_sync_report *rep)
{
	if (rep == NULL)
		return data_fatal(crdt__receive_msg(d, m, ml, caller,
		    evidence));
	crdt__probe p;
	int rc = crdt__recv_probe(d, m, ml, &p);
	if (rc == 0)
		rc = crdt__receive_msg(d, m, ml, caller, evidence);
	if (rc < 0) {
		if (data_fatal(rc) != 0)
			return rc;
		if (rep->refused++ == 0)
			rep->first_refusal = rc;
		return 0;
	}
	switch (crdt__recv_judge(d, &p)) {
	case CRDT_RECV_APPLIED:
		rep->applied++;
		break;
	case CRDT_RECV_BUFFERED:
		rep->buffered++;
		break;
	case CRDT_RECV_EQUIVOCATION:
		rep->equivocation++;
		break;
	default:
		rep->duplicate++;
		break;
	}
	return 0;
}

/*
 * A DATA frame that says CRDT__DATA_MORE and re-sends messages at or below
 * our clock is a page of a range served for a digest that differed: per
 * replica, the last such counter (before anything is applied), so that
 * our answer's digest starts past it and the peer serves the next page,
 * not the first again. The variants of the pages already sent travel
 * back as evidence. NULL-free on success; *out has d->nrs entries.
 */
static int
resent_cursor(crdt_doc *d, const uint8_t *p, size_t len, size_t nmsgs,
    uint64_t **out)
{
	crdt__rd mr;
	uint64_t *c = crdt__malloc(&d->cfg.alloc, d->nrs * sizeof *c);

	if (c == NULL)
		return CRDT_ENOMEM;
	memset(c, 0, d->nrs * sizeof *c);
	int rc = crdt__rd_init(&mr, &d->cfg.limits, p, len);
	for (size_t i = 0; rc == 0 && i < nmsgs; i++) {
		const uint8_t *m;
		size_t ml;
		msgview mv;
		rc = crdt__rd_blob(&mr, &m, &ml);
		if (rc == 0)
			rc = crdt__parse_msg(d, m, ml, &mv, false);
		if (rc != 0)
			break;
		uint32_t ri = crdt__rep_index(d, &mv.sender);
		if (ri != UINT32_MAX && mv.counter <= d->rs[ri].vc &&
		    mv.counter > c[ri])
			c[ri] = mv.counter;
	}
	if (rc < 0) {
		crdt__free(&d->cfg.alloc, c, d->nrs * sizeof *c);
		return rc;
	}
	*out = c;
	return 0;
}

static int
handle(crdt_doc *d, const void *frame, size_t len, void *caller,
    crdt_buf *reply, crdt_sync_report *rep)
{
	crdt__rd r;
	size_t nmsgs = 0;
	uint64_t kind, ver, flags = 0;
	iddep *pairs = NULL;
	size_t npairs = 0;
	const uint8_t *snap = NULL, *mstart = NULL, *estart = NULL;
	size_t nevid = 0;
	size_t snaplen = 0;
	bool has_snap = false, replied = false;
	int rc;

	if (d == NULL || frame == NULL || reply == NULL)
		return CRDT_EINVAL;
	if (d->in_txn)
		return CRDT_ESTATE;
	CRDT_TRY(crdt__rd_init(&r, &d->cfg.limits, frame, len));
	crdt_doc_id fid;
	bool named;
	CRDT_TRY(rd_sync_head(&r, &ver, &kind, &fid, &named));
	/* Another document's frame is refused before anything else is read;
	 * an older frame names no document: only an unbound one takes it. */
	if (named ? memcmp(fid.bytes, d->cfg.doc_id.bytes,
			CRDT_DOC_ID_BYTES) != 0 :
		    !crdt__doc_id_zero(&d->cfg.doc_id))
		return CRDT_EWRONGDOC;
	bool has_flags = ver >= 2;
	CRDT_TRY(crdt__rd_vc_pairs(d, &r, &pairs, &npairs));
	crdt__dgent *dg = NULL;
	size_t ndg = 0;
	uint64_t *cursor = NULL;
	size_t ncursor = 0;
	rc = 0;
	if (kind == CRDT__KIND_HELLO && ver >= 4)
		rc = crdt__dg_read(d, &r, pairs, npairs, &dg, &ndg);
	if (kind == CRDT__KIND_DATA) {
		/* Validate every message and find the snapshot before
		 * applying anything. */
		/* Framing only: each message is verified when received
		 * (verifying twice would double the cost of signed mode). */
		rc = crdt__rd_array(&r, &nmsgs);
		mstart = r.p;
		for (size_t i = 0; rc == 0 && i < nmsgs; i++) {
			const uint8_t *m;
			size_t ml;
			msgview mv;
			rc = crdt__rd_blob(&r, &m, &ml);
			if (rc == 0)
				rc = crdt__parse_msg(d, m, ml, &mv, false);
		}
		if (rc == 0 && r.p < r.end && *r.p == 0xc0)
			r.p++;
		else if (rc == 0) {
			rc = crdt__rd_blob(&r, &snap, &snaplen);
			has_snap = true;
		}
		if (rc == 0)
			rc = crdt__rd_array(&r, &nevid);
		estart = r.p;
		if (rc == 0)
			rc = crdt__rd_evidence(d, &r, nevid, NULL, NULL);
		if (rc == 0 && has_flags)
			rc = crdt__rd_uint(&r, &flags);
		if (rc == 0 && (flags & ~(uint64_t)CRDT__DATA_FLAGS) != 0)
			rc = CRDT_EMALFORMED;
		if (rc == 0 && ver >= 4)
			rc = crdt__dg_read(d, &r, pairs, npairs, &dg, &ndg);
	}
	if (rc == 0)
		rc = crdt__rd_done(&r);
	if (rc == 0 && (flags & CRDT__DATA_MORE) && nmsgs > 0)
		rc = resent_cursor(d, mstart, (size_t)(r.end - mstart), nmsgs,
		    &cursor);
	if (cursor != NULL)
		ncursor = d->nrs; /* replicas the frame interns come after */
	uint64_t mark0 = progress_mark(d);
	uint64_t own0 = d->rs[d->self_idx].vc;
	if (rc == 0 && has_snap)
		rc = sync_load(d, snap, snaplen, caller);
	if (rc == 0 && rep != NULL)
		rep->snapshot = has_snap;
	if (rc == 0 && nmsgs > 0) {
		crdt__rd mr;
		rc = crdt__rd_init(&mr, &d->cfg.limits, mstart,
		    (size_t)(r.end - mstart));
		for (size_t i = 0; rc == 0 && i < nmsgs; i++) {
			const uint8_t *m;
			size_t ml;
			rc = crdt__rd_blob(&mr, &m, &ml);
			if (rc == 0)
				rc = frame_msg(d, m, ml, caller, false, rep);
		}
	}
	if (rc == 0 && nevid > 0) {
		crdt__rd er;
		rc = crdt__rd_init(&er, &d->cfg.limits, estart,
		    (size_t)(r.end - estart));
		for (size_t i = 0; rc == 0 && i < nevid; i++) {
			const uint8_t *m;
			size_t ml;
			rc = crdt__rd_blob(&er, &m, &ml);
			if (rc == 0)
				rc = frame_msg(d, m, ml, caller, true, rep);
		}
		crdt__ev_prune(&d->ev);
	}
	bool progressed = progress_mark(d) != mark0;
	uint64_t claim = crdt__fork_own_entry(d, pairs, npairs);
	bool resend_own = claim > own0 && claim > d->fork_known &&
	    claim > d->fork_dismissed && claim > d->fork_claimed;
	frame_in in = { pairs, npairs, dg, ndg, cursor, ncursor };
	if (rc == 0)
		rc = reply_data(d, &in, kind == CRDT__KIND_HELLO,
		    (unsigned)flags, progressed, nevid, resend_own, reply,
		    &replied);
	/* The peer cannot serve what we still lack and this frame changed
	 * nothing: say so, so the caller syncs with another replica. */
	if (rc == 0 && (flags & CRDT__DATA_PARTIAL) && !progressed && !replied)
		rc = CRDT_ENOTFOUND;
	/* The peer's clock holds more of our own history than we did: a
	 * fork claim (fork.c), judged against our clock before the frame,
	 * so it is reported even when the frame itself brought it back. */
	if (rc == 0)
		crdt__fork_note(d, own0, claim, false, caller);
	crdt__free(&d->cfg.alloc, pairs, npairs * sizeof *pairs);
	crdt__free(&d->cfg.alloc, dg, ndg * sizeof *dg);
	crdt__free(&d->cfg.alloc, cursor, ncursor * sizeof *cursor);
	crdt__store_settle(d); /* the frame's variants: one checkpoint */
	return rc;
}

int
crdt_doc_sync_handle(crdt_doc *d, const void *frame, size_t len,
    void *caller, crdt_buf *reply)
{
	return handle(d, frame, len, caller, reply, NULL);
}

int
crdt_doc_sync_handle_status(crdt_doc *d, const void *frame, size_t len,
    void *caller, crdt_buf *reply, crdt_sync_report *rep)
{
	crdt_sync_report r;

	if (rep == NULL)
		return CRDT_EINVAL;
	memset(&r, 0, sizeof r);
	CRDT_TRY(handle(d, frame, len, caller, reply, &r));
	*rep = r;
	return 0;
}
