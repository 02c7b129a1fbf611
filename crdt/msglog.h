#ifndef CRDT_MSGLOG_H
#define CRDT_MSGLOG_H
/*
 * The message log: per replica, a contiguous run of its latest applied
 * messages (what sync serves and equivocation compares against), and the
 * order they were applied in. Below the document: it sees no crdt_doc,
 * only replica numbers (the document's interned indices) and bytes.
 *
 * The fifo records the order in which messages were applied (a causal
 * order, which DATA frames follow), run-length encoded: one entry for
 * consecutive pushes of one replica with consecutive counters (a single
 * writer, a batch from one peer), so it costs per change of writer, not
 * per message. Over a bound, the oldest message of the replica holding
 * the most messages (or bytes, for the byte bound) goes: eviction is per
 * writer, so one sender, however many messages it pushes (a keyless relay
 * cannot judge them), only ever flushes its own history once it holds the
 * largest share. Each push or eviction costs O(log replicas). An entry
 * whose messages are partly evicted stays (crdt__log_next skips the
 * counters its replica's run no longer holds); entries with none left are
 * compacted away once they are half of the fifo, O(1) amortised.
 */
#include "internal.h"

/*
 * Memory. The log copies what it logs (a spliced entry: its stored form,
 * below), each message behind its length
 * (a prefix of 7 bits a byte: 1 byte under 128, 2 up to 16 KiB, at most
 * 10), so a run's entry for a message is one pointer: 8 bytes, not a
 * pointer and a length. A message longer than CRDT__LOG_BIG (1 KiB) is a
 * block of its own (prefix and bytes), freed when it is evicted: a malloc
 * header is small next to it. Shorter ones (a chat message is ~100
 * bytes) are packed end to end into the replica's own chain of chunks,
 * oldest first, so a push costs no malloc. A new chunk's room is the
 * run's bytes at the time, at least CRDT__LOG_CHUNK_MIN (256) and the
 * message with its prefix, at most CRDT__LOG_CHUNK_MAX (64 KiB): it grows
 * geometrically with the run, and a writer of a few messages (one per
 * replica ID is all a flood of new IDs costs) holds a small chunk, not a
 * page. A run is a FIFO (eviction takes a replica's oldest message), so a
 * chunk is freed as soon as the last message in it is evicted. A shared
 * arena would not do: one long-lived message of a quiet writer would pin
 * a chunk of others' evicted ones. Chunks never move (a new one is
 * allocated, never realloc'd), so what crdt__log_get returns stays valid
 * while its entry is in the log.
 *
 * Exactly, the bytes held for messages are the logged bytes (at most
 * max_bytes; for a spliced entry its stored bytes, fewer than its
 * message's) and their prefixes (1 byte each for messages under 128
 * bytes, 2 up to CRDT__LOG_BIG, at most 10 for a long one) plus, per
 * replica:
 *   - the evicted front of its oldest chunk and the unused end of its
 *     newest: at most one chunk each, and one chunk together when they
 *     are the same;
 *   - less than CRDT__LOG_BIG + 2 at the end of each other chunk (one is
 *     closed only when a message of at most CRDT__LOG_BIG bytes and its
 *     prefix do not fit): under a quarter of the room of a chunk of 4 KiB
 *     or more, 1/64 at 64 KiB;
 *   - a sizeof(crdt__lchunk) (32-byte) header per chunk;
 * where a chunk is at most max(CRDT__LOG_CHUNK_MIN, the message that
 * opened it with its prefix, the run's bytes then) and at most 64 KiB;
 * and, per log, at most one reserved chunk and one reserved long-message
 * block, left by a reservation that no push followed (the apply failed
 * after it; the next reservation takes them). Every chunk in a chain
 * holds a message: one emptied by eviction is freed at once, and a
 * replica whose run holds no short message holds no chunk.
 *
 * Beside the messages, the log's arrays (doubling, never shrunk): per
 * replica its crdt__rlog and a run vector of one pointer per message
 * (room for 8, or at most twice the most the run held); per log the
 * fifo, 16 bytes an entry, compacted once it holds more than twice as
 * many entries as the log holds messages, plus 16 (one entry in all
 * while one writer's pushes follow each other; an entry a message when
 * writers take turns message by message); and two heaps of 4 bytes per
 * replica with messages. At 100,000 messages of one writer that is 10.5
 * bytes a message, and the prefixes ~1.3; a pointer and a length per
 * message and a fifo entry per message took 42 (docs/performance.md,
 * W6).
 */
enum {
	CRDT__LOG_BIG = 1024,
	CRDT__LOG_CHUNK_MIN = 256,
	CRDT__LOG_CHUNK_MAX = 65536
};

/* One message's bytes: in evidence (evidence.h), a heap copy owned by
 * the evidence store. */
typedef struct crdt__logent {
	uint8_t *bytes;
	size_t len;
} crdt__logent;

/*
 * Spliced entries: a message stored once. Most of a chat post is its
 * user, body and metadata, which the thread's state copies into a record
 * of its own (a grow-only set's element, never freed while its object
 * lives). Logging those bytes again held each post twice
 * (docs/performance.md, W6). A message may instead be logged spliced:
 * its bytes with one range [at, at + hole) cut out, and where that range
 * lives, the tail base[off .. off + hole) of a string its owner keeps
 * (the record). What the log serves is still the message, byte for byte:
 * crdt__lent_parts() gives it as three pieces (before the hole, the hole
 * in the owner's string, after it).
 *
 * The owner guarantees the base outlives the entry, or moves it with
 * crdt__log_repoint() before freeing it (a snapshot load replaces every
 * object: snapshot.c). The hole is the base's tail, so the base is
 * (base, off + hole): that is what crdt__log_repoint() hands back to the
 * owner, with the entry's `tag` (the document's object index).
 *
 * Stored form (after the length prefix): 0x00, the base pointer (8 bytes,
 * native), then tag, off, at and hole as 7-bit varints, then the message
 * without its hole. A plain entry is the message itself, which never
 * starts with 0x00 (a message is an envelope array: envelope.h), so the
 * first byte tells them apart. A spliced chat post of ~106 bytes stores
 * ~68.
 */
typedef struct crdt__log_splice {
	const uint8_t *base;
	size_t off, at, hole;
	uint32_t tag;
} crdt__log_splice;
#define CRDT__LOG_SPLICED 0x00

/* One logged entry as stored: read its message through crdt__lent_*. */
typedef struct crdt__lent {
	const uint8_t *p;
	size_t n;
} crdt__lent;

static inline bool
crdt__lent_spliced(crdt__lent e)
{
	return e.n > 0 && e.p[0] == CRDT__LOG_SPLICED;
}

/* A varint the log wrote (7 bits a byte, low first). */
static inline size_t
crdt__log_rd_var(const uint8_t **pp)
{
	const uint8_t *p = *pp;
	size_t v = 0;
	unsigned sh = 0;
	while (*p & 0x80) {
		v |= (size_t)(*p++ & 0x7f) << sh;
		sh += 7;
	}
	v |= (size_t)*p++ << sh;
	*pp = p;
	return v;
}

/* A spliced entry's header. */
typedef struct crdt__lsplice_hdr {
	const uint8_t *base; /* the hole's bytes are base + off */
	size_t off, at, hole;
	uint32_t tag;
	const uint8_t *rest; /* the message without its hole */
	size_t nrest;
} crdt__lsplice_hdr;

static inline crdt__lsplice_hdr
crdt__lent_hdr(crdt__lent e)
{
	crdt__lsplice_hdr h;
	const uint8_t *p = e.p + 1;
	memcpy(&h.base, p, sizeof h.base);
	p += sizeof h.base;
	h.tag = (uint32_t)crdt__log_rd_var(&p);
	h.off = crdt__log_rd_var(&p);
	h.at = crdt__log_rd_var(&p);
	h.hole = crdt__log_rd_var(&p);
	h.rest = p;
	h.nrest = e.n - (size_t)(p - e.p);
	return h;
}

/* The logged message's length. O(1). */
static inline size_t
crdt__lent_len(crdt__lent e)
{
	if (!crdt__lent_spliced(e))
		return e.n;
	crdt__lsplice_hdr h = crdt__lent_hdr(e);
	return h.nrest + h.hole;
}

/* A piece of a logged message. */
typedef struct crdt__lpart {
	const uint8_t *p;
	size_t n;
} crdt__lpart;

/* The logged message as pieces, in order, into part[] (1 for a plain
 * entry, 3 for a spliced one; a piece may be empty); returns how many.
 * Views valid while the entry is logged and its base held. */
static inline size_t
crdt__lent_parts(crdt__lent e, crdt__lpart part[3])
{
	if (!crdt__lent_spliced(e)) {
		part[0] = (crdt__lpart){ e.p, e.n };
		return 1;
	}
	crdt__lsplice_hdr h = crdt__lent_hdr(e);
	part[0] = (crdt__lpart){ h.rest, h.at };
	part[1] = (crdt__lpart){ h.base + h.off, h.hole };
	part[2] = (crdt__lpart){ h.rest + h.at, h.nrest - h.at };
	return 3;
}

/* Whether the logged message is the `n` bytes at b. No allocation. */
bool crdt__lent_eq(crdt__lent e, const uint8_t *b, size_t n);
/* Append the logged message to `out`; CRDT_ENOMEM leaves it unchanged. */
int crdt__lent_append(crdt__lent e, crdt_buf *out);
/* The logged message as one view: the entry itself when plain, else a
 * copy in `buf` (cleared first). 0 or CRDT_ENOMEM. */
int crdt__lent_view(crdt__lent e, crdt_buf *buf, const uint8_t **p,
    size_t *n);


/* Replica r's messages c .. c + n - 1 (n >= 1), applied one after the
 * other: one fifo entry. */
typedef struct crdt__fifo_ent {
	uint32_t r;
	uint32_t n;
	uint64_t c;
} crdt__fifo_ent;

/* Room for one replica's short messages, in push order. */
typedef struct crdt__lchunk {
	struct crdt__lchunk *next; /* the next newer chunk */
	size_t cap, used;          /* data[0 .. used) written */
	size_t n;                  /* messages of the run in it */
	uint8_t data[];
} crdt__lchunk;

/* One replica's run: messages lo .. lo + n - 1; v[start + i] points at
 * message lo + i's length prefix, in a chunk or its own block. */
typedef struct crdt__rlog {
	uint64_t lo;
	uint8_t **v;
	size_t start, n, cap;
	size_t bytes;   /* bytes of its messages (without prefixes) */
	size_t hpos[2]; /* place in heap[k] while n > 0 */
	/* Its chunks, oldest first; each holds at least one message. */
	crdt__lchunk *head, *tail;
	/* Changes whenever the run may come to hold other bytes under a
	 * counter it held (a reset, a restart, a new replica at this
	 * number), never on a push or an eviction: what the sync digests
	 * cache is valid while it stays (sync_digest.c). Never 0. */
	uint64_t gen;
} crdt__rlog;

typedef struct crdt__msglog {
	const crdt_allocator *a;
	size_t max_msgs, max_bytes;
	crdt__rlog *r; /* indexed by replica number */
	size_t nr, capr;
	crdt__fifo_ent *fifo; /* read it through crdt__log_next */
	size_t fifo_start, fifo_n, fifo_cap;
	/* When fifo_ext, a push of replica fifo_r's message fifo_c extends
	 * the fifo's last entry (its replica and next counter, kept here so
	 * the push tests two numbers). */
	bool fifo_ext;
	uint32_t fifo_r;
	uint64_t fifo_c;
	size_t count, bytes; /* over every replica (bytes without prefixes) */
	size_t spliced;      /* entries of `count` stored spliced */
	/* Allocated for message bytes: chunks with their headers, long
	 * messages' blocks and the reserved ones. */
	size_t held;
	/* Reserved for the next push, or NULL: a chunk to link at the end
	 * of the replica's chain (its newest has no room), a long message's
	 * block for big_len bytes (and their prefix). */
	crdt__lchunk *spare;
	uint8_t *big;
	size_t big_len;
	/* Replicas with a non-empty log, max-heaps by n (messages) and by
	 * bytes: eviction takes from the largest. */
	uint32_t *heap[2];
	size_t heap_n[2], heap_cap[2];
	uint64_t gen_seq; /* the last crdt__rlog.gen handed out */
} crdt__msglog;

/* The bytes of the length prefix of a `len`-byte message. */
static inline size_t
crdt__log_pfx(size_t len)
{
	size_t k = 1;
	while (len >= 0x80) {
		len >>= 7;
		k++;
	}
	return k;
}

/* The bytes a message of `len` takes stored: `len` plain, or spliced as
 * `s` says. Reserve that (crdt__log_reserve). Inline, with the common
 * case first (a chat post's four numbers are under 128): it is computed
 * twice per post. */
static inline size_t
crdt__log_stored_size(size_t len, const crdt__log_splice *s)
{
	if (s == NULL)
		return len;
	size_t var = (s->tag | s->off | s->at | s->hole) < 0x80 ? 4 :
	    crdt__log_pfx(s->tag) + crdt__log_pfx(s->off) +
		crdt__log_pfx(s->at) + crdt__log_pfx(s->hole);
	return 1 + sizeof s->base + var + (len - s->hole);
}

/* The entry whose length prefix the log wrote at p (its stored bytes). */
static inline crdt__lent
crdt__log_ent_at(const uint8_t *p)
{
	if (!(p[0] & 0x80)) /* under 128 bytes */
		return (crdt__lent){ p + 1, p[0] };
	if (!(p[1] & 0x80)) /* under 16 KiB: every short message */
		return (crdt__lent){ p + 2,
			(size_t)(p[0] & 0x7f) | (size_t)p[1] << 7 };
	size_t len = crdt__log_rd_var(&p);
	return (crdt__lent){ p, len };
}

/* An empty log holding at most max_msgs messages and max_bytes bytes. */
void crdt__log_init(crdt__msglog *l, const crdt_allocator *a,
    size_t max_msgs, size_t max_bytes);
/* Frees every logged message, every chunk and the log's arrays. */
void crdt__log_fini(crdt__msglog *l);

/* Room for replicas up to number n - 1; then crdt__log_add_replica()
 * cannot fail for them. */
int crdt__log_reserve_replicas(crdt__msglog *l, size_t n);
/* Replica number l->nr, with an empty log whose next message is 1. */
void crdt__log_add_replica(crdt__msglog *l);
/* Forget replicas numbered n and above (their logs must be empty: they
 * were refused before anything of theirs was applied). */
void crdt__log_drop_replicas(crdt__msglog *l, size_t n);

/* Whether the log holds replica r's message c. O(1). */
static inline bool
crdt__log_has(const crdt__msglog *l, uint32_t r, uint64_t c)
{
	if (r >= l->nr)
		return false;
	const crdt__rlog *x = &l->r[r];
	return x->n > 0 && c >= x->lo && c - x->lo < x->n;
}
/* Replica r's message c into *e (read it with crdt__lent_*: valid while
 * it is logged), or false when the log does not hold it (*e untouched).
 * O(1): the entry's pointer and its prefix. */
bool crdt__log_get(const crdt__msglog *l, uint32_t r, uint64_t c,
    crdt__lent *e);

/* A walk of the logged messages in apply order (the fifo's, skipping
 * what was evicted). The log must not change during it. */
typedef struct crdt__log_iter {
	const crdt__msglog *l;
	size_t i; /* the next fifo entry to open */
	/* Of the entry open: its replica, and the offsets in that replica's
	 * run still to walk, x .. end - 1. */
	const crdt__rlog *r;
	uint32_t ri;
	uint64_t x, end;
} crdt__log_iter;
static inline void
crdt__log_iter_init(crdt__log_iter *it, const crdt__msglog *l)
{
	it->l = l;
	it->i = 0;
	it->r = NULL;
	it->ri = 0;
	it->x = it->end = 0;
}
/* The next logged message (its replica, counter and entry), or false
 * after the last. O(1) amortised: each fifo entry is opened once. Inline:
 * sync walks the log twice per DATA frame, and a call per message cost
 * more than the walk. */
static inline bool
crdt__log_next(crdt__log_iter *it, uint32_t *ri, uint64_t *c,
    crdt__lent *e)
{
	const crdt__msglog *l = it->l;
	while (it->x == it->end) {
		if (it->i >= l->fifo_n)
			return false;
		crdt__fifo_ent f = l->fifo[l->fifo_start + it->i++];
		const crdt__rlog *r = &l->r[f.r];
		/* What of the entry the run holds is one range of it, as
		 * offsets into the run: from the run's start (older ones
		 * were evicted) to the run's end. */
		uint64_t from, to;
		if (f.c >= r->lo) {
			from = f.c - r->lo;
			if (from >= r->n)
				continue;
			to = from + CRDT_MIN((uint64_t)f.n, r->n - from);
		} else {
			if (r->lo - f.c >= f.n)
				continue;
			from = 0;
			to = CRDT_MIN(f.n - (r->lo - f.c), (uint64_t)r->n);
		}
		it->r = r;
		it->ri = f.r;
		it->x = from;
		it->end = to;
	}
	const crdt__rlog *r = it->r;
	*ri = it->ri;
	*c = r->lo + it->x;
	*e = crdt__log_ent_at(r->v[r->start + it->x++]);
	return true;
}

/* Room for one more entry of `len` stored bytes (crdt__log_stored_size)
 * for replica r: its bytes (a
 * chunk's room or a block), its entry in the run, the fifo and the heaps;
 * after this, crdt__log_push of that message cannot fail. On failure the
 * log holds what it held. Once per message, and the room is almost
 * always there: that test is inline. */
int crdt__log_reserve_slow(crdt__msglog *l, uint32_t r, size_t len);
static inline int
crdt__log_reserve(crdt__msglog *l, uint32_t r, size_t len)
{
	const crdt__rlog *x = &l->r[r];
	if (len <= CRDT__LOG_BIG && x->tail != NULL &&
	    len + 2 <= x->tail->cap - x->tail->used && /* prefix <= 2 */
	    x->start + x->n < x->cap &&
	    l->fifo_start + l->fifo_n < l->fifo_cap &&
	    l->heap_n[0] < l->heap_cap[0] && l->heap_n[1] < l->heap_cap[1])
		return 0;
	return crdt__log_reserve_slow(l, r, len);
}
/* Log replica r's message c (len bytes; its first byte is not 0x00, as
 * no envelope's is), a copy of it or, with `s`, spliced as s says (s->at
 * + s->hole <= len, and bytes[s->at ..] equal to s->base[s->off ..] for
 * s->hole bytes: the caller checked), with crdt__log_stored_size(len, s)
 * reserved just before (crdt__log_reserve), evicting over the bounds.
 * The bounds and every count (bytes, crdt__lent_len) are in message
 * bytes, spliced or not. A c that does not follow the run (a snapshot
 * jumped the replica) restarts the run. */
void crdt__log_push(crdt__msglog *l, uint32_t r, uint64_t c,
    const uint8_t *bytes, size_t len, const crdt__log_splice *s);

/* The owner of spliced entries' bases is about to free them, having
 * copied them elsewhere (a load replaced its objects): each spliced
 * entry's base becomes fn(ud, tag, base, base_len), the same bytes in
 * their new place, found from the old ones (still readable during the
 * walk). NULL (the owner does not hold them: not expected, since a load
 * only adds to an object) empties that entry's replica run, as
 * crdt__log_reset does with its next counter, so no entry keeps a
 * pointer into freed memory. O(logged messages). */
typedef const uint8_t *(*crdt__log_repoint_fn)(void *ud, uint32_t tag,
    const uint8_t *base, size_t base_len);
void crdt__log_repoint(crdt__msglog *l, crdt__log_repoint_fn fn, void *ud);
/* How many logged entries are spliced. O(1). */
static inline size_t
crdt__log_spliced(const crdt__msglog *l)
{
	return l->spliced;
}
/* Empty replica r's run (its chunks freed); its next message is `next`. */
void crdt__log_reset(crdt__msglog *l, uint32_t r, uint64_t next);

#endif /* CRDT_MSGLOG_H */
