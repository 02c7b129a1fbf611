/*
 * Store front end (include/crdt/store.h): the rules every backend gets.
 * Arguments and messages are checked here, before a backend sees them, so
 * an application backend cannot be handed a message that peek refuses,
 * and the dot and digest it keys on are computed one way for all.
 */
#include "internal.h"
#include "crdt/store.h"
#include "store_impl.h"

struct crdt_store {
	crdt_config cfg;
	crdt_store_ops ops;
	void *impl;
	/* Set while a since() callback runs: the backend is in the middle of
	 * a read, and a reentrant call would interleave with it. */
	bool in_cb;
};

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
	CRDT_TRY(crdt__config_resolve(cfg, &c));
	s = crdt__malloc(&c.alloc, sizeof *s);
	if (s == NULL)
		return CRDT_ENOMEM;
	memset(s, 0, sizeof *s);
	s->cfg = c;
	s->ops = *ops;
	s->impl = impl;
	*out = s;
	return 0;
}

void
crdt_store_close(crdt_store *s)
{
	crdt_allocator a;

	if (s == NULL)
		return;
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
	rc = s->ops.append(s->impl, recs, n, &got);
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
	if (rc == 0)
		rc = s->ops.put_checkpoint(s->impl, snap, len, clk.data,
		    clk.len);
	crdt_buf_fini(&clk);
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
	rc = s->ops.get_checkpoint(s->impl, snap_out, &clk);
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
	s->in_cb = true;
	rc = s->ops.since(s->impl, v, &cur, budget, since_check, &c, &m);
	s->in_cb = false;
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
