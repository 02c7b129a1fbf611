#ifndef CRDT_SYNC_DIGEST_H
#define CRDT_SYNC_DIGEST_H
/*
 * Variant digests of sync frames (sync_digest.c): what a replica holds of
 * a writer's counters lo .. hi (its log's bytes and its evidence),
 * comparable between peers whose clocks are equal.
 */
#include "doc_impl.h"

/* One digest a frame stated: writer r (our number, UINT32_MAX when we
 * know no such replica), counters lo .. hi (hi: the frame's clock). */
typedef struct crdt__dgent {
	uint32_t r;
	uint64_t lo, hi;
	uint8_t dg[CRDT__DG_BYTES];
} crdt__dgent;

/* Whether we can state a digest for replica r: the log holds its run up
 * to its clock entry; then *lo, *hi are that run. */
bool crdt__dg_range(const crdt_doc *d, uint32_t r, uint64_t *lo,
    uint64_t *hi);
/* The digest of r's counters lo .. hi, which the log must hold: whole
 * blocks from the cache when it holds them, the rest hashed, O(bytes
 * logged in what was not cached). `fill` (NULL, or d itself when the
 * caller may change it) keeps the whole blocks hashed for next time. */
int crdt__dg_compute(const crdt_doc *d, crdt_doc *fill, uint32_t r,
    uint64_t lo, uint64_t hi, uint8_t out[CRDT__DG_BYTES]);

/* The digests field [id, lo, digest, ...], ascending by ID, of every
 * replica with a range (lo raised past cursor[r] for r < ncursor) and,
 * when eq is not NULL (d->nrs entries), whose clock entry is eq[r]: the
 * peer's, the only writers it can compare (docs/document.md), as many as fit in `budget` bytes and `elems` more elements;
 * *nout (may be NULL) the number written. */
int crdt__dg_write(const crdt_doc *d, crdt_doc *fill, const uint64_t *cursor,
    size_t ncursor,
    const uint64_t *eq, size_t budget, size_t elems, crdt_buf *out,
    size_t *nout);
/* Decode a digests field against the frame's clock pairs: strictly
 * ascending IDs each named by the clock, 1 <= lo <= the clock entry, a
 * bin of exactly CRDT__DG_BYTES; CRDT_EMALFORMED otherwise. *out is
 * allocated (n entries) for the caller to free; nothing else changes. */
int crdt__dg_read(const crdt_doc *d, crdt__rd *r, const iddep *pairs,
    size_t npairs, crdt__dgent **out, size_t *nout);
/* For each stated digest whose hi is our clock entry, whose range our
 * log covers and which differs from ours: lower peer[r] to lo - 1, so
 * the DATA frame serves that range; *any when one did. */
int crdt__dg_mismatch(crdt_doc *d, const crdt__dgent *v, size_t n,
    uint64_t *peer, bool *any);

#endif /* CRDT_SYNC_DIGEST_H */
