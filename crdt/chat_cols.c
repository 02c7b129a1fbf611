/*
 * The chat thread's message records in columns: the `msgs` field of a
 * version-2 chat state (layout in docs/chat.md, "State encoding").
 *
 * A record [id, counter, order, sent_at, user, body, reply|nil, meta|nil]
 * costs ~115 bytes in a G-Set state (the replica ID twice, the dot again
 * beside the record, two full 8-byte stamps). Here the replica IDs and
 * user IDs are tables written once, counters and stamps are deltas, the
 * G-Set's dot is implied by the record's own ID, and the bodies are one
 * concatenated column: ~6 bytes a record besides its body.
 *
 * Canonical like every encoding: the records are the G-Set's, in its
 * order (ascending record bytes, which is ascending (replica, counter)),
 * every table is sorted and holds only what is referenced, every integer
 * is a minimal LEB128 varint, and the decoder rebuilds each record's exact
 * bytes and refuses them unless strictly ascending. So an accepted input
 * re-encodes to the same bytes. Every count is checked against the bytes
 * that remain before anything is sized by it.
 */
#include "chat_impl.h"

/* Per-record flags (the flags column): which optional fields the extra
 * column holds for the record, in this order. */
enum {
	FL_LOGICAL = 1, /* sent_at's 16-bit logical part, 1..65535 */
	FL_ORD = 2,     /* order - sent_at, >= 1 (order > sent_at) */
	FL_REPLY = 4,   /* reply_to: replica index, counter */
	FL_META = 8,    /* meta: length, bytes */
	FL_DOT = 16,    /* the G-Set's dot, when not the record's ID */
	FL_ALL = 31
};

enum {
	C_RUNS,  /* per replica: records with that ID */
	C_CTR,   /* per record: counter delta within its replica's run */
	C_FLAGS, /* per record: one byte */
	C_STAMP, /* per record: zigzag delta of sent_at's milliseconds */
	C_USER,  /* per record: user dictionary index */
	C_BLEN,  /* per record: body length */
	C_EXTRA, /* the optional fields the flags announce */
	C_BODY,  /* the bodies, concatenated */
	NCOLS
};

/* Smallest record: counter, flags, stamp, user and body length, one byte
 * each. */
#define MIN_REC 5
#define MS_LIMIT (UINT64_C(1) << 48)

/* ---- varints ---- */

static size_t
vu_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static int
put_vu(crdt_buf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	do {
		t[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v != 0)
			t[n] |= 0x80;
		n++;
	} while (v != 0);
	return crdt_buf_append(b, t, n);
}

static uint64_t
zig(int64_t d)
{
	return ((uint64_t)d << 1) ^ (uint64_t)(d >> 63);
}

static int64_t
unzig(uint64_t z)
{
	return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

typedef struct col {
	const uint8_t *p, *end;
} col;

static size_t
col_left(const col *c)
{
	return (size_t)(c->end - c->p);
}

/* A minimal LEB128 varint of at most 64 bits: a last byte of zero (after
 * the first) or bits past 64 are another encoding of a smaller number. */
static int
get_vu(col *c, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < 10; i++) {
		if (c->p == c->end)
			return CRDT_EMALFORMED;
		uint8_t b = *c->p++;
		if (i == 9 && b > 1)
			return CRDT_EMALFORMED;
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			if (b == 0 && i > 0)
				return CRDT_EMALFORMED;
			*v = x;
			return 0;
		}
	}
	return CRDT_EMALFORMED; /* not reached: the tenth byte ends it */
}

/* ---- encoder ---- */

typedef bulk_user ustr;

static int
id_cmp(const void *x, const void *y)
{
	return crdt_replica_id_cmp(x, y);
}

static int
ustr_cmp(const void *x, const void *y)
{
	const ustr *a = x, *b = y;
	return crdt__key_cmp(a->p, a->n, b->p, b->n);
}

/* Index of `id` in the sorted table (present by construction). */
static size_t
id_index(const crdt_replica_id *v, size_t n, const crdt_replica_id *id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = crdt_replica_id_cmp(&v[mid], id);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static size_t
user_index(const ustr *v, size_t n, const uint8_t *p, size_t len)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = crdt__key_cmp(v[mid].p, v[mid].n, p, len);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Room in a column: usually there already, one compare. */
static inline int
room(crdt_buf *b, size_t need)
{
	return need <= b->cap - b->len ? 0 : crdt__buf_reserve(b, need);
}

static inline bool
same_id(const crdt_replica_id *a, const crdt_replica_id *b)
{
	return memcmp(a->bytes, b->bytes, CRDT_REPLICA_ID_BYTES) == 0;
}

static inline bool
same_dot(crdt_dot a, crdt_dot b)
{
	return a.counter == b.counter && same_id(&a.replica, &b.replica);
}

static inline bool
same_user(const ustr *u, const uint8_t *p, size_t n)
{
	return u->n == n && memcmp(u->p, p, n) == 0;
}

typedef struct enc {
	const crdt_allocator *a;
	msgrec *m; /* every record, parsed once */
	crdt_dot *dot;
	size_t n;
	crdt_replica_id *ids;
	size_t nids, capids;
	ustr *us;
	size_t nus, capus;
	uint64_t *runs;
	crdt_buf head, c[NCOLS];
} enc;

static int
add_id(enc *e, const crdt_replica_id *id)
{
	if (e->nids > 0 && same_id(&e->ids[e->nids - 1], id))
		return 0;
	void *v = e->ids;
	CRDT_TRY(crdt__grow(e->a, &v, &e->capids, e->nids + 1, sizeof *e->ids));
	e->ids = v;
	e->ids[e->nids++] = *id;
	return 0;
}

static int
add_user(enc *e, const uint8_t *p, size_t n)
{
	if (e->nus > 0 && same_user(&e->us[e->nus - 1], p, n))
		return 0;
	void *v = e->us;
	CRDT_TRY(crdt__grow(e->a, &v, &e->capus, e->nus + 1, sizeof *e->us));
	e->us = v;
	e->us[e->nus++] = (ustr){ p, n };
	return 0;
}

/* Sort and drop duplicates. */
static size_t
uniq(void *base, size_t n, size_t size, int (*cmp)(const void *,
    const void *))
{
	if (n < 2)
		return n;
	qsort(base, n, size, cmp);
	uint8_t *b = base;
	size_t k = 1;
	for (size_t i = 1; i < n; i++)
		if (cmp(b + (k - 1) * size, b + i * size) != 0)
			memmove(b + k++ * size, b + i * size, size);
	return k;
}

/*
 * The fields of a record of the state: the save path's parser, a third of
 * the cost of crdt__chat_parse_msgrec (no reader set-up, no calls). The
 * records in msgs were all validated on the way in (ops, or a decoded
 * state), so this only has to be right for the post op's layout; it still
 * stays inside the record and fails on anything else, and debug builds
 * check it against the full parser.
 */
static inline bool
sk_uint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	if (*p >= end)
		return false;
	uint8_t t = *(*p)++;
	unsigned n = t <= 0x7f ? 0 : t == 0xcc ? 1 : t == 0xcd ? 2 :
	    t == 0xce ? 4 : t == 0xcf ? 8 : 9;
	if (n == 9 || (size_t)(end - *p) < n)
		return false;
	uint64_t x = n == 0 ? t : 0;
	for (unsigned i = 0; i < n; i++)
		x = x << 8 | (*p)[i];
	*p += n;
	*v = x;
	return true;
}

static inline bool
sk_bin(const uint8_t **p, const uint8_t *end, const uint8_t **b, size_t *n)
{
	if (*p >= end)
		return false;
	uint8_t t = *(*p)++;
	unsigned k = t == 0xc4 ? 1 : t == 0xc5 ? 2 : t == 0xc6 ? 4 : 0;
	if (k == 0 || (size_t)(end - *p) < k)
		return false;
	size_t x = 0;
	for (unsigned i = 0; i < k; i++)
		x = x << 8 | (*p)[i];
	*p += k;
	if ((size_t)(end - *p) < x)
		return false;
	*b = *p;
	*n = x;
	*p += x;
	return true;
}

static inline bool
sk_dot(const uint8_t **p, const uint8_t *end, crdt_dot *d)
{
	if ((size_t)(end - *p) < 18 || (*p)[0] != 0xc4 || (*p)[1] != 0x10)
		return false;
	memcpy(d->replica.bytes, *p + 2, 16);
	*p += 18;
	return sk_uint(p, end, &d->counter);
}

static int
skim_rec(const uint8_t *p, size_t len, msgrec *m)
{
	const uint8_t *end = p + len;
	if (len < 1 || *p++ != 0x98 || !sk_dot(&p, end, &m->id) ||
	    !sk_uint(&p, end, &m->ord) || !sk_uint(&p, end, &m->sent_at) ||
	    !sk_bin(&p, end, &m->user, &m->user_len) ||
	    !sk_bin(&p, end, &m->body, &m->body_len) || p >= end)
		return CRDT_EMALFORMED;
	m->has_reply = *p != 0xc0;
	if (!m->has_reply) {
		p++;
	} else if (*p++ != 0x92 || !sk_dot(&p, end, &m->reply)) {
		return CRDT_EMALFORMED;
	}
	if (p < end && *p == 0xc0) {
		m->meta = NULL;
		m->meta_len = 0;
		p++;
	} else if (!sk_bin(&p, end, &m->meta, &m->meta_len)) {
		return CRDT_EMALFORMED;
	}
#ifndef NDEBUG
	msgrec chk;
	assert(crdt__chat_parse_msgrec(end - len, len, &chk) == 0 &&
	    crdt__chat_msgrec_same(&chk, m));
#endif
	return p == end ? 0 : CRDT_EMALFORMED;
}

/* Parse every record once, and the tables: every replica ID a record, a
 * reply or a G-Set dot names, and every author. */
static int
enc_tables(enc *e, const crdt_gset *msgs, const crdt__key **v)
{
	for (size_t i = 0; i < e->n; i++) {
		msgrec *m = &e->m[i];
		CRDT_TRY(skim_rec(v[i]->ptr, v[i]->len, m));
		/* The set keeps only dots other than the record's ID (its
		 * identity, which skim_rec has just read). */
		e->dot[i] = crdt__gset_key_own(msgs, v[i]) ? m->id :
		    crdt__gset_key_dot(msgs, v[i]);
		CRDT_TRY(add_id(e, &m->id.replica));
		if (m->has_reply)
			CRDT_TRY(add_id(e, &m->reply.replica));
		if (!same_dot(e->dot[i], m->id))
			CRDT_TRY(add_id(e, &e->dot[i].replica));
		CRDT_TRY(add_user(e, m->user, m->user_len));
	}
	e->nids = uniq(e->ids, e->nids, sizeof *e->ids, id_cmp);
	e->nus = uniq(e->us, e->nus, sizeof *e->us, ustr_cmp);
	return 0;
}

/* A varint into room the caller reserved. */
static inline void
vu_raw(crdt_buf *b, uint64_t v)
{
	while (v >= 0x80) {
		b->data[b->len++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b->data[b->len++] = (uint8_t)v;
}

static int
enc_rows(enc *e)
{
	size_t last = SIZE_MAX, ulast = SIZE_MAX;
	uint64_t prev_ctr = 0, prev_ms = 0;
	for (size_t i = 0; i < e->n; i++) {
		const msgrec *m = &e->m[i];
		crdt_dot dot = e->dot[i];
		/* Room first: every column's share of this record. */
		for (int k = 0; k < C_EXTRA; k++)
			CRDT_TRY(room(&e->c[k], 10));
		CRDT_TRY(room(&e->c[C_EXTRA], 70 + m->meta_len));
		CRDT_TRY(room(&e->c[C_BODY], m->body_len));
		size_t ri = last != SIZE_MAX &&
			same_id(&e->ids[last], &m->id.replica) ?
		    last :
		    id_index(e->ids, e->nids, &m->id.replica);
		/* Ascending by (replica, counter): a delta within a run. */
		vu_raw(&e->c[C_CTR], ri == last ? m->id.counter - prev_ctr :
						  m->id.counter);
		e->runs[ri]++;
		last = ri;
		prev_ctr = m->id.counter;
		uint64_t ms = m->sent_at >> 16, lg = m->sent_at & 0xffff;
		uint8_t f = (uint8_t)((lg != 0 ? FL_LOGICAL : 0) |
		    (m->ord != m->sent_at ? FL_ORD : 0) |
		    (m->has_reply ? FL_REPLY : 0) |
		    (m->meta != NULL ? FL_META : 0) |
		    (!same_dot(dot, m->id) ? FL_DOT : 0));
		e->c[C_FLAGS].data[e->c[C_FLAGS].len++] = f;
		vu_raw(&e->c[C_STAMP], zig((int64_t)ms - (int64_t)prev_ms));
		prev_ms = ms;
		if (ulast == SIZE_MAX || !same_user(&e->us[ulast], m->user,
		    m->user_len))
			ulast = user_index(e->us, e->nus, m->user,
			    m->user_len);
		vu_raw(&e->c[C_USER], ulast);
		vu_raw(&e->c[C_BLEN], m->body_len);
		crdt_buf *b = &e->c[C_BODY];
		if (m->body_len > 0)
			memcpy(b->data + b->len, m->body, m->body_len);
		b->len += m->body_len;
		crdt_buf *x = &e->c[C_EXTRA];
		if (f & FL_LOGICAL)
			vu_raw(x, lg);
		if (f & FL_ORD)
			vu_raw(x, m->ord - m->sent_at);
		if (f & FL_REPLY) {
			vu_raw(x, id_index(e->ids, e->nids, &m->reply.replica));
			vu_raw(x, m->reply.counter);
		}
		if (f & FL_META) {
			vu_raw(x, m->meta_len);
			if (m->meta_len > 0)
				memcpy(x->data + x->len, m->meta, m->meta_len);
			x->len += m->meta_len;
		}
		if (f & FL_DOT) {
			vu_raw(x, id_index(e->ids, e->nids, &dot.replica));
			vu_raw(x, dot.counter);
		}
	}
	return 0;
}

static int
enc_all(enc *e, const crdt_gset *msgs, crdt_buf *out)
{
	const crdt__key **v;

	CRDT_TRY(crdt__gset_sorted(msgs, &v));
	if (e->n > 0) {
		if (e->n > SIZE_MAX / sizeof *e->m)
			return CRDT_ENOMEM;
		e->m = crdt__malloc(e->a, e->n * sizeof *e->m);
		e->dot = crdt__malloc(e->a, e->n * sizeof *e->dot);
		if (e->m == NULL || e->dot == NULL)
			return CRDT_ENOMEM;
	}
	CRDT_TRY(enc_tables(e, msgs, v));
	if (e->nids > 0) {
		e->runs = crdt__malloc(e->a, e->nids * sizeof *e->runs);
		if (e->runs == NULL)
			return CRDT_ENOMEM;
		memset(e->runs, 0, e->nids * sizeof *e->runs);
	}
	CRDT_TRY(enc_rows(e));
	for (size_t i = 0; i < e->nids; i++)
		CRDT_TRY(put_vu(&e->c[C_RUNS], e->runs[i]));
	CRDT_TRY(put_vu(&e->head, e->n));
	CRDT_TRY(put_vu(&e->head, e->nids));
	for (size_t i = 0; i < e->nids; i++)
		CRDT_TRY(crdt_buf_append(&e->head, e->ids[i].bytes,
		    CRDT_REPLICA_ID_BYTES));
	CRDT_TRY(put_vu(&e->head, e->nus));
	for (size_t i = 0; i < e->nus; i++) {
		CRDT_TRY(put_vu(&e->head, e->us[i].n));
		CRDT_TRY(crdt_buf_append(&e->head, e->us[i].p, e->us[i].n));
	}
	size_t total = e->head.len;
	for (int k = 0; k < NCOLS; k++)
		total += vu_size(e->c[k].len) + e->c[k].len;
	CRDT_TRY(crdt__w_bin_header(out, total));
	CRDT_TRY(crdt_buf_append(out, e->head.data, e->head.len));
	for (int k = 0; k < NCOLS; k++) {
		CRDT_TRY(put_vu(out, e->c[k].len));
		CRDT_TRY(crdt_buf_append(out, e->c[k].data, e->c[k].len));
	}
	return 0;
}

int
crdt__chat_cols_encode(const crdt_chat *c, crdt_buf *out)
{
	enc e;
	memset(&e, 0, sizeof e);
	e.a = &c->cfg.alloc;
	e.n = crdt_gset_size(c->msgs);
	crdt_buf_init(&e.head, e.a);
	for (int k = 0; k < NCOLS; k++)
		crdt_buf_init(&e.c[k], e.a);
	size_t mark = out->len;
	int rc = enc_all(&e, c->msgs, out);
	if (rc < 0)
		out->len = mark;
	crdt_buf_fini(&e.head);
	for (int k = 0; k < NCOLS; k++)
		crdt_buf_fini(&e.c[k]);
	crdt__free(e.a, e.m, e.m ? e.n * sizeof *e.m : 0);
	crdt__free(e.a, e.dot, e.dot ? e.n * sizeof *e.dot : 0);
	crdt__free(e.a, e.runs, e.nids * sizeof *e.runs);
	crdt__free(e.a, e.ids, e.capids * sizeof *e.ids);
	crdt__free(e.a, e.us, e.capus * sizeof *e.us);
	return rc;
}

/* ---- decoder ---- */

typedef struct dec {
	const crdt_allocator *a;
	const crdt_limits *lim;
	size_t n;
	const uint8_t *ids; /* R x 16 bytes, in the input */
	size_t nids;
	ustr *us;
	size_t nus;
	uint64_t *runs;
	uint8_t *used; /* replicas, then users */
	bulk_rec *v;
	col c[NCOLS];
} dec;

static int
dec_tables(dec *d, col *in)
{
	uint64_t v;

	CRDT_TRY(get_vu(in, &v));
	/* The G-Set state this replaces counted three elements a record. */
	if (v > d->lim->max_elems / 3)
		return CRDT_ETOOBIG;
	if (v > col_left(in) / MIN_REC)
		return CRDT_EMALFORMED;
	d->n = (size_t)v;
	CRDT_TRY(get_vu(in, &v));
	if (v > col_left(in) / CRDT_REPLICA_ID_BYTES)
		return CRDT_EMALFORMED;
	d->nids = (size_t)v;
	if (d->nids > UINT32_MAX)
		return CRDT_ETOOBIG;
	d->ids = in->p;
	static const uint8_t zero[CRDT_REPLICA_ID_BYTES];
	for (size_t i = 0; i < d->nids; i++) {
		const uint8_t *id = in->p + i * CRDT_REPLICA_ID_BYTES;
		if (memcmp(id, zero, sizeof zero) == 0 ||
		    (i > 0 && memcmp(id - CRDT_REPLICA_ID_BYTES, id,
			CRDT_REPLICA_ID_BYTES) >= 0))
			return CRDT_EMALFORMED;
	}
	in->p += d->nids * CRDT_REPLICA_ID_BYTES;
	CRDT_TRY(get_vu(in, &v));
	/* A user takes at least two bytes (length, one byte). */
	if (v > col_left(in) / 2)
		return CRDT_EMALFORMED;
	d->nus = (size_t)v;
	if (d->nus > UINT32_MAX)
		return CRDT_ETOOBIG;
	if (d->nus > 0) {
		d->us = crdt__malloc(d->a, d->nus * sizeof *d->us);
		if (d->us == NULL)
			return CRDT_ENOMEM;
	}
	for (size_t i = 0; i < d->nus; i++) {
		CRDT_TRY(get_vu(in, &v));
		if (!crdt__chat_user_len_ok(v) || v > col_left(in))
			return CRDT_EMALFORMED;
		d->us[i] = (ustr){ in->p, (size_t)v };
		in->p += v;
		if (i > 0 && ustr_cmp(&d->us[i - 1], &d->us[i]) >= 0)
			return CRDT_EMALFORMED;
	}
	for (int k = 0; k < NCOLS; k++) {
		CRDT_TRY(get_vu(in, &v));
		if (v > col_left(in))
			return CRDT_EMALFORMED;
		d->c[k] = (col){ in->p, in->p + v };
		in->p += v;
	}
	if (in->p != in->end)
		return CRDT_EMALFORMED;
	if (d->nids + d->nus > 0) {
		d->used = crdt__malloc(d->a, d->nids + d->nus);
		if (d->used == NULL)
			return CRDT_ENOMEM;
		memset(d->used, 0, d->nids + d->nus);
	}
	if (d->nids > 0) {
		d->runs = crdt__malloc(d->a, d->nids * sizeof *d->runs);
		if (d->runs == NULL)
			return CRDT_ENOMEM;
	}
	if (d->n > 0) {
		d->v = crdt__malloc(d->a, d->n * sizeof *d->v);
		if (d->v == NULL)
			return CRDT_ENOMEM;
	}
	uint64_t sum = 0;
	for (size_t i = 0; i < d->nids; i++) {
		CRDT_TRY(get_vu(&d->c[C_RUNS], &d->runs[i]));
		if (d->runs[i] > d->n - sum)
			return CRDT_EMALFORMED;
		sum += d->runs[i];
	}
	return sum == d->n && col_left(&d->c[C_RUNS]) == 0 ? 0 :
							     CRDT_EMALFORMED;
}

/* A replica index from the extra column, and a counter >= 1 after it. */
static int
get_dot(dec *d, col *x, crdt_dot *out)
{
	uint64_t ri, c;
	CRDT_TRY(get_vu(x, &ri));
	if (ri >= d->nids)
		return CRDT_EMALFORMED;
	d->used[ri] = 1;
	CRDT_TRY(get_vu(x, &c));
	if (c == 0)
		return CRDT_EMALFORMED;
	memcpy(out->replica.bytes, d->ids + ri * CRDT_REPLICA_ID_BYTES,
	    CRDT_REPLICA_ID_BYTES);
	out->counter = c;
	return 0;
}

/* The record's bytes, exactly as the post op writes them (chat.c, with
 * wire.c's writers: smallest forms), straight into a block of their exact
 * size: one allocation and one write a record, no scratch copy. Debug
 * builds parse every record built (dec_rows). */
static size_t
u_size(uint64_t v)
{
	return v < 0x80 ? 1 : v <= UINT8_MAX ? 2 : v <= UINT16_MAX ? 3 :
	    v <= UINT32_MAX ? 5 : 9;
}

static size_t
b_size(size_t n)
{
	return n <= UINT8_MAX ? 2 : n <= UINT16_MAX ? 3 : 5;
}

static uint8_t *
put_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return p + n;
}

static uint8_t *
put_u(uint8_t *p, uint64_t v)
{
	if (v < 0x80) {
		*p = (uint8_t)v;
		return p + 1;
	}
	if (v <= UINT8_MAX) {
		*p = 0xcc;
		return put_be(p + 1, v, 1);
	}
	if (v <= UINT16_MAX) {
		*p = 0xcd;
		return put_be(p + 1, v, 2);
	}
	if (v <= UINT32_MAX) {
		*p = 0xce;
		return put_be(p + 1, v, 4);
	}
	*p = 0xcf;
	return put_be(p + 1, v, 8);
}

static uint8_t *
put_b(uint8_t *p, const uint8_t *b, size_t n)
{
	if (n <= UINT8_MAX) {
		*p = 0xc4;
		p = put_be(p + 1, n, 1);
	} else if (n <= UINT16_MAX) {
		*p = 0xc5;
		p = put_be(p + 1, n, 2);
	} else {
		*p = 0xc6;
		p = put_be(p + 1, n, 4);
	}
	if (n > 0)
		memcpy(p, b, n);
	return p + n;
}

static uint8_t *
put_dot(uint8_t *p, crdt_dot d)
{
	p[0] = 0xc4;
	p[1] = CRDT_REPLICA_ID_BYTES;
	memcpy(p + 2, d.replica.bytes, CRDT_REPLICA_ID_BYTES);
	return put_u(p + 2 + CRDT_REPLICA_ID_BYTES, d.counter);
}

/* Size of the record `m` encodes to; 0 if over `max` (or 4 GiB). */
static size_t
rec_size(const msgrec *m, size_t max)
{
	const size_t dot = 2 + CRDT_REPLICA_ID_BYTES;
	/* user <= 255 bytes; body and meta are bounded by the input */
	size_t n = 1 + dot + u_size(m->id.counter) + u_size(m->ord) +
	    u_size(m->sent_at) + b_size(m->user_len) + m->user_len;
	if (m->body_len > UINT32_MAX || m->meta_len > UINT32_MAX)
		return 0;
	n += b_size(m->body_len) + m->body_len;
	n += m->has_reply ? 1 + dot + u_size(m->reply.counter) : 1;
	n += m->meta != NULL ? b_size(m->meta_len) + m->meta_len : 1;
	return n > max || n > UINT32_MAX ? 0 : n;
}

static void
put_rec(uint8_t *p, const msgrec *m)
{
	*p++ = 0x98;
	p = put_dot(p, m->id);
	p = put_u(p, m->ord);
	p = put_u(p, m->sent_at);
	p = put_b(p, m->user, m->user_len);
	p = put_b(p, m->body, m->body_len);
	if (m->has_reply) {
		*p++ = 0x92;
		p = put_dot(p, m->reply);
	} else {
		*p++ = 0xc0;
	}
	if (m->meta != NULL)
		(void)put_b(p, m->meta, m->meta_len);
	else
		*p = 0xc0;
}

static int
dec_rows(dec *d, crdt_gset *s)
{
	size_t ri = SIZE_MAX;
	uint64_t left = 0, prev_ms = 0;
	const uint8_t *prev = NULL;
	size_t prev_len = 0;
	crdt_dot prev_id = { { { 0 } }, 0 };

	CRDT_TRY(crdt__gset_bulk_reserve(s, d->n));
	for (size_t i = 0; i < d->n; i++) {
		msgrec m;
		uint64_t v;
		bool first = false;
		memset(&m, 0, sizeof m);
		while (left == 0) { /* sum(runs) == n: ends before nids */
			ri++;
			left = d->runs[ri];
			first = true;
		}
		left--;
		d->used[ri] = 1;
		memcpy(m.id.replica.bytes, d->ids + ri * CRDT_REPLICA_ID_BYTES,
		    CRDT_REPLICA_ID_BYTES);
		CRDT_TRY(get_vu(&d->c[C_CTR], &v));
		if (first) {
			if (v == 0)
				return CRDT_EMALFORMED;
			m.id.counter = v;
		} else {
			if (v > UINT64_MAX - prev_id.counter)
				return CRDT_EMALFORMED;
			m.id.counter = prev_id.counter + v;
		}
		col *fc = &d->c[C_FLAGS];
		if (fc->p == fc->end || *fc->p > FL_ALL)
			return CRDT_EMALFORMED;
		uint8_t f = *fc->p++;
		CRDT_TRY(get_vu(&d->c[C_STAMP], &v));
		int64_t dm = unzig(v);
		/* prev_ms + dm within [0, 2^48), without overflow */
		if (dm < -(int64_t)prev_ms ||
		    dm >= (int64_t)(MS_LIMIT - prev_ms))
			return CRDT_EMALFORMED;
		uint64_t ms = (uint64_t)((int64_t)prev_ms + dm);
		prev_ms = ms;
		col *x = &d->c[C_EXTRA];
		uint64_t lg = 0;
		if (f & FL_LOGICAL) {
			CRDT_TRY(get_vu(x, &lg));
			if (lg == 0 || lg > 0xffff)
				return CRDT_EMALFORMED;
		}
		m.sent_at = ms << 16 | lg;
		m.ord = m.sent_at;
		if (f & FL_ORD) {
			/* order > sent_at only up to ORD_CAP (chat_impl.h) */
			CRDT_TRY(get_vu(x, &v));
			if (v == 0 || m.sent_at >= ORD_CAP ||
			    v > ORD_CAP - m.sent_at)
				return CRDT_EMALFORMED;
			m.ord = m.sent_at + v;
		}
		uint64_t ux;
		CRDT_TRY(get_vu(&d->c[C_USER], &ux));
		if (ux >= d->nus)
			return CRDT_EMALFORMED;
		d->used[d->nids + ux] = 1;
		m.user = d->us[ux].p;
		m.user_len = d->us[ux].n;
		CRDT_TRY(get_vu(&d->c[C_BLEN], &v));
		col *bc = &d->c[C_BODY];
		if (v > col_left(bc))
			return CRDT_EMALFORMED;
		m.body = bc->p;
		m.body_len = (size_t)v;
		bc->p += v;
		if (f & FL_REPLY) {
			CRDT_TRY(get_dot(d, x, &m.reply));
			m.has_reply = true;
		}
		if (f & FL_META) {
			CRDT_TRY(get_vu(x, &v));
			if (v > col_left(x))
				return CRDT_EMALFORMED;
			m.meta = x->p;
			m.meta_len = (size_t)v;
			x->p += v;
		}
		crdt_dot dot = m.id;
		if (f & FL_DOT) {
			CRDT_TRY(get_dot(d, x, &dot));
			/* Only a dot the ID does not imply is written. */
			if (crdt_dot_cmp(dot, m.id) == 0)
				return CRDT_EMALFORMED;
		}
		size_t rl = rec_size(&m, d->lim->max_value_bytes);
		if (rl == 0)
			return CRDT_ETOOBIG;
		/* Built in place in the set's arena: on failure the set is
		 * freed whole (crdt__chat_cols_decode). */
		uint8_t *copy = crdt__gset_bulk_room(s, rl);
		if (copy == NULL)
			return CRDT_ENOMEM;
		put_rec(copy, &m);
#ifndef NDEBUG
		msgrec chk;
		assert(crdt__chat_parse_msgrec(copy, rl, &chk) == 0);
#endif
		/* The G-Set's order, strictly: no duplicate either. */
		if (i > 0 && crdt__key_cmp(prev, prev_len, copy, rl) >= 0)
			return CRDT_EMALFORMED;
		CRDT_TRY(crdt__gset_bulk_add(s, copy, rl, dot));
		prev = copy;
		prev_len = rl;
		prev_id = m.id;
		d->v[i] = (bulk_rec){ m.ord, m.id.counter, (uint32_t)ri,
			(uint32_t)ux };
	}
	for (int k = 0; k < NCOLS; k++)
		if (col_left(&d->c[k]) != 0)
			return CRDT_EMALFORMED;
	for (size_t i = 0; i < d->nids + d->nus; i++)
		if (!d->used[i])
			return CRDT_EMALFORMED;
	return 0;
}

void
crdt__chat_bulk_free(const crdt_allocator *a, chat_bulk *b)
{
	crdt__free(a, b->users, b->nusers * sizeof *b->users);
	crdt__free(a, b->v, b->n * sizeof *b->v);
	memset(b, 0, sizeof *b);
}

int
crdt__chat_cols_decode(const crdt_chat *c, const uint8_t *p, size_t n,
    crdt_gset **out, chat_bulk *bk)
{
	dec d;
	crdt_gset *s;

	memset(&d, 0, sizeof d);
	d.a = &c->cfg.alloc;
	d.lim = &c->cfg.limits;
	col in = { p, p + n };
	int rc = dec_tables(&d, &in);
	if (rc == 0)
		rc = crdt_gset_new(&c->cfg, &c->self, &s);
	/* Keyed by record ID from the start (as crdt__chat_new keys it), so
	 * each record is hashed once, by its 24-byte ID, and the bulk index
	 * reuses that hash. */
	if (rc == 0) {
		rc = crdt__gset_key_prefix(s, crdt__chat_rec_ident,
		    c->ix->prio_key);
		if (rc < 0)
			crdt_gset_free(s);
	}
	if (rc == 0) {
		rc = dec_rows(&d, s);
		if (rc < 0)
			crdt_gset_free(s);
		else
			*out = s;
	}
	crdt__free(d.a, d.runs, d.nids * sizeof *d.runs);
	crdt__free(d.a, d.used, d.nids + d.nus);
	if (rc < 0) {
		crdt__free(d.a, d.us, d.nus * sizeof *d.us);
		crdt__free(d.a, d.v, d.n * sizeof *d.v);
		return rc;
	}
	*bk = (chat_bulk){ d.ids, d.nids, d.us, d.nus, d.v, d.n };
	return 0;
}
