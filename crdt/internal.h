#ifndef CRDT_INTERNAL_H
#define CRDT_INTERNAL_H

/*
 * Private declarations shared by the library's modules. Internal functions
 * use the crdt__ prefix and are hidden by -fvisibility=hidden.
 */

#include <assert.h>
#include <string.h>

#include "crdt/crdt.h"
#include "wire_ids.h"

#define CRDT_TRY(expr)                                                  \
	do {                                                            \
		int rc__ = (expr);                                      \
		if (rc__ < 0)                                           \
			return rc__;                                    \
	} while (0)

#define CRDT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CRDT_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- config and allocation (alloc.c) ---- */

/* Copy `in` (NULL = defaults) into `out` with every zero field defaulted
 * and the libc allocator installed when no hook is given. A partly filled
 * allocator (some hooks NULL) is CRDT_EINVAL. */
int crdt__config_resolve(const crdt_config *in, crdt_config *out);

static inline void *
crdt__malloc(const crdt_allocator *a, size_t n)
{
	return a->alloc(a->ud, n ? n : 1);
}

static inline void
crdt__free(const crdt_allocator *a, void *p, size_t n)
{
	if (p != NULL)
		a->free(a->ud, p, n ? n : 1);
}

/* Grow `*p` (an array of `elem`-byte items with capacity `*cap`) so it
 * holds at least `need` items. Doubling; overflow-checked; `*p` and `*cap`
 * untouched on failure. */
int crdt__grow_slow(const crdt_allocator *a, void **p, size_t *cap,
    size_t need, size_t elem);
/* Inline because the apply path reserves room before every write and the
 * room is almost always there: the common case is one compare, not a call
 * (docs/performance.md, "Hardening cost"). */
static inline int
crdt__grow(const crdt_allocator *a, void **p, size_t *cap, size_t need,
    size_t elem)
{
	if (need <= *cap)
		return 0;
	return crdt__grow_slow(a, p, cap, need, elem);
}

/* Heap copy of `n` bytes (n may be 0: a 1-byte block is allocated so the
 * pointer is non-NULL). Free with crdt__free(a, p, n). */
uint8_t *crdt__memdup(const crdt_allocator *a, const void *src, size_t n);
/* Room for `len` more bytes in `b` (b->alloc set), growing like
 * crdt_buf_append; b->len unchanged. */
int crdt__buf_reserve(crdt_buf *b, size_t len);

/* A bump arena of byte strings for owners that free them all at once (a
 * G-Set's elements): one allocation per chunk instead of one per string,
 * no per-string header, and strings never move. Chunks double from 1 KiB
 * to 64 KiB (a larger string gets a chunk of its own size). */
typedef struct crdt__chunk {
	struct crdt__chunk *prev;
	size_t cap, used;
	uint8_t data[];
} crdt__chunk;
typedef struct crdt__arena {
	const crdt_allocator *a;
	crdt__chunk *top; /* newest chunk; older ones through prev */
	size_t next;      /* capacity of the next chunk */
} crdt__arena;
/* A point to return to (crdt__arena_reset). */
typedef struct crdt__arena_mark {
	crdt__chunk *top;
	size_t used;
} crdt__arena_mark;
void crdt__arena_init(crdt__arena *ar, const crdt_allocator *a);
/* Frees every chunk: every string copied into the arena is gone. */
void crdt__arena_fini(crdt__arena *ar);
/* A copy of `n` bytes (n may be 0; src NULL: room for them, not
 * initialised), or NULL (no memory; nothing changed). Inline: a string
 * almost always fits the newest chunk. */
uint8_t *crdt__arena_copy_slow(crdt__arena *ar, const void *src, size_t n);
static inline uint8_t *
crdt__arena_copy(crdt__arena *ar, const void *src, size_t n)
{
	crdt__chunk *c = ar->top;
	if (c == NULL || n > c->cap - c->used)
		return crdt__arena_copy_slow(ar, src, n);
	uint8_t *p = c->data + c->used;
	if (src != NULL && n != 0)
		memcpy(p, src, n);
	c->used += n;
	return p;
}
static inline crdt__arena_mark
crdt__arena_mark_now(const crdt__arena *ar)
{
	return (crdt__arena_mark){ ar->top, ar->top ? ar->top->used : 0 };
}
/* Drop every string copied since `m` (chunks allocated since are freed). */
void crdt__arena_reset(crdt__arena *ar, crdt__arena_mark m);
/* Give back the `n` bytes at `p` if they are the newest string (undo of
 * the last copy, LIFO); otherwise they stay until crdt__arena_fini. */
void crdt__arena_unbump(crdt__arena *ar, const uint8_t *p, size_t n);

/* ---- libsodium wrappers (crypto.c, the only includer of sodium.h) ---- */

int crdt__crypto_init(void);
int crdt__random(void *buf, size_t n);
uint64_t crdt__siphash(const uint8_t key[16], const void *p, size_t n);
#define CRDT__SIG_BYTES 64
#define CRDT__SK_BYTES 64
#define CRDT__NONCE_BYTES 24
#define CRDT__TAG_BYTES 16
/* BLAKE2b with a 16-byte personalisation (domain separation). */
int crdt__hash_personal(uint8_t *out, size_t outlen, const void *in,
    size_t inlen, const char personal[16]);
/* Incremental BLAKE2b with a personalisation (outlen 16..64): the state
 * is opaque here (only crypto.c talks to libsodium). */
typedef struct crdt__hstate {
	_Alignas(64) unsigned char opaque[384];
	size_t outlen;
} crdt__hstate;
int crdt__hash_begin(crdt__hstate *h, size_t outlen, const char personal[16]);
void crdt__hash_add(crdt__hstate *h, const void *in, size_t inlen);
void crdt__hash_end(crdt__hstate *h, uint8_t *out);
/* The same, keyed (BLAKE2b's key parameter, 1..64 bytes). */
int crdt__hash_keyed(uint8_t *out, size_t outlen, const void *in,
    size_t inlen, const uint8_t *key, size_t keylen, const char personal[16]);
int crdt__sign_seed_keypair(uint8_t pk[32], uint8_t sk[64],
    const uint8_t seed[32]);
void crdt__sign(uint8_t sig[64], const uint8_t *m, size_t mlen,
    const uint8_t sk[64]);
int crdt__verify(const uint8_t sig[64], const uint8_t *m, size_t mlen,
    const uint8_t pk[32]);
/* XChaCha20-Poly1305; c needs mlen + 16 bytes. */
int crdt__aead_seal(uint8_t *c, const uint8_t *m, size_t mlen,
    const uint8_t *ad, size_t adlen, const uint8_t nonce[24],
    const uint8_t key[32]);
int crdt__aead_open(uint8_t *m, const uint8_t *c, size_t clen,
    const uint8_t *ad, size_t adlen, const uint8_t nonce[24],
    const uint8_t key[32]);
void crdt__memzero(void *p, size_t n);
struct crdt_identity;
const uint8_t *crdt__identity_sk(const struct crdt_identity *id);
const uint8_t *crdt__identity_pk(const struct crdt_identity *id);

/* ---- byte-string keyed table (table.c) ----
 *
 * Open addressing over a dense entry array: `slots` hold entry index + 1,
 * entries never move between slots except on rehash. Every entry struct
 * starts with a crdt__key. Entries are only ever appended (the CRDTs here
 * never delete), so indices are stable.
 *
 * A key is 16 bytes, one per element of every set and map (a chat
 * message's costs 21 bytes of the W6 row, docs/performance.md): hashes
 * are 32 bits (the high half of the keyed SipHash), which bounds a table
 * to 2^32 slots, and key lengths are 32 bits, since no input reaches
 * 4 GiB (crdt_limits, checked by crdt__config_resolve). */

typedef struct crdt__key {
	uint8_t *ptr;
	uint32_t len;
	uint32_t hash;
} crdt__key;

#define CRDT__IDENT_MAX 32
typedef struct crdt__table {
	const crdt_allocator *a;
	uint8_t *ents;
	size_t stride, n, cap;
	uint32_t *slots;
	size_t nslots; /* power of two, 0 before the first reserve */
	uint8_t sip[16];
	/* NULL, or a key's identity: writes at most CRDT__IDENT_MAX bytes
	 * that name the key to `out` and returns their length (0: the key
	 * has none, hash it whole); only those bytes are hashed. Keys that
	 * share an identity share a hash, so the owner bounds how many it
	 * admits (crdt__table_chain); see crdt__gset_key_prefix. */
	size_t (*ident)(const uint8_t *key, size_t len, uint8_t *out);
	/* Lazily sorted view. Behind a pointer because building it does not
	 * change the table's value: encoders take const objects. */
	struct crdt__sortcache {
		const crdt__key **v;
		size_t cap;
		bool ok;
	} *sc;
} crdt__table;

int crdt__table_init(crdt__table *t, const crdt_allocator *a, size_t stride);
/* Frees entry keys and the table; `fini_ent` (may be NULL) releases what
 * else an entry owns. */
void crdt__table_fini(crdt__table *t, void (*fini_ent)(void *ent,
    const crdt_allocator *a));
static inline void *
crdt__table_at(const crdt__table *t, size_t i)
{
	return t->ents + i * t->stride;
}
/* The key's hash: the high 32 bits of SipHash-2-4 of the key (or of its
 * identity, crdt__table.ident) under the table's key. */
uint32_t crdt__table_hash(const crdt__table *t, const void *key, size_t len);
/* How many entries have hash `hash`, counting up to `limit`. O(the probe
 * run), which a bounded chain keeps short. */
size_t crdt__table_chain(const crdt__table *t, uint32_t hash, size_t limit);
/* Switch the table to `ident` (crdt__table.ident; NULL: whole keys) and
 * hash key `key` (16 bytes; NULL: keep it), and rehash every entry in
 * place (no allocation). CRDT_ETOOBIG, and the table as it was, if more
 * than `limit` entries would share a hash. */
int crdt__table_rehash(crdt__table *t, size_t (*ident)(const uint8_t *,
    size_t, uint8_t *), const uint8_t *key, size_t limit);
void *crdt__table_find(const crdt__table *t, const void *key, size_t len,
    uint32_t hash);
/* The entries with hash `hash`, one per call in probe order (*pos starts
 * at 0), then SIZE_MAX. O(the probe run) in all. */
size_t crdt__table_next(const crdt__table *t, uint32_t hash, size_t *pos);
/* Make room for `extra` more entries; after success, that many
 * crdt__table_insert() calls cannot fail. */
int crdt__table_reserve_slow(crdt__table *t, size_t extra);
/* Every write reserves before it inserts and the room is usually there:
 * inline, that case is two compares, not a call. */
/* A slot keeps an entry index in its low CRDT__TABLE_IBITS bits and a
 * tag of the hash above (table.c): at most CRDT__TABLE_MAX entries a
 * table (CRDT_ETOOBIG past it; 134 M, far past any set a document can
 * load under its limits). */
#define CRDT__TABLE_IBITS 27
#define CRDT__TABLE_MAX (((size_t)1 << CRDT__TABLE_IBITS) - 2)
static inline int
crdt__table_reserve(crdt__table *t, size_t extra)
{
	if (extra <= t->cap - t->n && t->n + extra <= t->nslots / 4 * 3 &&
	    t->n + extra <= CRDT__TABLE_MAX)
		return 0;
	return crdt__table_reserve_slow(t, extra);
}
/* Insert a new entry taking ownership of `key` (crdt__memdup'd). Requires a
 * prior reserve. Returns the zeroed entry with its key filled in. */
void *crdt__table_insert(crdt__table *t, uint8_t *key, size_t len,
    uint32_t hash);
/* Entries' keys in canonical order; rebuilt lazily after inserts. */
int crdt__table_sorted(const crdt__table *t, const crdt__key ***out);
int crdt__key_cmp(const uint8_t *a, size_t alen, const uint8_t *b,
    size_t blen);

/* ---- wire codec (wire.c, the only user of msgpack-c) ----
 *
 * Writers append to a crdt_buf and return 0 or CRDT_ENOMEM; callers roll
 * back `len` on failure. The reader is a strict bounded cursor: it accepts
 * exactly what the writers produce (smallest encodings only), so every
 * accepted input re-encodes to the same bytes. */

/* Version of object encodings (G-Set, LWW, map, vclock). */
#define CRDT__FORMAT_VERSION 1
/* Version of the chat thread's state (kind 9). 2: the message records in
 * columns (docs/chat.md, "State encoding"); version 1 is still read. */
#define CRDT__CHAT_FORMAT_VERSION 2
#define CRDT__CHAT_FORMAT_OLDEST 1
/* Version of the document's own frames (kinds 5..8 and 10: message,
 * snapshot, HELLO, DATA, sealed snapshot). 2: signatures and sealed
 * payloads bound to the document ID; snapshots carry it. Version 1 is
 * still read (docs/wire-format.md, "Versions"), by documents whose ID is
 * zero only: it names no document. */
#define CRDT__DOC_FORMAT_VERSION 2
#define CRDT__DOC_FORMAT_OLDEST 1
/* Version of the sync frames (kinds 7 and 8, sync.c). 3: every frame
 * names its document (doc_id after the kind), so one connection can
 * carry several documents. Versions 1 and 2 are still read, by unbound
 * documents only, like version-1 messages. 4: HELLO and DATA end with
 * the sender's variant digests (sync_digest.c); version 3 is still read,
 * without them. */
#define CRDT__SYNC_FORMAT_VERSION 4
/* The version a kind is written and read with. */
static inline unsigned
crdt__kind_version(unsigned kind)
{
	if (kind == CRDT__KIND_HELLO || kind == CRDT__KIND_DATA)
		return CRDT__SYNC_FORMAT_VERSION;
	if (CRDT__KIND_IS_DOC(kind))
		return CRDT__DOC_FORMAT_VERSION;
	return kind == CRDT__KIND_CHAT ? CRDT__CHAT_FORMAT_VERSION :
	    CRDT__FORMAT_VERSION;
}
/* The oldest version a kind is still read with. */
static inline unsigned
crdt__kind_oldest(unsigned kind)
{
	if (CRDT__KIND_IS_DOC(kind))
		return CRDT__DOC_FORMAT_OLDEST;
	return kind == CRDT__KIND_CHAT ? CRDT__CHAT_FORMAT_OLDEST :
	    CRDT__FORMAT_VERSION;
}

int crdt__w_array(crdt_buf *b, size_t n);
int crdt__w_uint(crdt_buf *b, uint64_t v);
int crdt__w_bin(crdt_buf *b, const void *p, size_t n);
int crdt__w_nil(crdt_buf *b);
/* bin header only; the caller appends exactly n bytes */
int crdt__w_bin_header(crdt_buf *b, size_t n);
int crdt__w_id(crdt_buf *b, const crdt_replica_id *id);
/* [version, kind] header followed by `n_more` fields: writes array(2+n) */
int crdt__w_header(crdt_buf *b, unsigned kind, size_t n_more);

typedef struct crdt__rd {
	const uint8_t *p, *end;
	crdt_limits lim;
	size_t elems;
	unsigned depth;
} crdt__rd;

int crdt__rd_init(crdt__rd *r, const crdt_limits *lim, const void *bytes,
    size_t len);
int crdt__rd_array(crdt__rd *r, size_t *n);
/* n more items of at least `each` bytes fit in what is left: checked
 * before sizing anything by n, so a decoder never allocates more than a
 * small multiple of its input (CRDT_EMALFORMED otherwise). */
int crdt__rd_fits(const crdt__rd *r, size_t n, size_t each);
/* Smallest encodings: a replica ID (bin16) and a uint after it. */
#define CRDT__MIN_ID 18
#define CRDT__MIN_ID_UINT (CRDT__MIN_ID + 1)
int crdt__rd_array_n(crdt__rd *r, size_t want);
int crdt__rd_uint(crdt__rd *r, uint64_t *v);
int crdt__rd_bin(crdt__rd *r, const uint8_t **p, size_t *n);
/* A bin holding a nested encoding (object state, message in a frame):
 * bounded by max_bytes instead of max_value_bytes. */
int crdt__rd_blob(crdt__rd *r, const uint8_t **p, size_t *n);
/* bin or nil; *present = false for nil */
int crdt__rd_opt_bin(crdt__rd *r, const uint8_t **p, size_t *n,
    bool *present);
int crdt__rd_id(crdt__rd *r, crdt_replica_id *id);
/* Reads the array header (length returned in *n, must be >= 2), then
 * version and kind; CRDT_EVERSION / CRDT_EMALFORMED on mismatch. */
int crdt__rd_header(crdt__rd *r, unsigned kind, size_t *n);
/* The same for the document's kinds, which still read older versions:
 * the version found goes to *ver. */
int crdt__rd_header_v(crdt__rd *r, unsigned kind, size_t *n, unsigned *ver);
int crdt__rd_done(const crdt__rd *r);

/* Remove the most recently inserted entry (undo of an insert). Safe with
 * linear probing because removals happen in LIFO order: no entry inserted
 * earlier can have probed past the removed slot. Returns the entry, whose
 * key the caller frees. */
void *crdt__table_pop(crdt__table *t);

/* ---- LWW register core, shared by crdt_lww and crdt_lww_map (lww.c) ---- */

typedef struct crdt__reg {
	uint64_t hlc;
	crdt_replica_id id;
	uint8_t *val;
	size_t len;
	uint8_t state; /* CRDT__REG_* (wire_ids.h) */
} crdt__reg;

/* <0, 0, >0: write (hlc, id, present, val) against the register's */
int crdt__reg_cmp(const crdt__reg *r, uint64_t hlc, const crdt_replica_id *id,
    bool present, const uint8_t *val, size_t len);

/* ---- undo log: atomic multi-op transactions (undo.c; doc.c drives it) ----
 *
 * Object writers called with a log record every change they make, keeping
 * displaced values alive. rollback() restores the objects exactly, in
 * reverse order; commit() frees what was displaced. Either way the log is
 * empty afterwards. */

enum {
	CRDT__UNDO_NONE = 0,    /* the write lost or was redundant */
	CRDT__UNDO_GSET_NEW,    /* element inserted */
	CRDT__UNDO_GSET_DOT,    /* element's dot lowered */
	CRDT__UNDO_LWW,         /* register replaced */
	CRDT__UNDO_MAP_NEW,     /* map key inserted */
	CRDT__UNDO_MAP_REG      /* map register replaced */
};

typedef struct crdt__undo_rec crdt__undo_rec;
struct crdt__undo_rec {
	/* Puts back what this record displaced (the writer's type sets it;
	 * called by rollback, newest record first). */
	void (*restore)(crdt__undo_rec *rec);
	uint8_t kind;
	uint32_t obj; /* document object index, for change events */
	void *target; /* crdt_gset / crdt_lww / crdt_lww_map */
	size_t idx;   /* entry index in the target's table */
	crdt_dot old_dot;
	crdt__reg old;
};

typedef struct crdt__undo {
	const crdt_allocator *a;
	crdt__undo_rec *v;
	size_t n, cap;
} crdt__undo;

/* Make room for `n` records before any write: recording cannot fail. */
int crdt__undo_reserve(crdt__undo *u, size_t n);
void crdt__undo_rollback(crdt__undo *u);
void crdt__undo_commit(crdt__undo *u);
void crdt__undo_fini(crdt__undo *u);

int crdt__gset_write(crdt_gset *s, const uint8_t *elem, size_t len,
    crdt_dot dot, crdt__undo *u, uint32_t obj);
int crdt__lww_write(crdt_lww *r, uint64_t hlc, const crdt_replica_id *id,
    bool present, const uint8_t *val, size_t len, crdt__undo *u,
    uint32_t obj);
int crdt__map_write(crdt_lww_map *m, const uint8_t *key, size_t klen,
    uint64_t hlc, const crdt_replica_id *id, bool present,
    const uint8_t *val, size_t vlen, crdt__undo *u, uint32_t obj);
/* Accessors used by change events and the document. */
const crdt__key *crdt__gset_entry_key(const crdt_gset *s, size_t idx);
/* The entry holding the `len` bytes at elem (the set's own copy of
 * them), or NULL. O(len). */
const crdt__key *crdt__gset_find(const crdt_gset *s, const void *elem,
    size_t len);
/* For the element the last crdt__gset_write inserted: how many elements
 * already had its identity hash (0: none shares its identity, so nothing
 * else names its dot), or SIZE_MAX when the set has no identity prefix
 * (crdt__gset_key_prefix). Meaningful only right after that write. */
size_t crdt__gset_last_chain(const crdt_gset *s);
/* The entries whose element has identity id[0 .. idlen) (the set hashes
 * by identity: crdt__gset_key_prefix), `h` being the set's hash of it
 * (crdt__gset_ident_hash), one per call (*pos starts at 0), then
 * SIZE_MAX. O(the probe run): identities share a hash only with their
 * bounded rivals and chance collisions. */
size_t crdt__gset_ident_next(const crdt_gset *s, const uint8_t *id,
    size_t idlen, uint32_t h, size_t *pos);
/* Hash only each element's identity (`ident`, crdt__table.ident) from
 * now on, under `key` (16 bytes; NULL: the set's own random key): a set
 * whose elements are named by a short prefix (a chat record by its dot)
 * hashes 24 bytes instead of the whole element, and an owner that hashes
 * the same identity under the same key elsewhere can reuse the stored
 * hash (crdt__gset_ident_hash). Elements sharing an identity are bounded:
 * at most max(16, 4 x cfg.max_variants) each; a write or merge past that
 * is CRDT_ETOOBIG and changes nothing. An identity of 24 bytes is a dot
 * (replica ID, counter big-endian): the element's own, so the set stores
 * none per element, only the exceptions (an element without one, or a
 * merged dot other than it). Rehashes what the set holds, and converts a
 * set that stored dots (CRDT_ENOMEM); CRDT_ETOOBIG, and the set unchanged,
 * if that is over the bound already. */
int crdt__gset_key_prefix(crdt_gset *s, size_t (*ident)(const uint8_t *,
    size_t, uint8_t *), const uint8_t *key);
/* Entry idx's stored hash, when the set hashes by `ident` under `key`
 * (true); false otherwise. */
bool crdt__gset_ident_hash(const crdt_gset *s, size_t (*ident)(const
    uint8_t *, size_t, uint8_t *), const uint8_t key[16], size_t idx,
    uint32_t *h);
const crdt__key *crdt__map_entry(const crdt_lww_map *m, size_t idx,
    const crdt__reg **reg);
const crdt__reg *crdt__lww_reg(const crdt_lww *r);
/* A G-Set's entries in canonical order, and an entry's dot. */
int crdt__gset_sorted(const crdt_gset *s, const crdt__key ***v);
crdt_dot crdt__gset_key_dot(const crdt_gset *s, const crdt__key *k);
/* Whether k's dot is its element's own identity (crdt__gset_key_prefix):
 * then a caller that parsed the element knows it without asking. */
bool crdt__gset_key_own(const crdt_gset *s, const crdt__key *k);
/* Decoders that prove elements strictly ascending add them without a
 * lookup: reserve once, then build each element in room from the set's
 * arena (NULL: no memory) and add it; CRDT_ETOOBIG past the identity
 * bound (crdt__gset_key_prefix). After a failure the set is only fit to
 * be freed (room taken stays in the arena until then). */
int crdt__gset_bulk_reserve(crdt_gset *s, size_t n);
uint8_t *crdt__gset_bulk_room(crdt_gset *s, size_t len);
int crdt__gset_bulk_add(crdt_gset *s, uint8_t *elem, size_t len,
    crdt_dot dot);
size_t crdt__map_nentries(const crdt_lww_map *m);

/* ---- chat thread internals (chat.c), driven by doc.c ---- */
typedef struct crdt_chat crdt_chat;
struct crdt_change;
int crdt__chat_new(const crdt_config *cfg, const crdt_replica_id *self,
    const crdt_replica_id *server, crdt_chat **out);
void crdt__chat_free(crdt_chat *c);
int crdt__chat_encode(const crdt_chat *c, crdt_buf *out);
/* Decode a state; `like` supplies config, owner and server. */
int crdt__chat_decode(const crdt_chat *like, const uint8_t *p, size_t n,
    crdt_chat **out);
int crdt__chat_merge(crdt_chat *dst, const crdt_chat *src);
bool crdt__chat_equal(const crdt_chat *a, const crdt_chat *b);
uint64_t crdt__chat_seen(const crdt_chat *c);
bool crdt__chat_is_server(const crdt_chat *c, const crdt_replica_id *id);
/* Where a post's bytes are in its message and in its record: the op's
 * tail [user, body, reply, meta] is `len` bytes at `src` (in the payload)
 * and the record's tail the same bytes at rec + off, to the record's end
 * (the decoder accepts only the encodings its writers produce: wire.c),
 * so the log can keep the message without them (msglog.h, spliced
 * entries). */
typedef struct crdt__chat_tail {
	const uint8_t *src, *rec;
	size_t len, off;
} crdt__chat_tail;
/* Validate (u NULL) or apply one op; reader after [obj, kind. `walk`
 * identifies the walk (unique per walk_ops call): room reserved for the
 * fold after commit is counted per walk. `tail` (or NULL): a post that
 * writes a new record says where its tail is there; it is left alone
 * otherwise. */
int crdt__chat_op(crdt_chat *c, crdt__rd *r, size_t n, uint64_t kind,
    crdt_dot dot, uint64_t stamp, crdt__undo *u, uint32_t obj,
    crdt_buf *scratch, uint64_t walk, crdt__chat_tail *tail);
/* The record of `c` with the `n` bytes at p (the same bytes in c's own
 * storage), or NULL. O(n). */
const uint8_t *crdt__chat_rec_find(const crdt_chat *c, const uint8_t *p,
    size_t n);
/* Fold one undo record into the index; true when `ch` (filled only when
 * `report`) says what a listener should hear. */
bool crdt__chat_after(crdt_chat *c, const crdt__undo_rec *rec,
    struct crdt_change *ch, bool report);
bool crdt__lww_is_set(const crdt_lww *r);

#endif /* CRDT_INTERNAL_H */
