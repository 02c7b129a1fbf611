/*
 * A document attached to a durable store (doc.h, "Durable storage";
 * docs/storage.md, "A document attached to a store").
 *
 * Write-ahead: every message the document accepts, applied or buffered,
 * is appended to the store inside the apply (apply_core) or the buffer
 * (crdt__buffer_msg) after every check that can refuse it and before the
 * commit point, so a store that fails leaves the document unchanged and
 * a call that returned 0 has its message on disk. One append per accepted
 * message: O(message) plus the store's commit (or a queued copy, group
 * commit, appended by crdt_doc_store_flush). A snapshot merged while
 * attached is written ahead the same way, as a loaded snapshot record
 * (crdt__store_snap_put, before the load's commit point), which the next
 * checkpoint drops in its own transaction. Restart is the last
 * checkpoint, then the loaded snapshot records, then the messages its
 * clock lacks (lowered to the log's floor, log_floor), re-offered through
 * the ingest pipeline (so the log, the buffer and the evidence refill)
 * with the appends off: they are stored already.
 *
 * Automatic checkpoints (ckpt_policy): the next one falls due when the
 * bytes appended since the last reach ckpt_tail_pct percent of its
 * snapshot's size (and ckpt_min_bytes). A checkpoint of S bytes is then
 * paid for by at least S * pct / 100 bytes of messages: amortized O(1)
 * per appended byte, while a restart replays at most about that tail.
 * The snapshot is serialized here, in memory, at the end of the public
 * call (crdt__store_settle); its write, the expensive part (a transaction
 * and the fsync of a snapshot-sized commit), is handed to the store's
 * writer thread (crdt_store_put_checkpoint_bg).
 */
#include "doc_impl.h"
#include "crdt/store.h"
#include "store_impl.h"

/* Messages per store batch when attaching (the store's own limit on a
 * batch is limits.max_elems, far above this). */
#define ATTACH_BATCH 64
/* Messages per store batch of a group-commit flush (an array of this
 * many crdt_store_msg, 256 KiB, while it runs). */
#define FLUSH_BATCH 16384

/* Group commit: queue a copy; only out of memory can fail, and then the
 * queue is as before. */
static int
queue_put(crdt_doc *d, const uint8_t *bytes, size_t len)
{
	if (d->store_qn == d->store_qcap) {
		void *v = d->store_qend;
		CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &d->store_qcap,
		    d->store_qn + 1, sizeof *d->store_qend));
		d->store_qend = v;
	}
	CRDT_TRY(crdt_buf_append(&d->store_q, bytes, len));
	d->store_qend[d->store_qn++] = d->store_q.len;
	return 0;
}

int
crdt__store_put_slow(crdt_doc *d, const uint8_t *bytes, size_t len)
{
	crdt_store_msg m = { bytes, len };
	int rc = d->store_group ? queue_put(d, bytes, len) :
				  crdt_store_append(d->store, &m, 1, NULL);
	if (rc == 0)
		d->ckpt_tail = len > SIZE_MAX - d->ckpt_tail ? SIZE_MAX :
							     d->ckpt_tail + len;
	return rc;
}

/* After a checkpoint of `snap_len` bytes: the tail starts again and the
 * next checkpoint falls due at pct percent of this one (at least
 * ckpt_min_bytes). A keyless relay has no state to checkpoint. */
static void
ckpt_policy(crdt_doc *d, size_t snap_len)
{
	size_t pct = d->cfg.ckpt_tail_pct, t;

	d->ckpt_tail = 0;
	if (d->cfg.ckpt_tail_pct == UINT32_MAX || crdt__is_relay(d)) {
		d->ckpt_next = SIZE_MAX;
		return;
	}
	if (snap_len / 100 > SIZE_MAX / pct)
		t = SIZE_MAX;
	else
		t = snap_len / 100 * pct + snap_len % 100 * pct / 100;
	d->ckpt_next = CRDT_MAX(t, d->cfg.ckpt_min_bytes);
}

void
crdt__store_fini(crdt_doc *d)
{
	crdt_buf_fini(&d->store_q);
	crdt__free(&d->cfg.alloc, d->store_qend,
	    d->store_qcap * sizeof *d->store_qend);
	d->store_qend = NULL;
	d->store_qn = d->store_qcap = 0;
}

static int
store_flush(crdt_doc *d)
{
	if (d->store == NULL)
		return d->store_qn == 0 ? 0 : CRDT_ESTATE;
	size_t done = 0; /* messages appended */
	int rc = 0;
	/* One store transaction (one fsync in FULL mode) per FLUSH_BATCH
	 * messages: the fsync, not the rows, is what a flush costs. Without
	 * memory for the batch's array, batches of ATTACH_BATCH on the
	 * stack: a flush does not fail for want of memory. */
	crdt_store_msg stack[ATTACH_BATCH];
	size_t cap = CRDT_MIN(d->store_qn, (size_t)FLUSH_BATCH);
	crdt_store_msg *m = cap > ATTACH_BATCH ?
	    crdt__malloc(&d->cfg.alloc, cap * sizeof *m) : NULL;
	if (m == NULL) {
		m = stack;
		cap = ATTACH_BATCH;
	}
	while (rc == 0 && done < d->store_qn) {
		size_t n = 0;
		for (; n < cap && done + n < d->store_qn; n++) {
			size_t i = done + n;
			size_t start = i == 0 ? 0 : d->store_qend[i - 1];
			m[n] = (crdt_store_msg){ d->store_q.data + start,
				d->store_qend[i] - start };
		}
		rc = crdt_store_append(d->store, m, n, NULL);
		if (rc == 0)
			done += n;
	}
	if (m != stack)
		crdt__free(&d->cfg.alloc, m, cap * sizeof *m);
	/* Drop what was appended; the rest stays for the next flush. */
	size_t cut = done == 0 ? 0 : d->store_qend[done - 1];
	if (cut > 0) /* an empty queue may have no buffer at all */
		memmove(d->store_q.data, d->store_q.data + cut,
		    d->store_q.len - cut);
	d->store_q.len -= cut;
	for (size_t i = done; i < d->store_qn; i++)
		d->store_qend[i - done] = d->store_qend[i] - cut;
	d->store_qn -= done;
	return rc;
}

int
crdt_doc_store_flush(crdt_doc *d)
{
	if (d == NULL)
		return CRDT_EINVAL;
	int rc = store_flush(d);
	/* Group commit takes its automatic checkpoint here, once what it
	 * covers is in the store's log. */
	if (rc == 0)
		crdt__store_settle(d);
	return rc;
}

/* Messages for one crdt_store_append: views, and copies in `own` of the
 * logged ones that are spliced (msglog.h), placed when the batch goes
 * (`own` may move while it fills). */
typedef struct batch {
	crdt_store_msg m[ATTACH_BATCH];
	size_t off[ATTACH_BATCH]; /* in own, or SIZE_MAX: m[i] is a view */
	size_t n;
	crdt_buf own;
} batch;

static int
batch_flush(crdt_store *s, batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->off[i] != SIZE_MAX)
			b->m[i].bytes = b->own.data + b->off[i];
	size_t n = b->n;
	b->n = 0;
	crdt_buf_clear(&b->own);
	return n > 0 ? crdt_store_append(s, b->m, n, NULL) : 0;
}

static int
batch_add(crdt_store *s, batch *b, const uint8_t *bytes, size_t len)
{
	b->off[b->n] = SIZE_MAX;
	b->m[b->n++] = (crdt_store_msg){ bytes, len };
	return b->n < ATTACH_BATCH ? 0 : batch_flush(s, b);
}

static int
batch_add_logged(crdt_store *s, batch *b, logent e)
{
	if (!crdt__lent_spliced(e))
		return batch_add(s, b, e.p, e.n);
	size_t off = b->own.len;
	CRDT_TRY(crdt__lent_append(e, &b->own));
	b->off[b->n] = off;
	b->m[b->n++] = (crdt_store_msg){ NULL, b->own.len - off };
	return b->n < ATTACH_BATCH ? 0 : batch_flush(s, b);
}

/* Everything the document holds that a restart needs: the log (apply
 * order), the buffered messages, and a checkpoint for what only the
 * state holds (messages the log evicted, snapshots loaded). */
static int
attach_existing(crdt_doc *d, crdt_store *s)
{
	batch b;
	b.n = 0;
	crdt_buf_init(&b.own, &d->cfg.alloc);
	crdt__log_iter it;
	uint32_t r;
	uint64_t c;
	logent e;
	int rc = 0;
	crdt__log_iter_init(&it, &d->log);
	while (rc == 0 && crdt__log_next(&it, &r, &c, &e))
		rc = batch_add_logged(s, &b, e);
	for (size_t i = 0; rc == 0 && i < d->nbm; i++)
		if (d->bm[i].live)
			rc = batch_add(s, &b, crdt__bm_bytes(&d->bm[i]),
			    d->bm[i].len);
	for (size_t i = 0; rc == 0 && i < d->ev.n; i++)
		for (size_t j = 0; rc == 0 && j < d->ev.v[i].n; j++)
			rc = batch_add(s, &b, d->ev.v[i].v[j].bytes,
			    d->ev.v[i].v[j].len);
	if (rc == 0)
		rc = batch_flush(s, &b);
	crdt_buf_fini(&b.own);
	if (rc < 0)
		return rc;
	if (!d->has_data || crdt__is_relay(d))
		return 0;
	d->store = s;
	rc = crdt_doc_checkpoint(d);
	d->store = NULL;
	return rc;
}

/* Set the mode; the queue must be empty to change it or the store. */
static int
set_mode(crdt_doc *d, crdt_store *s, unsigned flags)
{
	if (d->store_qn > 0 && (s != d->store ||
	    (flags & CRDT_DOC_STORE_GROUP) == 0))
		return CRDT_ESTATE;
	if (d->store_q.alloc.alloc == NULL)
		crdt_buf_init(&d->store_q, &d->cfg.alloc);
	/* Record ids are the store's: another store's are not merged. */
	if (s != d->store)
		d->store_snap_upto = 0;
	d->store = s;
	d->store_group = (flags & CRDT_DOC_STORE_GROUP) != 0;
	return 0;
}

int
crdt_doc_attach_store(crdt_doc *d, crdt_store *s, unsigned flags)
{
	if (d == NULL || (flags & ~(unsigned)CRDT_DOC_STORE_GROUP) != 0)
		return CRDT_EINVAL;
	if (d->in_txn)
		return CRDT_ESTATE;
	if (s == NULL || d->store == s)
		return set_mode(d, s, flags);
	if (d->store != NULL)
		return CRDT_ESTATE;
	ckpt_policy(d, 0); /* attach_existing's checkpoint sets it again */
	CRDT_TRY(attach_existing(d, s));
	return set_mode(d, s, flags);
}

/*
 * The clock stored with a checkpoint: the document's clock lowered, per
 * replica, to below the run its log holds of it. A restart replays from
 * there, so the messages the log held come back into the log (replay_one),
 * not only those after the checkpoint: crdt_doc_log_get and resend work
 * as before. The snapshot holds everything up to the real clock.
 * O(replicas).
 */
static int
log_floor(const crdt_doc *d, crdt_vclock **out)
{
	crdt_vclock *v;
	CRDT_TRY(crdt_vclock_new(&d->cfg, &v));
	for (size_t i = 0; i < d->nrs; i++) {
		const crdt__rlog *x = &d->log.r[i];
		uint64_t c = d->rs[i].vc;
		if (x->n > 0 && x->lo + x->n - 1 == c)
			c = x->lo - 1;
		int rc = c > 0 ? crdt_vclock_set(v, &d->rs[i].id, c) : 0;
		if (rc < 0) {
			crdt_vclock_free(v);
			return rc;
		}
	}
	*out = v;
	return 0;
}

/* Serialize the snapshot and its clock; `bg`: hand the write to the
 * store's writer, else write it now. Either way the policy starts again
 * from this snapshot's size. */
static int
ckpt_take(crdt_doc *d, bool bg)
{
	crdt_buf snap;
	crdt_vclock *vc = NULL;
	crdt_buf_init(&snap, &d->cfg.alloc);
	int rc = crdt_doc_save(d, &snap);
	size_t len = snap.len;
	if (rc == 0)
		rc = log_floor(d, &vc);
	/* The snapshot holds every loaded snapshot record merged so far:
	 * they go with this checkpoint, in its transaction. */
	uint64_t upto = d->store_snap_upto;
	if (rc == 0)
		rc = bg ? crdt__store_put_checkpoint_bg(d->store, &snap, vc,
			      upto) :
			  crdt_store_put_checkpoint_upto(d->store, snap.data,
			      snap.len, vc, upto);
	if (rc == 0) {
		d->store_ckpt_due = false;
		ckpt_policy(d, len);
	}
	crdt_vclock_free(vc);
	crdt_buf_fini(&snap);
	return rc;
}

int
crdt_doc_checkpoint(crdt_doc *d)
{
	if (d == NULL)
		return CRDT_EINVAL;
	if (d->store == NULL || d->in_txn)
		return CRDT_ESTATE;
	/* The store's log holds what the checkpoint covers (sync serves
	 * from it): the queue goes first. */
	CRDT_TRY(store_flush(d));
	return ckpt_take(d, false);
}

int
crdt_doc_checkpoint_status(crdt_doc *d, bool wait)
{
	if (d == NULL)
		return CRDT_EINVAL;
	int rc = d->ckpt_err;
	d->ckpt_err = 0;
	if (d->store != NULL) {
		int w = crdt_store_bg_status(d->store, wait);
		if (rc == 0)
			rc = w;
	}
	return rc;
}

int
crdt__store_snap_put(crdt_doc *d, const uint8_t *bytes, size_t len,
    uint64_t *id)
{
	*id = 0;
	if (d->store == NULL || d->store_quiet > 0)
		return 0;
	/* A durable point, like crdt_doc_checkpoint: what the document
	 * accepted before the load is stored first. A failed flush keeps its
	 * queue and changes nothing in the document. */
	CRDT_TRY(store_flush(d));
	return crdt_store_put_snapshot(d->store, bytes, len, id);
}

void
crdt__store_snap_done(crdt_doc *d, uint64_t id, size_t len)
{
	if (id == 0)
		return;
	d->store_snap_upto = id;
	/* A record costs a restart a merge, O(document), not O(its bytes):
	 * the checkpoint that drops it is due now (unless automatic
	 * checkpoints are off: then crdt_doc_checkpoint drops it). */
	d->ckpt_tail = len > SIZE_MAX - d->ckpt_tail ? SIZE_MAX :
						     d->ckpt_tail + len;
	if (d->ckpt_next != SIZE_MAX && d->ckpt_tail < d->ckpt_next)
		d->ckpt_tail = d->ckpt_next;
}

void
crdt__store_settle_slow(crdt_doc *d)
{
	if (d->store == NULL || d->in_txn)
		return;
	/* see doc_impl.h; crdt_doc_checkpoint() clears the flag */
	if (d->store_ckpt_due) {
		int rc = crdt_doc_checkpoint(d);
		(void)rc;
		return;
	}
	/* Automatic: group commit waits for the flush (the checkpoint must
	 * not cover what the store's log lacks). A background write that
	 * failed is kept for crdt_doc_checkpoint_status(). */
	if (d->ckpt_tail < d->ckpt_next || d->store_qn > 0)
		return;
	int w = crdt_store_bg_status(d->store, false);
	if (w < 0 && d->ckpt_err == 0)
		d->ckpt_err = w;
	int rc = ckpt_take(d, true);
	if (rc < 0) {
		if (d->ckpt_err == 0)
			d->ckpt_err = rc;
		/* Not again at every call (O(document) each): after another
		 * tail's worth. Nothing is lost: the log is whole. */
		d->ckpt_tail = 0;
	}
}

/* A loaded snapshot record merged on restart, after the checkpoint and
 * before the messages (a message stored after the load may depend on a
 * dot only the snapshot carried). Trusted, like the checkpoint: an
 * error stops the restart. */
typedef struct restore_ctx {
	crdt_doc *d;
	uint64_t upto;
} restore_ctx;

static int
restore_snap(void *ud, uint64_t id, const uint8_t *bytes, size_t len)
{
	restore_ctx *c = ud;
	CRDT_TRY(crdt_doc_load(c->d, bytes, len, NULL));
	c->upto = id;
	return 0;
}

/* A stored message re-offered on restart. The store holds what this
 * document accepted, so it is accepted again; what is refused now (a
 * buffer bound lowered since) is refused as on receipt. Only running out
 * of memory stops the restart. */
static int
replay_one(void *ud, crdt_dot dot, const uint8_t *bytes, size_t len)
{
	crdt_doc *d = ud;
	uint32_t ri;
	/* What the restart replays is the tail the next checkpoint bounds. */
	d->ckpt_tail = len > SIZE_MAX - d->ckpt_tail ? SIZE_MAX :
						     d->ckpt_tail + len;
	/* Applied already (the checkpoint holds it: its clock was lowered
	 * to the log's floor, log_floor()) and next in its replica's run:
	 * back into the log only. Out of order (a message stored when it was
	 * buffered, before its predecessors) it goes through receive, which
	 * sees a duplicate; the log then holds less than before, and sync
	 * serves the rest from the store. */
	if (crdt__rep_find(d, &dot.replica, &ri) == 0 &&
	    dot.counter <= d->rs[ri].vc &&
	    !crdt__log_has(&d->log, ri, dot.counter)) {
		const crdt__rlog *x = &d->log.r[ri];
		if (x->n == 0 || x->lo + x->n == dot.counter) {
			CRDT_TRY(crdt__log_reserve(&d->log, ri, len));
			crdt__log_push(&d->log, ri, dot.counter, bytes, len,
			    NULL);
			return 0;
		}
	}
	int rc = crdt__receive_one(d, bytes, len, NULL);
	return rc == CRDT_ENOMEM ? rc : 0;
}

int
crdt_doc_open_store(crdt_doc *d, crdt_store *s, unsigned flags)
{
	if (d == NULL || s == NULL ||
	    (flags & ~(unsigned)CRDT_DOC_STORE_GROUP) != 0)
		return CRDT_EINVAL;
	if (d->in_txn || d->store != NULL || d->has_data ||
	    d->log.count > 0 || d->nbuffered > 0 || d->ev.n > 0)
		return CRDT_ESTATE;
	crdt_buf snap;
	crdt_vclock *covers = NULL;
	crdt_buf_init(&snap, &d->cfg.alloc);
	d->store_quiet++;
	/* A keyless relay holds no state, so it cannot load a checkpoint
	 * (one written by a keyed replica on the same store): it replays
	 * the whole log instead. */
	int rc = crdt__is_relay(d) ? CRDT_ENOTFOUND :
				     crdt_store_checkpoint(s, &snap, &covers);
	if (rc == CRDT_ENOTFOUND)
		rc = crdt_vclock_new(&d->cfg, &covers);
	else if (rc == 0)
		rc = crdt_doc_load(d, snap.data, snap.len, NULL);
	ckpt_policy(d, snap.len);
	restore_ctx rs = { d, 0 };
	if (rc == 0 && !crdt__is_relay(d))
		rc = crdt_store_snapshots(s, restore_snap, &rs);
	uint64_t cursor = 0;
	bool more = true;
	/* Each page moves the cursor (the store checks that for load;
	 * checked here too): bounded by the stored messages. */
	while (rc == 0 && more) {
		uint64_t c0 = cursor;
		rc = crdt_store_since(s, covers, &cursor, SIZE_MAX,
		    replay_one, d, &more);
		if (rc == 0 && more && cursor == c0)
			rc = CRDT_ECORRUPT;
	}
	d->store_quiet--;
	crdt_vclock_free(covers);
	crdt_buf_fini(&snap);
	if (rc < 0)
		return rc;
	/* Our own stamps are ours: a replayed message of ours moves the
	 * clock only within the drift bound, but the next commit must
	 * stamp above every earlier one whatever the device clock says. */
	if (d->rs[d->self_idx].stamp > d->clock.last)
		d->clock.last = d->rs[d->self_idx].stamp;
	CRDT_TRY(set_mode(d, s, flags));
	/* Records found: the next checkpoint drops them, so it is due. */
	d->store_snap_upto = rs.upto;
	if (rs.upto > 0 && d->ckpt_next != SIZE_MAX &&
	    d->ckpt_tail < d->ckpt_next)
		d->ckpt_tail = d->ckpt_next;
	return 0;
}

/* ---- serving sync from the store ---- */

typedef struct serve {
	const crdt_doc *d;
	const uint64_t *peer;
	bool *next;      /* per replica: its next lacking message is served */
	crdt_buf *msgs;  /* bin-encoded messages */
	size_t n, max_n;
	size_t budget;   /* for the encoded messages (msgs->len) */
	bool stopped;    /* max_n or the budget reached: more follow */
} serve;

static int
serve_one(void *ud, crdt_dot dot, const uint8_t *bytes, size_t len)
{
	serve *sv = ud;
	/* The store's budget counts message bytes; the frame carries each
	 * as a bin, 2 to 5 bytes more, which for many small messages adds
	 * up past the frame's limit: the encoded size is checked here. */
	size_t enc = len + (len < 256 ? 2 : len < 65536 ? 3 : 5);
	if (sv->n == sv->max_n || (sv->n > 0 && (sv->msgs->len > sv->budget ||
	    enc > sv->budget - sv->msgs->len))) {
		sv->stopped = true;
		return CRDT_EOVERFLOW; /* stop; the page so far is kept */
	}
	CRDT_TRY(crdt__w_bin(sv->msgs, bytes, len));
	sv->n++;
	uint32_t ri;
	if (crdt__rep_find(sv->d, &dot.replica, &ri) == 0 &&
	    dot.counter == sv->peer[ri] + 1)
		sv->next[ri] = true;
	return 0;
}

int
crdt__store_serve(const crdt_doc *d, const uint64_t *peer, size_t budget,
    size_t max_elems, crdt_buf *out, bool *more)
{
	if (d->store == NULL || max_elems == 0)
		return CRDT_ENOTFOUND;
	const crdt_allocator *a = &d->cfg.alloc;
	crdt_vclock *v = NULL;
	crdt_buf msgs;
	crdt_buf_init(&msgs, a);
	bool *next = crdt__malloc(a, d->nrs * sizeof *next);
	int rc = next == NULL ? CRDT_ENOMEM :
				crdt_vclock_new(&d->cfg, &v);
	for (size_t i = 0; rc == 0 && i < d->nrs; i++) {
		next[i] = false;
		if (peer[i] > 0)
			rc = crdt_vclock_set(v, &d->rs[i].id, peer[i]);
	}
	serve sv = { d, peer, next, &msgs, 0, max_elems,
		budget > 0 ? budget : 1, false };
	uint64_t cursor = 0;
	bool m = false;
	if (rc == 0) {
		rc = crdt_store_since(d->store, v, &cursor,
		    budget > 0 ? budget : 1, serve_one, &sv, &m);
		if (rc == CRDT_EOVERFLOW && sv.stopped) {
			rc = 0;
			m = true;
		}
	}
	/* The store holds what the document accepted since it was attached:
	 * a replica whose next lacking message is not there (history from
	 * before the attach, or a snapshot) cannot be served from it. Once
	 * the page is the last one, every lacking replica must have started;
	 * otherwise the caller falls back to the snapshot. */
	for (size_t i = 0; rc == 0 && !m && i < d->nrs; i++)
		if (d->rs[i].vc > peer[i] && !next[i])
			rc = CRDT_ENOTFOUND;
	if (rc == 0)
		rc = crdt__w_array(out, sv.n);
	if (rc == 0)
		rc = crdt_buf_append(out, msgs.data, msgs.len);
	if (rc == 0)
		*more = m;
	crdt_buf_fini(&msgs);
	crdt_vclock_free(v);
	crdt__free(a, next, d->nrs * sizeof *next);
	return rc;
}
