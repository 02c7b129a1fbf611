/*
 * Store front end (include/crdt/store.h): the rules every backend gets.
 * Arguments and messages are checked here, before a backend sees them, so
 * an application backend cannot be handed a message that peek refuses,
 * and the dot and digest it keys on are computed one way for all.
 *
 * Background checkpoints (crdt_store_put_checkpoint_bg): a writer thread,
 * started at the first one, writes the snapshot the caller serialized.
 * The backend still sees one call at a time: every backend call holds
 * `io`. The job slots are guarded by `mu`. The writer touches no memory
 * of cfg->alloc (an application allocator need not be thread-safe): the
 * caller's thread allocates every job and frees it once written (reap).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "internal.h"
#include "crdt/store.h"
#include "store_impl.h"

/* A checkpoint handed to the writer: snapshot and encoded clock, both on
 * cfg->alloc. */
typedef struct ckjob {
	crdt_buf snap, clk;
	uint64_t upto; /* loaded snapshot records it holds (put_ck) */
	bool has;
} ckjob;

struct crdt_store {
	crdt_config cfg;
	crdt_store_ops ops;
	void *impl;
	/* Set while a since() callback runs: the backend is in the middle of
	 * a read, and a reentrant call would interleave with it. */
	bool in_cb;
	/* The backend's put_checkpoint may run on the writer thread
	 * (crdt__store_allow_bg: the SQLite backend). */
	bool bg_ok;
	bool bg_started; /* writer thread running; the locks exist */
	bool snaps;      /* the backend keeps loaded snapshot records */
	pthread_t th;
	pthread_mutex_t io; /* held across every backend call */
	pthread_mutex_t mu; /* pend, cur, busy, stop, bg_err */
	pthread_cond_t cv;  /* a slot changed */
	ckjob pend;         /* queued, not started: the newest one */
	ckjob cur;          /* busy: being written; else written, to reap */
	bool busy, stop;
	int bg_err;         /* first unreported error of a written job */
};

static void
job_free(ckjob *j)
{
	if (!j->has)
		return;
	crdt_buf_fini(&j->snap);
	crdt_buf_fini(&j->clk);
	j->has = false;
}

/* The backend's checkpoint, dropping the snapshot records up to `upto`
 * with it when there are any to drop. */
static int
put_ck(crdt_store *s, const uint8_t *snap, size_t len, const uint8_t *clk,
    size_t clen, uint64_t upto)
{
	if (upto > 0 && s->snaps)
		return s->ops.put_checkpoint_upto(s->impl, snap, len, clk, clen,
		    upto);
	return s->ops.put_checkpoint(s->impl, snap, len, clk, clen);
}

/* Writer: take the queued job once the previous one is reaped, write it
 * under `io`, record its error. Ends at stop with nothing queued. */
static void *
writer(void *arg)
{
	crdt_store *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!(s->pend.has && !s->cur.has) && !s->stop)
			pthread_cond_wait(&s->cv, &s->mu);
		if (!(s->pend.has && !s->cur.has))
			break; /* stop, and nothing the writer may take */
		s->cur = s->pend;
		s->pend.has = false;
		s->busy = true;
		pthread_mutex_unlock(&s->mu);
		pthread_mutex_lock(&s->io);
		int rc = put_ck(s, s->cur.snap.data, s->cur.snap.len,
		    s->cur.clk.data, s->cur.clk.len, s->cur.upto);
		pthread_mutex_unlock(&s->io);
		pthread_mutex_lock(&s->mu);
		s->busy = false;
		if (rc < 0 && s->bg_err == 0)
			s->bg_err = rc;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Caller's thread: free a written job (its memory is cfg->alloc's) and
 * let the writer take the next. Called with `mu` held. */
static void
reap_locked(crdt_store *s)
{
	if (s->cur.has && !s->busy) {
		job_free(&s->cur);
		pthread_cond_broadcast(&s->cv);
	}
}

/* Enter a backend call from the caller's thread. */
static void
io_enter(crdt_store *s)
{
	if (!s->bg_started)
		return;
	pthread_mutex_lock(&s->mu);
	reap_locked(s);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_lock(&s->io);
}

static void
io_leave(crdt_store *s)
{
	if (s->bg_started)
		pthread_mutex_unlock(&s->io);
}

void
crdt__store_allow_bg(crdt_store *s)
{
	s->bg_ok = true;
}

int
crdt_store_new(const crdt_config *cfg, const crdt_store_ops *ops, void *impl,
    crdt_store **out)
{
	crdt_config c;
	crdt_store *s;

	if (ops == NULL || out == NULL || ops->append == NULL ||
	    ops->put_checkpoint == NULL || ops->get_checkpoint == NULL ||
	    ops->since == NULL)
		return CRDT_EINVAL;
	/* Snapshot records: all three or none (a backend that could store
	 * them but not drop them with a checkpoint would grow forever). */
	int nsnap = (ops->put_snapshot != NULL) + (ops->snapshots != NULL) +
	    (ops->put_checkpoint_upto != NULL);
	if (nsnap != 0 && nsnap != 3)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__config_resolve(cfg, &c));
	s = crdt__malloc(&c.alloc, sizeof *s);
	if (s == NULL)
		return CRDT_ENOMEM;
	memset(s, 0, sizeof *s);
	s->cfg = c;
	s->ops = *ops;
	s->impl = impl;
	s->snaps = nsnap == 3;
	*out = s;
	return 0;
}

void
crdt_store_close(crdt_store *s)
{
	crdt_allocator a;

	if (s == NULL)
		return;
	if (s->bg_started) {
		/* What was handed over is written before the handle goes. */
		(void)crdt_store_bg_status(s, true);
		pthread_mutex_lock(&s->mu);
		s->stop = true;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->th, NULL);
		job_free(&s->cur);
		job_free(&s->pend);
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
		pthread_mutex_destroy(&s->io);
	}
	if (s->ops.close != NULL)
		s->ops.close(s->impl);
	a = s->cfg.alloc;
	crdt__free(&a, s, sizeof *s);
}

/* Peek one message and fill its record; the digest keys its variant. */
static int
store_rec(const crdt_store *s, const crdt_store_msg *m, crdt_store_rec *r)
{
	if (m->bytes == NULL)
		return CRDT_EINVAL;
	if (m->len > s->cfg.limits.max_bytes)
		return CRDT_ETOOBIG;
	CRDT_TRY(crdt_msg_peek(m->bytes, m->len, &r->dot, NULL));
	CRDT_TRY(crdt__hash_personal(r->digest, sizeof r->digest, m->bytes,
	    m->len, CRDT__STORE_PERS_MSG));
	r->bytes = m->bytes;
	r->len = m->len;
	return 0;
}

int
crdt_store_append(crdt_store *s, const crdt_store_msg *msgs, size_t n,
    size_t *added)
{
	crdt_store_rec *recs;
	size_t got = 0;
	int rc;

	if (s == NULL || (msgs == NULL && n > 0))
		return CRDT_EINVAL;
	if (s->in_cb)
		return CRDT_ESTATE;
	if (n == 0) {
		if (added != NULL)
			*added = 0;
		return 0;
	}
	if (n > s->cfg.limits.max_elems ||
	    n > SIZE_MAX / sizeof(crdt_store_rec))
		return CRDT_ETOOBIG;
	recs = crdt__malloc(&s->cfg.alloc, n * sizeof *recs);
	if (recs == NULL)
		return CRDT_ENOMEM;
	/* Every message is checked before the backend is called: a refused
	 * batch writes nothing, whatever the backend. */
	for (size_t i = 0; i < n; i++) {
		rc = store_rec(s, &msgs[i], &recs[i]);
		if (rc < 0)
			goto out;
	}
	io_enter(s);
	rc = s->ops.append(s->impl, recs, n, &got);
	io_leave(s);
	if (rc == 0 && added != NULL)
		*added = got;
out:
	crdt__free(&s->cfg.alloc, recs, n * sizeof *recs);
	return rc;
}

int
crdt_store_put_checkpoint(crdt_store *s, const void *snap, size_t len,
    const crdt_vclock *covers)
{
	return crdt_store_put_checkpoint_upto(s, snap, len, covers, 0);
}

int
crdt_store_put_checkpoint_upto(crdt_store *s, const void *snap, size_t len,
    const crdt_vclock *covers, uint64_t upto)
{
	crdt_buf clk;
	int rc;

	if (s == NULL || snap == NULL || covers == NULL)
		return CRDT_EINVAL;
	if (s->in_cb)
		return CRDT_ESTATE;
	if (len > s->cfg.limits.max_bytes)
		return CRDT_ETOOBIG;
	crdt_buf_init(&clk, &s->cfg.alloc);
	rc = crdt_vclock_encode(covers, &clk);
	if (rc == 0 && s->bg_started) {
		/* This one is newer than any still queued: that one is
		 * dropped; one being written finishes first (io). */
		pthread_mutex_lock(&s->mu);
		job_free(&s->pend);
		pthread_mutex_unlock(&s->mu);
	}
	if (rc == 0) {
		io_enter(s);
		rc = put_ck(s, snap, len, clk.data, clk.len, upto);
		io_leave(s);
	}
	crdt_buf_fini(&clk);
	return rc;
}

/* Start the writer and its locks; false when the system refuses (the
 * caller then writes in the foreground). */
static bool
bg_start(crdt_store *s)
{
	if (pthread_mutex_init(&s->io, NULL) != 0)
		return false;
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		pthread_mutex_destroy(&s->io);
		return false;
	}
	if (pthread_cond_init(&s->cv, NULL) != 0) {
		pthread_mutex_destroy(&s->mu);
		pthread_mutex_destroy(&s->io);
		return false;
	}
	s->stop = false;
	if (pthread_create(&s->th, NULL, writer, s) != 0) {
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
		pthread_mutex_destroy(&s->io);
		return false;
	}
	s->bg_started = true;
	return true;
}

int
crdt_store_put_checkpoint_bg(crdt_store *s, crdt_buf *snap,
    const crdt_vclock *covers)
{
	return crdt__store_put_checkpoint_bg(s, snap, covers, 0);
}

int
crdt__store_put_checkpoint_bg(crdt_store *s, crdt_buf *snap,
    const crdt_vclock *covers, uint64_t upto)
{
	ckjob j;
	int rc;

	if (s == NULL || snap == NULL || covers == NULL ||
	    (snap->data == NULL && snap->len > 0))
		return CRDT_EINVAL;
	if (s->in_cb)
		return CRDT_ESTATE;
	if (snap->len > s->cfg.limits.max_bytes)
		return CRDT_ETOOBIG;
	if (!s->bg_ok || (!s->bg_started && !bg_start(s))) {
		/* No writer (an application backend, or no thread): the
		 * same checkpoint, written now. */
		rc = crdt_store_put_checkpoint_upto(s, snap->len ?
			(const void *)snap->data : (const void *)"", snap->len,
		    covers, upto);
		if (rc == 0)
			crdt_buf_clear(snap);
		return rc;
	}
	crdt_buf_init(&j.clk, &s->cfg.alloc);
	rc = crdt_vclock_encode(covers, &j.clk);
	if (rc < 0) {
		crdt_buf_fini(&j.clk);
		return rc;
	}
	/* The bytes change hands: the caller's buffer is left empty. */
	j.snap = *snap;
	j.upto = upto;
	j.has = true;
	crdt_buf_init(snap, &j.snap.alloc);
	pthread_mutex_lock(&s->mu);
	reap_locked(s);
	job_free(&s->pend); /* superseded: this one covers more */
	s->pend = j;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

int
crdt_store_bg_status(crdt_store *s, bool wait)
{
	int rc;

	if (s == NULL)
		return CRDT_EINVAL;
	if (!s->bg_started)
		return 0;
	pthread_mutex_lock(&s->mu);
	reap_locked(s);
	/* Bounded: the writer takes at most the one job queued now (no
	 * new one can be queued while this thread waits here). */
	while (wait && (s->pend.has || s->busy)) {
		pthread_cond_wait(&s->cv, &s->mu);
		reap_locked(s);
	}
	rc = s->bg_err;
	s->bg_err = 0;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int
crdt_store_checkpoint(crdt_store *s, crdt_buf *snap_out,
    crdt_vclock **covers_out)
{
	crdt_buf clk;
	crdt_vclock *vc = NULL;
	size_t len0;
	int rc;

	if (s == NULL || snap_out == NULL || covers_out == NULL)
		return CRDT_EINVAL;
	if (s->in_cb)
		return CRDT_ESTATE;
	len0 = snap_out->len;
	crdt_buf_init(&clk, &s->cfg.alloc);
	io_enter(s);
	rc = s->ops.get_checkpoint(s->impl, snap_out, &clk);
	io_leave(s);
	if (rc == 0) {
		/* The clock is read back strictly: stored bytes that the
		 * decoder refuses are damage, not a peer's malformed input. */
		rc = crdt_vclock_decode(&s->cfg, clk.data != NULL ?
			(const void *)clk.data : (const void *)"", clk.len, &vc);
		if (rc == CRDT_EMALFORMED || rc == CRDT_EVERSION ||
		    rc == CRDT_ETOOBIG)
			rc = CRDT_ECORRUPT;
	}
	crdt_buf_fini(&clk);
	if (rc < 0) {
		snap_out->len = len0;
		return rc;
	}
	*covers_out = vc;
	return 0;
}

/* Wraps the caller's callback: re-reads each handed-out message's dot, so
 * a backend that hands out bytes under another dot (or damaged bytes) is
 * caught here for every backend alike. */
typedef struct since_ctx {
	crdt_store_msg_fn fn;
	void *ud;
} since_ctx;

static int
since_check(void *ud, crdt_dot dot, const uint8_t *bytes, size_t len)
{
	since_ctx *c = ud;
	crdt_dot got;

	if (bytes == NULL || crdt_msg_peek(bytes, len, &got, NULL) != 0 ||
	    got.counter != dot.counter ||
	    memcmp(got.replica.bytes, dot.replica.bytes,
		CRDT_REPLICA_ID_BYTES) != 0)
		return CRDT_ECORRUPT;
	return c->fn(c->ud, dot, bytes, len);
}

int
crdt_store_since(crdt_store *s, const crdt_vclock *v, uint64_t *cursor,
    size_t budget, crdt_store_msg_fn fn, void *ud, bool *more)
{
	since_ctx c;
	uint64_t cur;
	bool m = false;
	int rc;

	if (s == NULL || v == NULL || cursor == NULL || budget == 0 ||
	    fn == NULL || more == NULL)
		return CRDT_EINVAL;
	if (s->in_cb)
		return CRDT_ESTATE;
	c.fn = fn;
	c.ud = ud;
	cur = *cursor;
	io_enter(s);
	s->in_cb = true;
	rc = s->ops.since(s->impl, v, &cur, budget, since_check, &c, &m);
	s->in_cb = false;
	io_leave(s);
	if (rc < 0)
		return rc;
	*cursor = cur;
	*more = m;
	return 0;
}

int
crdt_store_load(crdt_store *s, crdt_buf *snap_out, bool *has_checkpoint,
    crdt_store_msg_fn fn, void *ud)
{
	crdt_vclock *v = NULL;
	uint64_t cur = 0, prev;
	bool more = true, has;
	size_t len0;
	int rc;

	if (s == NULL || snap_out == NULL || has_checkpoint == NULL ||
	    fn == NULL)
		return CRDT_EINVAL;
	len0 = snap_out->len;
	rc = crdt_store_checkpoint(s, snap_out, &v);
	has = rc == 0;
	if (rc == CRDT_ENOTFOUND)
		rc = crdt_vclock_new(&s->cfg, &v);
	/* One call hands out everything (no budget); the loop only guards
	 * against a backend that pages anyway, and ends because every
	 * round must move the cursor. */
	while (rc == 0 && more) {
		prev = cur;
		rc = crdt_store_since(s, v, &cur, SIZE_MAX, fn, ud, &more);
		if (rc == 0 && more && cur <= prev)
			rc = CRDT_ECORRUPT;
	}
	crdt_vclock_free(v);
	if (rc < 0) {
		snap_out->len = len0;
		return rc;
	}
	*has_checkpoint = has;
	return 0;
}

int
crdt_store_put_snapshot(crdt_store *s, const void *snap, size_t len,
    uint64_t *id)
{
	uint64_t got = 0;
	int rc;

	if (s == NULL || snap == NULL || id == NULL)
		return CRDT_EINVAL;
	if (s->in_cb || !s->snaps)
		return CRDT_ESTATE;
	if (len > s->cfg.limits.max_bytes)
		return CRDT_ETOOBIG;
	io_enter(s);
	rc = s->ops.put_snapshot(s->impl, snap, len, &got);
	io_leave(s);
	if (rc == 0 && got == 0)
		rc = CRDT_ECORRUPT; /* ids start at 1: 0 means none */
	if (rc == 0)
		*id = got;
	return rc;
}

int
crdt_store_snapshots(crdt_store *s, crdt_store_snap_fn fn, void *ud)
{
	int rc;

	if (s == NULL || fn == NULL)
		return CRDT_EINVAL;
	if (s->in_cb)
		return CRDT_ESTATE;
	if (!s->snaps)
		return 0;
	io_enter(s);
	s->in_cb = true;
	rc = s->ops.snapshots(s->impl, fn, ud);
	s->in_cb = false;
	io_leave(s);
	return rc;
}
