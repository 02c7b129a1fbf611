#ifndef CRDT_EVIDENCE_H
#define CRDT_EVIDENCE_H
/*
 * Equivocation evidence: every variant seen of a dot that was signed
 * twice with different bytes, kept (and saved in snapshots, sent in every
 * DATA frame) so the other halves travel and every replica ends with the
 * union. Below the document: it sees no crdt_doc; a signer is its
 * replica number, given by the caller.
 *
 * Bounded (crdt_config): per dot at most max_variants variants, per
 * signer a quarter of max_evidence_bytes, in all max_evidence_bytes and
 * max_buffered_msgs dots. One signer that equivocates without end thus
 * fills only its own share, and what every replica keeps stays well under
 * max_bytes.
 */
#include "msglog.h"

/* Every variant seen of one dot, ascending by bytes. */
typedef struct crdt__evid {
	crdt_dot dot;
	crdt__logent *v;
	size_t n, cap;
	uint32_t r; /* signer's replica number its bytes count to, or none
		     * (UINT32_MAX) */
	size_t bytes;
} crdt__evid;

typedef struct crdt__evstore {
	const crdt_allocator *a;
	size_t max_dots, max_variants, max_bytes;
	crdt__evid *v; /* ascending by dot */
	size_t n, cap;
	size_t bytes;
	size_t *signer; /* bytes per signer replica number */
	size_t nsigner, capsigner;
	/* Changes with every variant added or removed: what the sync
	 * digests cache is valid while it stays (sync_digest.c). */
	uint64_t gen;
} crdt__evstore;

void crdt__ev_init(crdt__evstore *s, const crdt_allocator *a,
    size_t max_dots, size_t max_variants, size_t max_bytes);
void crdt__ev_fini(crdt__evstore *s);

/* The entry of `dot`, or NULL; *at is where it is or would go. O(log n). */
crdt__evid *crdt__ev_find(const crdt__evstore *s, crdt_dot dot, size_t *at);
/* Whether entry `e` (may be NULL) holds variant `b`. */
bool crdt__ev_has(const crdt__evid *e, const uint8_t *b, size_t len);
/* Would `len` more bytes in `more` variants for `dot`, signed by replica
 * r (UINT32_MAX: none), fit the bounds? CRDT_EBUFFULL (no room for a new
 * dot) or CRDT_ETOOBIG; checked before any allocation or signature
 * check. */
int crdt__ev_fits(const crdt__evstore *s, crdt_dot dot, uint32_t r,
    size_t len, size_t more);
/* Add variant `b` of `dot` (copied), its bytes counted to signer r
 * (for a new dot). 1 added, 0 known, or an error (nothing changed). */
int crdt__ev_add(crdt__evstore *s, crdt_dot dot, uint32_t r,
    const uint8_t *b, size_t len);
/* Remove variant `b` of `dot`; an entry left with one variant is no
 * evidence of anything and goes too. */
void crdt__ev_remove(crdt__evstore *s, crdt_dot dot, const uint8_t *b,
    size_t len);
/* Drop the dots left with a single variant. */
void crdt__ev_prune(crdt__evstore *s);
/* Variants written (crdt__ev_write), over every dot holding two or more:
 * a dot with a single variant here proves nothing and is not written. */
size_t crdt__ev_variants(const crdt__evstore *s);
/* [variant, ...] of every dot, ascending (dot, bytes). */
int crdt__ev_write(const crdt__evstore *s, crdt_buf *out);

#endif /* CRDT_EVIDENCE_H */
