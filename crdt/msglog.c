/*
 * The message log (msglog.h): per-replica runs and their chunks, the
 * apply-order fifo and the two eviction heaps.
 */
#include "msglog.h"

enum { LH_MSGS = 0, LH_BYTES = 1 };

/* Write `len`'s prefix (7 bits a byte, low first, the high bit set on
 * all but the last) at p; returns its size, crdt__log_pfx(len). A spliced
 * entry's varints are written the same way. */
static size_t
pfx_put(uint8_t *p, size_t len)
{
	size_t k = 0;
	while (len >= 0x80) {
		p[k++] = (uint8_t)(len | 0x80);
		len >>= 7;
	}
	p[k++] = (uint8_t)len;
	return k;
}

/* The size of a long message's block: its prefix and bytes. */
static size_t
big_size(size_t len)
{
	return crdt__log_pfx(len) + len;
}

void
crdt__log_init(crdt__msglog *l, const crdt_allocator *a, size_t max_msgs,
    size_t max_bytes)
{
	memset(l, 0, sizeof *l);
	l->a = a;
	l->max_msgs = max_msgs;
	l->max_bytes = max_bytes;
}

static void
chunk_free(crdt__msglog *l, crdt__lchunk *c)
{
	l->held -= sizeof *c + c->cap;
	crdt__free(l->a, c, sizeof *c + c->cap);
}

/* Free replica r's run: every long message's block, and every chunk but
 * the newest, which is kept empty when `keep` (a push that restarts the
 * run has its room reserved there) and freed otherwise. */
static void
run_free(crdt__msglog *l, crdt__rlog *r, bool keep)
{
	for (size_t j = 0; j < r->n; j++) {
		uint8_t *p = r->v[r->start + j];
		crdt__lent e = crdt__log_ent_at(p);
		size_t len = e.n;
		l->spliced -= crdt__lent_spliced(e);
		if (len > CRDT__LOG_BIG) {
			l->held -= big_size(len);
			crdt__free(l->a, p, big_size(len));
		}
	}
	while (r->head != NULL && (r->head != r->tail || !keep)) {
		crdt__lchunk *c = r->head;
		r->head = c->next;
		chunk_free(l, c);
	}
	if (r->head == NULL)
		r->tail = NULL;
	else
		r->head->used = r->head->n = 0;
}

void
crdt__log_fini(crdt__msglog *l)
{
	for (size_t i = 0; i < l->nr; i++) {
		crdt__rlog *r = &l->r[i];
		run_free(l, r, false);
		crdt__free(l->a, r->v, r->cap * sizeof *r->v);
	}
	crdt__free(l->a, l->r, l->capr * sizeof *l->r);
	if (l->big != NULL)
		crdt__free(l->a, l->big, big_size(l->big_len));
	if (l->spare != NULL)
		chunk_free(l, l->spare);
	crdt__free(l->a, l->fifo, l->fifo_cap * sizeof *l->fifo);
	for (int k = 0; k < 2; k++)
		crdt__free(l->a, l->heap[k],
		    l->heap_cap[k] * sizeof *l->heap[k]);
	memset(l, 0, sizeof *l);
}

int
crdt__log_reserve_replicas(crdt__msglog *l, size_t n)
{
	void *v = l->r;
	CRDT_TRY(crdt__grow(l->a, &v, &l->capr, n, sizeof *l->r));
	l->r = v;
	return 0;
}

void
crdt__log_add_replica(crdt__msglog *l)
{
	assert(l->nr < l->capr);
	crdt__rlog *r = &l->r[l->nr++];
	memset(r, 0, sizeof *r);
	r->lo = 1;
	r->gen = ++l->gen_seq;
}

void
crdt__log_drop_replicas(crdt__msglog *l, size_t n)
{
	while (l->nr > n) {
		crdt__rlog *r = &l->r[--l->nr];
		assert(r->n == 0);
		run_free(l, r, false);
		crdt__free(l->a, r->v, r->cap * sizeof *r->v);
	}
}

bool
crdt__log_get(const crdt__msglog *l, uint32_t ri, uint64_t c,
    crdt__lent *e)
{
	if (!crdt__log_has(l, ri, c))
		return false;
	const crdt__rlog *r = &l->r[ri];
	*e = crdt__log_ent_at(r->v[r->start + (c - r->lo)]);
	return true;
}

/* Whether fifo entry f still has a message in the log: its counters
 * meet its replica's run. */
static bool
fifo_live(const crdt__msglog *l, crdt__fifo_ent f)
{
	const crdt__rlog *r = &l->r[f.r];
	if (r->n == 0)
		return false;
	return f.c >= r->lo ? f.c - r->lo < r->n : r->lo - f.c < f.n;
}

static size_t
lh_key(const crdt__msglog *l, int k, uint32_t ri)
{
	return k == LH_MSGS ? l->r[ri].n : l->r[ri].bytes;
}

static void
lh_set(crdt__msglog *l, int k, size_t i, uint32_t ri)
{
	l->heap[k][i] = ri;
	l->r[ri].hpos[k] = i;
}

static void
lh_up(crdt__msglog *l, int k, size_t i)
{
	uint32_t ri = l->heap[k][i];
	size_t key = lh_key(l, k, ri);
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (lh_key(l, k, l->heap[k][p]) >= key)
			break;
		lh_set(l, k, i, l->heap[k][p]);
		i = p;
	}
	lh_set(l, k, i, ri);
}

static void
lh_down(crdt__msglog *l, int k, size_t i)
{
	size_t n = l->heap_n[k];
	uint32_t ri = l->heap[k][i];
	size_t key = lh_key(l, k, ri);
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && lh_key(l, k, l->heap[k][c + 1]) >
		    lh_key(l, k, l->heap[k][c]))
			c++;
		if (lh_key(l, k, l->heap[k][c]) <= key)
			break;
		lh_set(l, k, i, l->heap[k][c]);
		i = c;
	}
	lh_set(l, k, i, ri);
}

/* Replica ri's log grew by one message: in a max-heap a key that grew
 * can only move up. The per-message case of lh_update. */
static void
lh_grew(crdt__msglog *l, uint32_t ri)
{
	for (int k = 0; k < 2; k++)
		lh_up(l, k, l->r[ri].hpos[k]);
}

/* Replica ri's log changed size; n == 0 means it leaves the heaps.
 * `was_in`: it was in them before the change. Room was reserved. */
static void
lh_update(crdt__msglog *l, uint32_t ri, bool was_in)
{
	for (int k = 0; k < 2; k++) {
		if (!was_in) {
			if (l->r[ri].n == 0)
				continue;
			size_t i = l->heap_n[k]++;
			lh_set(l, k, i, ri);
			lh_up(l, k, i);
			continue;
		}
		size_t i = l->r[ri].hpos[k];
		if (l->r[ri].n == 0) {
			uint32_t last = l->heap[k][--l->heap_n[k]];
			if (i == l->heap_n[k])
				continue;
			lh_set(l, k, i, last);
		}
		uint32_t x = l->heap[k][i];
		lh_up(l, k, i);
		lh_down(l, k, l->r[x].hpos[k]);
	}
}

/* Drop fifo entries with no message left in the log (from the front at
 * once, elsewhere once there are more entries than twice the messages:
 * each pass drops at least half, O(1) amortised); the survivors keep
 * their order, and neighbours that became one run again (what lay
 * between them went) merge. An entry partly evicted stays whole:
 * crdt__log_next skips what its run no longer holds. */
static void
fifo_compact(crdt__msglog *l)
{
	while (l->fifo_n > 0 && !fifo_live(l, l->fifo[l->fifo_start])) {
		l->fifo_start++;
		l->fifo_n--;
	}
	if (l->fifo_n == 0)
		l->fifo_ext = false;
	if (l->fifo_n <= 2 * l->count + 16)
		return;
	size_t w = 0;
	for (size_t i = 0; i < l->fifo_n; i++) {
		crdt__fifo_ent f = l->fifo[l->fifo_start + i];
		if (!fifo_live(l, f))
			continue;
		crdt__fifo_ent *p = w > 0 ? &l->fifo[w - 1] : NULL;
		if (p != NULL && p->r == f.r && f.c - p->c == p->n &&
		    f.n <= UINT32_MAX - p->n)
			p->n += f.n;
		else
			l->fifo[w++] = f;
	}
	l->fifo_start = 0;
	l->fifo_n = w;
	/* The last entry may have gone or grown. */
	crdt__fifo_ent *f = &l->fifo[w - (w > 0)];
	l->fifo_ext = w > 0 && f->n < UINT32_MAX;
	l->fifo_r = f->r;
	l->fifo_c = f->c + f->n;
}

/* Evict the oldest message of the replica that holds the most messages
 * (k = LH_MSGS) or bytes (LH_BYTES). */
static void
log_evict_one(crdt__msglog *l, int k)
{
	if (l->heap_n[k] == 0)
		return;
	uint32_t ri = l->heap[k][0];
	crdt__rlog *r = &l->r[ri];
	uint8_t *p = r->v[r->start];
	crdt__lent e = crdt__log_ent_at(p);
	size_t len = crdt__lent_len(e);
	l->spliced -= crdt__lent_spliced(e);
	l->count--;
	l->bytes -= len;
	r->bytes -= len;
	if (e.n > CRDT__LOG_BIG) {
		l->held -= big_size(e.n);
		crdt__free(l->a, p, big_size(e.n));
	} else {
		/* The run is a FIFO and chunks are filled in order, so the
		 * oldest short message is in the oldest chunk. */
		crdt__lchunk *c = r->head;
		assert(c != NULL && c->n > 0 && p >= c->data &&
		    e.p + e.n <= c->data + c->used);
		if (--c->n == 0) {
			r->head = c->next;
			if (r->head == NULL)
				r->tail = NULL;
			chunk_free(l, c);
		}
	}
	r->start++;
	r->n--;
	r->lo++;
	lh_update(l, ri, true);
}

/* Empty replica ri's run; its next message is `next`. `keep`: see
 * run_free. */
static void
run_reset(crdt__msglog *l, uint32_t ri, uint64_t next, bool keep)
{
	crdt__rlog *r = &l->r[ri];
	bool was_in = r->n > 0;
	run_free(l, r, keep);
	l->count -= r->n;
	l->bytes -= r->bytes;
	r->start = r->n = 0;
	r->bytes = 0;
	r->lo = next;
	r->gen = ++l->gen_seq;
	if (was_in)
		lh_update(l, ri, true);
}

void
crdt__log_reset(crdt__msglog *l, uint32_t ri, uint64_t next)
{
	run_reset(l, ri, next, false);
	fifo_compact(l);
}

/* The room a short message of `len` (at most CRDT__LOG_BIG) bytes takes
 * in a chunk: its prefix and bytes. */
static size_t
short_size(size_t len)
{
	return len + (len < 0x80 ? 1 : 2);
}

/* The room of a new chunk of replica r for a message of `len` (at most
 * CRDT__LOG_BIG) bytes: as large as the run, within [MIN, MAX], so a
 * small run has small chunks (a writer of one message holds 256 bytes
 * for it, not a page) and a long one costs one malloc per 64 KiB. */
static size_t
chunk_room(const crdt__rlog *r, size_t len)
{
	size_t cap = CRDT_MAX(r->bytes, short_size(len));
	cap = CRDT_MAX(cap, (size_t)CRDT__LOG_CHUNK_MIN);
	return CRDT_MIN(cap, (size_t)CRDT__LOG_CHUNK_MAX);
}

/* Room for `len` (at most CRDT__LOG_BIG) bytes at the end of replica r's
 * chain, or else the spare chunk the push will link there. The spare is
 * not linked before the push, so a chain never holds an empty chunk. */
static int
chunk_reserve(crdt__msglog *l, crdt__rlog *r, size_t len)
{
	crdt__lchunk *t = r->tail;
	if (t != NULL && short_size(len) <= t->cap - t->used)
		return 0;
	size_t cap = chunk_room(r, len);
	if (l->spare != NULL && l->spare->cap == cap)
		return 0;
	crdt__lchunk *c = crdt__malloc(l->a, sizeof *c + cap);
	if (c == NULL)
		return CRDT_ENOMEM;
	if (l->spare != NULL)
		chunk_free(l, l->spare);
	c->next = NULL;
	c->cap = cap;
	c->used = c->n = 0;
	l->held += sizeof *c + cap;
	l->spare = c;
	return 0;
}

/* A block for a message of `len` (more than CRDT__LOG_BIG) bytes and its
 * prefix, for the next push. */
static int
big_reserve(crdt__msglog *l, size_t len)
{
	if (l->big != NULL && l->big_len == len)
		return 0;
	if (len > SIZE_MAX - 10)
		return CRDT_ENOMEM;
	uint8_t *p = crdt__malloc(l->a, big_size(len));
	if (p == NULL)
		return CRDT_ENOMEM;
	if (l->big != NULL) {
		l->held -= big_size(l->big_len);
		crdt__free(l->a, l->big, big_size(l->big_len));
	}
	l->big = p;
	l->big_len = len;
	l->held += big_size(len);
	return 0;
}

int
crdt__log_reserve_slow(crdt__msglog *l, uint32_t ri, size_t len)
{
	crdt__rlog *r = &l->r[ri];
	if (r->start > 0 && r->start + r->n == r->cap) {
		memmove(r->v, r->v + r->start, r->n * sizeof *r->v);
		r->start = 0;
	}
	void *v = r->v;
	CRDT_TRY(crdt__grow(l->a, &v, &r->cap, r->start + r->n + 1,
	    sizeof *r->v));
	r->v = v;
	if (l->fifo_start > 0 && l->fifo_start + l->fifo_n == l->fifo_cap) {
		memmove(l->fifo, l->fifo + l->fifo_start,
		    l->fifo_n * sizeof *l->fifo);
		l->fifo_start = 0;
	}
	v = l->fifo;
	CRDT_TRY(crdt__grow(l->a, &v, &l->fifo_cap,
	    l->fifo_start + l->fifo_n + 1, sizeof *l->fifo));
	l->fifo = v;
	for (int k = 0; k < 2; k++) {
		v = l->heap[k];
		CRDT_TRY(crdt__grow(l->a, &v, &l->heap_cap[k], l->heap_n[k] + 1,
		    sizeof *l->heap[k]));
		l->heap[k] = v;
	}
	return len > CRDT__LOG_BIG ? big_reserve(l, len) :
				     chunk_reserve(l, r, len);
}

/* Write the stored form of a message (crdt__log_stored_size bytes). */
static void
stored_put(uint8_t *p, const uint8_t *bytes, size_t len,
    const crdt__log_splice *s)
{
	if (s == NULL) {
		if (len > 0)
			memcpy(p, bytes, len);
		return;
	}
	*p++ = CRDT__LOG_SPLICED;
	memcpy(p, &s->base, sizeof s->base);
	p += sizeof s->base;
	if ((s->tag | s->off | s->at | s->hole) < 0x80) {
		p[0] = (uint8_t)s->tag;
		p[1] = (uint8_t)s->off;
		p[2] = (uint8_t)s->at;
		p[3] = (uint8_t)s->hole;
		p += 4;
	} else {
		p += pfx_put(p, s->tag);
		p += pfx_put(p, s->off);
		p += pfx_put(p, s->at);
		p += pfx_put(p, s->hole);
	}
	memcpy(p, bytes, s->at);
	memcpy(p + s->at, bytes + s->at + s->hole, len - s->at - s->hole);
}

void
crdt__log_push(crdt__msglog *l, uint32_t ri, uint64_t c, const uint8_t *bytes,
    size_t len, const crdt__log_splice *s)
{
	crdt__rlog *r = &l->r[ri];
	bool gone = false; /* messages left: fifo entries may be dead */
	/* A plain entry's first byte tells it from a spliced one. */
	assert(s != NULL || len == 0 || bytes[0] != CRDT__LOG_SPLICED);
	assert(s == NULL || (s->hole <= len && s->at <= len - s->hole));
	size_t slen = crdt__log_stored_size(len, s);
	if (r->n == 0 && r->lo != c) {
		r->lo = c;
		r->gen = ++l->gen_seq;
	}
	/* The room reserved: the end of the newest chunk, or the spare. */
	bool in_tail = slen <= CRDT__LOG_BIG && r->tail != NULL &&
	    short_size(slen) <= r->tail->cap - r->tail->used;
	if (r->lo + r->n != c) {
		/* Not contiguous (a snapshot jumped this replica): restart,
		 * keeping the newest chunk if the room is there. */
		run_reset(l, ri, c, in_tail);
		gone = true;
	}
	uint8_t *p;
	if (slen > CRDT__LOG_BIG) {
		assert(l->big != NULL && l->big_len == slen);
		p = l->big;
		l->big = NULL;
		l->big_len = 0;
	} else {
		if (!in_tail) {
			crdt__lchunk *sp = l->spare;
			assert(sp != NULL && short_size(slen) <= sp->cap);
			l->spare = NULL;
			if (r->tail != NULL)
				r->tail->next = sp;
			else
				r->head = sp;
			r->tail = sp;
		}
		crdt__lchunk *t = r->tail;
		p = t->data + t->used;
		t->used += short_size(slen);
		t->n++;
	}
	size_t k = 1;
	if (slen < 0x80)
		*p = (uint8_t)slen;
	else
		k = pfx_put(p, slen);
	stored_put(p + k, bytes, len, s);
	bool was_in = r->n > 0;
	r->v[r->start + r->n++] = p;
	r->bytes += len;
	/* The fifo's last entry grows when this message follows it (the
	 * same replica's next counter); the room for a new one is reserved
	 * either way. */
	if (l->fifo_ext && ri == l->fifo_r && c == l->fifo_c) {
		l->fifo_ext = ++l->fifo[l->fifo_start + l->fifo_n - 1].n <
		    UINT32_MAX;
	} else {
		l->fifo[l->fifo_start + l->fifo_n++] =
		    (crdt__fifo_ent){ ri, 1, c };
		l->fifo_ext = true;
		l->fifo_r = ri;
	}
	l->fifo_c = c + 1;
	l->count++;
	l->spliced += s != NULL;
	l->bytes += len;
	if (was_in)
		lh_grew(l, ri);
	else
		lh_update(l, ri, false);
	/* Bounded: each pass evicts one message. */
	while (l->count > l->max_msgs || l->bytes > l->max_bytes) {
		log_evict_one(l, l->count > l->max_msgs ? LH_MSGS : LH_BYTES);
		gone = true;
	}
	/* Only a message leaving can leave an entry without one. */
	if (gone)
		fifo_compact(l);
}

bool
crdt__lent_eq(crdt__lent e, const uint8_t *b, size_t n)
{
	crdt__lpart part[3];
	size_t k = crdt__lent_parts(e, part);
	size_t total = 0;
	for (size_t i = 0; i < k; i++)
		total += part[i].n;
	if (total != n)
		return false;
	for (size_t i = 0; i < k; i++) {
		if (part[i].n != 0 && memcmp(part[i].p, b, part[i].n) != 0)
			return false;
		b += part[i].n;
	}
	return true;
}

int
crdt__lent_append(crdt__lent e, crdt_buf *out)
{
	crdt__lpart part[3];
	size_t k = crdt__lent_parts(e, part);
	CRDT_TRY(crdt__buf_reserve(out, crdt__lent_len(e)));
	for (size_t i = 0; i < k; i++) {
		if (part[i].n != 0)
			memcpy(out->data + out->len, part[i].p, part[i].n);
		out->len += part[i].n;
	}
	return 0;
}

int
crdt__lent_view(crdt__lent e, crdt_buf *buf, const uint8_t **p, size_t *n)
{
	if (!crdt__lent_spliced(e)) {
		*p = e.p;
		*n = e.n;
		return 0;
	}
	crdt_buf_clear(buf);
	CRDT_TRY(crdt__lent_append(e, buf));
	*p = buf->data;
	*n = buf->len;
	return 0;
}

void
crdt__log_repoint(crdt__msglog *l, crdt__log_repoint_fn fn, void *ud)
{
	for (uint32_t ri = 0; ri < l->nr; ri++) {
		crdt__rlog *r = &l->r[ri];
		bool lost = false;
		for (size_t j = 0; j < r->n; j++) {
			uint8_t *p = r->v[r->start + j];
			crdt__lent e = crdt__log_ent_at(p);
			if (!crdt__lent_spliced(e))
				continue;
			crdt__lsplice_hdr h = crdt__lent_hdr(e);
			const uint8_t *nb = fn(ud, h.tag, h.base,
			    h.off + h.hole);
			if (nb == NULL) {
				lost = true;
				break;
			}
			/* The base pointer sits right after the marker. */
			memcpy(p + (e.p - p) + 1, &nb, sizeof nb);
		}
		if (lost)
			run_reset(l, ri, r->lo + r->n, false);
	}
	fifo_compact(l);
}
