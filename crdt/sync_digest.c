/*
 * Variant digests of sync frames (version 4; docs/wire-format.md, "Sync",
 * docs/security.md, "Variant digests").
 *
 * Two replicas with equal clocks can still hold different variants of a
 * dot an equivocator signed twice, and comparing clocks never shows it.
 * So every HELLO and DATA frame states, per writer whose run the log
 * holds up to its clock entry, a digest of the variants held for each of
 * that writer's counters lo .. hi (hi: the frame's clock entry): the
 * bytes in the log and every variant kept as evidence. A peer with the
 * same clock entry whose log covers the range and whose digest differs
 * answers with that range (sync.c, reply_data), and the existing ingest
 * takes each other variant in as evidence.
 *
 * The digest is order-aware and collision resistant, never a set sum: a
 * per-counter record (counter, count, then the message itself when it is
 * the only variant, else the variants' hashes sorted) for every counter
 * of a block of 256, hashed; the block hashes in counter order, hashed
 * with the range. The equivocator chooses the variants, so
 * an XOR or sum of per-message hashes would let it solve, over GF(2),
 * which variant to give whom so that the sums agree; here two different
 * holdings with one digest are a BLAKE2b collision.
 *
 * Computed when a frame is built or answered, never on the apply path:
 * the cost is one BLAKE2b pass over the logged bytes of the writers the
 * frame states (bounded by log_max_bytes), paid per frame. The bytes of
 * a counter with one variant are hashed in the block's stream, not on
 * their own: one BLAKE2b initialisation per block, not per message.
 * The digest of a whole block (all 256 counters in the range) depends on
 * nothing but the bytes logged under those counters and the evidence, so
 * it is cached (d->dgc) under two generations: the run's (crdt__rlog.gen,
 * which changes when the run may hold other bytes under a counter it held:
 * a reset, a restart, a new replica at that number) and the evidence's
 * (crdt__evstore.gen, every variant added or removed). A push adds
 * counters past the last whole block and an eviction takes them from the
 * front, so neither changes a whole block's digest. An up-to-date round
 * then hashes the partial blocks at the ends only: O(blocks), not
 * O(bytes logged). crdt_doc_sync_handle fills the cache (it may allocate;
 * a failed allocation only means no cache); crdt_doc_sync_start, a const
 * read, only reads it.
 */
#include <stdlib.h>

#include "doc_impl.h"
#include "evidence.h"
#include "sync_digest.h"

enum { DG_BLOCK = 256 };

static const char P_MSG[16] = "crdt.sync.v4.msg";
static const char P_BLK[16] = "crdt.sync.v4.blk";
static const char P_ALL[16] = "crdt.sync.v4.all";

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int
hash_cmp(const void *x, const void *y)
{
	return memcmp(x, y, CRDT__DG_BYTES);
}

bool
crdt__dg_range(const crdt_doc *d, uint32_t r, uint64_t *lo, uint64_t *hi)
{
	const crdt__rlog *x = &d->log.r[r];
	uint64_t vc = d->rs[r].vc;

	if (vc == 0 || x->n == 0 || x->lo + x->n - 1 != vc)
		return false;
	*lo = x->lo;
	*hi = vc;
	return true;
}

/*
 * Counter c's record, added to the block's hash: c, the number n of
 * distinct variants held (the logged one, then the evidence's others),
 * and then, when n is 1 (the common case: no equivocation), the
 * message's length and bytes, else the variants' hashes sorted (so the
 * record does not depend on which variant this replica logged). Both
 * forms are length-prefixed, so no record reads as another.
 */
/* Hash the logged message's pieces (a spliced entry's are three). */
static void
hash_lent(crdt__hstate *h, crdt__lent e)
{
	crdt__lpart part[3];
	size_t k = crdt__lent_parts(e, part);
	for (size_t i = 0; i < k; i++)
		crdt__hash_add(h, part[i].p, part[i].n);
}

static int
counter_rec(const crdt_doc *d, uint32_t r, uint64_t c, crdt__hstate *blk)
{
	crdt__lent e;
	crdt_dot dot = { d->rs[r].id, c };
	size_t at, n = 1;
	const crdt__evid *ev = NULL;
	uint8_t head[17];

	if (!crdt__log_get(&d->log, r, c, &e))
		return CRDT_ESTATE; /* the caller checked the range */
	size_t len = crdt__lent_len(e);
	if (d->ev.n > 0)
		ev = crdt__ev_find(&d->ev, dot, &at);
	for (size_t i = 0; ev != NULL && i < ev->n; i++)
		n += !crdt__lent_eq(e, ev->v[i].bytes, ev->v[i].len);
	put64(head, c);
	if (n == 1) {
		head[8] = 1;
		put64(head + 9, len);
		crdt__hash_add(blk, head, 17);
		hash_lent(blk, e);
		return 0;
	}
	/* At most max_variants (the evidence bound) plus the logged one. */
	if (n > 255)
		return CRDT_ESTATE;
	uint8_t h[256 * CRDT__DG_BYTES];
	crdt__hstate one;
	CRDT_TRY(crdt__hash_begin(&one, CRDT__DG_BYTES, P_MSG));
	hash_lent(&one, e);
	crdt__hash_end(&one, h);
	size_t k = 1;
	for (size_t i = 0; i < ev->n; i++) {
		const crdt__logent *v = &ev->v[i];
		if (crdt__lent_eq(e, v->bytes, v->len))
			continue;
		CRDT_TRY(crdt__hash_personal(h + k * CRDT__DG_BYTES,
		    CRDT__DG_BYTES, v->bytes, v->len, P_MSG));
		k++;
	}
	qsort(h, n, CRDT__DG_BYTES, hash_cmp);
	head[8] = (uint8_t)n;
	crdt__hash_add(blk, head, 9);
	crdt__hash_add(blk, h, n * CRDT__DG_BYTES);
	return 0;
}

typedef crdt__dgblk dgblk;

static const dgblk *
cache_get(const crdt_doc *d, uint32_t r, uint64_t b)
{
	if (r >= d->ndgc)
		return NULL;
	const struct crdt__dgrun *x = &d->dgc[r];
	if (b < x->base || b - x->base >= x->n)
		return NULL;
	const dgblk *e = &x->v[b - x->base];
	if (e->lgen != d->log.r[r].gen || e->egen != d->ev.gen)
		return NULL;
	return e;
}

/* Keep block b's digest; `first`: the block of the run's first counter,
 * below which nothing is kept (evicted). The window of blocks kept spans
 * what the run holds (its length is bounded by the log's bounds) and
 * grows geometrically at the end, where pushes add blocks. Out of memory
 * keeps nothing. */
static void
cache_put(crdt_doc *d, uint32_t r, uint64_t b, uint64_t first,
    const uint8_t dg[CRDT__DG_BYTES])
{
	const crdt_allocator *a = &d->cfg.alloc;
	if (r >= d->ndgc) {
		size_t n = d->nrs;
		if (n <= r)
			return;
		struct crdt__dgrun *v = crdt__malloc(a, n * sizeof *v);
		if (v == NULL)
			return;
		if (d->ndgc > 0)
			memcpy(v, d->dgc, d->ndgc * sizeof *v);
		memset(v + d->ndgc, 0, (n - d->ndgc) * sizeof *v);
		crdt__free(a, d->dgc, d->ndgc * sizeof *d->dgc);
		d->dgc = v;
		d->ndgc = n;
	}
	struct crdt__dgrun *x = &d->dgc[r];
	uint64_t nb = b, ne = b + 1;
	if (x->n > 0) {
		nb = x->base < b ? x->base : b;
		ne = x->base + x->n > b + 1 ? x->base + x->n : b + 1;
		if (nb < first)
			nb = first; /* b >= first: a whole block in the run */
	}
	if (ne - nb > SIZE_MAX / 2 / sizeof(dgblk))
		return;
	size_t want = (size_t)(ne - nb);
	if (x->n == 0 || nb != x->base || want > x->n) {
		size_t cap = want;
		if (x->n > 0 && want > x->n && x->n * 2 > want)
			cap = x->n * 2;
		dgblk *v = crdt__malloc(a, cap * sizeof *v);
		if (v == NULL)
			return;
		memset(v, 0, cap * sizeof *v);
		if (x->n > 0) {
			uint64_t lo = x->base > nb ? x->base : nb;
			uint64_t hi = x->base + x->n < nb + cap ?
			    x->base + x->n : nb + cap;
			if (lo < hi)
				memcpy(v + (lo - nb), x->v + (lo - x->base),
				    (size_t)(hi - lo) * sizeof *v);
		}
		crdt__free(a, x->v, x->n * sizeof *x->v);
		x->v = v;
		x->n = cap;
		x->base = nb;
	}
	dgblk *e = &x->v[b - x->base];
	memcpy(e->dg, dg, CRDT__DG_BYTES);
	e->lgen = d->log.r[r].gen;
	e->egen = d->ev.gen;
}

int
crdt__dg_compute(const crdt_doc *d, crdt_doc *fill, uint32_t r, uint64_t lo,
    uint64_t hi, uint8_t out[CRDT__DG_BYTES])
{
	crdt__hstate all, blk;
	uint8_t range[16], bd[CRDT__DG_BYTES];

	CRDT_TRY(crdt__hash_begin(&all, CRDT__DG_BYTES, P_ALL));
	put64(range, lo);
	put64(range + 8, hi);
	crdt__hash_add(&all, range, sizeof range);
	for (uint64_t c = lo;;) {
		/* Block of counter c: (c - 1) / 256, its part in [lo, hi];
		 * written without overflow at any counter. */
		uint64_t room = DG_BLOCK - 1 - (c - 1) % DG_BLOCK;
		uint64_t cnt = (hi - c < room ? hi - c : room) + 1;
		uint64_t b = (c - 1) / DG_BLOCK;
		const dgblk *hit = cnt == DG_BLOCK ? cache_get(d, r, b) : NULL;
		if (hit != NULL) {
			memcpy(bd, hit->dg, sizeof bd);
		} else {
			CRDT_TRY(crdt__hash_begin(&blk, CRDT__DG_BYTES, P_BLK));
			for (uint64_t k = 0; k < cnt; k++)
				CRDT_TRY(counter_rec(d, r, c + k, &blk));
			crdt__hash_end(&blk, bd);
			if (fill != NULL && cnt == DG_BLOCK)
				cache_put(fill, r, b,
				    (d->log.r[r].lo - 1) / DG_BLOCK, bd);
		}
		crdt__hash_add(&all, bd, sizeof bd);
		if (hi - c < cnt)
			break;
		c += cnt;
	}
	crdt__hash_end(&all, out);
	return 0;
}

static int
rs_id_cmp(const void *x, const void *y)
{
	const rstate *a = *(const rstate *const *)x;
	const rstate *b = *(const rstate *const *)y;
	return crdt_replica_id_cmp(&a->id, &b->id);
}

/* Encoded size of a uint, as msgpack-c writes it. */
static size_t
uint_size(uint64_t v)
{
	return v < 128 ? 1 : v < 256 ? 2 : v < 65536 ? 3 :
	    v <= UINT32_MAX ? 5 : 9;
}

int
crdt__dg_write(const crdt_doc *d, crdt_doc *fill, const uint64_t *cursor,
    size_t ncursor,
    const uint64_t *eq, size_t budget, size_t elems, crdt_buf *out,
    size_t *nout)
{
	const crdt_allocator *a = &d->cfg.alloc;
	const rstate **v = crdt__malloc(a, (d->nrs + 1) * sizeof *v);
	uint64_t *los = crdt__malloc(a, (d->nrs + 1) * sizeof *los);
	size_t n = 0, size = 5; /* the array header, at most */
	int rc = v != NULL && los != NULL ? 0 : CRDT_ENOMEM;

	for (size_t i = 0; rc == 0 && i < d->nrs; i++) {
		uint64_t lo, hi;
		if (!crdt__dg_range(d, (uint32_t)i, &lo, &hi) ||
		    (eq != NULL && eq[i] != hi))
			continue;
		if (i < ncursor && cursor[i] >= lo)
			lo = cursor[i] + 1;
		if (lo > hi)
			continue;
		v[n++] = &d->rs[i];
	}
	if (rc == 0 && n > 1)
		qsort(v, n, sizeof *v, rs_id_cmp);
	/* What fits: writers in ID order while the budget lasts (a digest
	 * left out is only a comparison not made in this frame). */
	size_t k = 0;
	for (; rc == 0 && k < n; k++) {
		uint32_t r = (uint32_t)(v[k] - d->rs);
		uint64_t lo = 0, hi;
		(void)crdt__dg_range(d, r, &lo, &hi);
		if (r < ncursor && cursor[r] >= lo)
			lo = cursor[r] + 1;
		size_t sz = CRDT__MIN_ID + uint_size(lo) + 2 + CRDT__DG_BYTES;
		if (size > budget || sz > budget - size || elems + 3 * (k + 1) >
		    d->cfg.limits.max_elems)
			break;
		size += sz;
		los[k] = lo;
	}
	n = k;
	if (rc == 0)
		rc = crdt__w_array(out, 3 * n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		uint32_t r = (uint32_t)(v[i] - d->rs);
		uint8_t dg[CRDT__DG_BYTES];
		rc = crdt__dg_compute(d, fill, r, los[i], v[i]->vc, dg);
		if (rc == 0)
			rc = crdt__w_id(out, &v[i]->id);
		if (rc == 0)
			rc = crdt__w_uint(out, los[i]);
		if (rc == 0)
			rc = crdt__w_bin(out, dg, sizeof dg);
	}
	crdt__free(a, v, (d->nrs + 1) * sizeof *v);
	crdt__free(a, los, (d->nrs + 1) * sizeof *los);
	if (rc == 0 && nout != NULL)
		*nout = n;
	return rc;
}


int
crdt__dg_read(const crdt_doc *d, crdt__rd *r, const iddep *pairs,
    size_t npairs, crdt__dgent **out, size_t *nout)
{
	size_t n;

	*out = NULL;
	*nout = 0;
	CRDT_TRY(crdt__rd_array(r, &n));
	if (n % 3 != 0)
		return CRDT_EMALFORMED;
	n /= 3;
	/* an ID, a uint and a bin 16 each */
	CRDT_TRY(crdt__rd_fits(r, n, CRDT__MIN_ID_UINT + 2 + CRDT__DG_BYTES));
	if (n == 0) {
		r->depth--;
		return 0;
	}
	crdt__dgent *v = crdt__malloc(&d->cfg.alloc, n * sizeof *v);
	if (v == NULL)
		return CRDT_ENOMEM;
	crdt_replica_id prev, id;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const uint8_t *p;
		size_t plen;
		rc = crdt__rd_id(r, &id);
		if (rc == 0 && i > 0 && crdt_replica_id_cmp(&prev, &id) >= 0)
			rc = CRDT_EMALFORMED;
		if (rc == 0)
			rc = crdt__rd_uint(r, &v[i].lo);
		if (rc == 0)
			rc = crdt__rd_bin(r, &p, &plen);
		if (rc == 0 && plen != CRDT__DG_BYTES)
			rc = CRDT_EMALFORMED;
		if (rc != 0)
			break;
		/* hi is the frame's own clock entry: a digest for a writer
		 * the frame's clock does not name, or a range outside it, is
		 * malformed. */
		v[i].hi = crdt__vc_pairs_get(pairs, npairs, &id);
		if (v[i].lo == 0 || v[i].hi == 0 || v[i].lo > v[i].hi)
			rc = CRDT_EMALFORMED;
		memcpy(v[i].dg, p, CRDT__DG_BYTES);
		v[i].r = crdt__rep_index(d, &id);
		prev = id;
	}
	if (rc < 0) {
		crdt__free(&d->cfg.alloc, v, n * sizeof *v);
		return rc;
	}
	r->depth--;
	*out = v;
	*nout = n;
	return 0;
}

int
crdt__dg_mismatch(crdt_doc *d, const crdt__dgent *v, size_t n,
    uint64_t *peer, bool *any)
{
	*any = false;
	for (size_t i = 0; i < n; i++) {
		uint64_t lo, hi;
		uint8_t dg[CRDT__DG_BYTES];
		uint32_t r = v[i].r;
		if (r == UINT32_MAX || !crdt__dg_range(d, r, &lo, &hi) ||
		    hi != v[i].hi || lo > v[i].lo)
			continue;
		CRDT_TRY(crdt__dg_compute(d, d, r, v[i].lo, hi, dg));
		if (memcmp(dg, v[i].dg, sizeof dg) == 0)
			continue;
		/* Serve the range: DATA sends r's messages past peer[r]. */
		if (peer[r] > v[i].lo - 1)
			peer[r] = v[i].lo - 1;
		*any = true;
	}
	return 0;
}
