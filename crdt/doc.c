/*
 * Document runtime: schema, transactions, causal delivery, message log,
 * snapshots and the sync protocol.
 *
 * Replica IDs are interned into a dense table (uint32_t index); the vector
 * clock, the causal buffer and the log are arrays indexed by it, so the hot
 * path never compares 16-byte IDs.
 *
 * Causal buffer. A message that cannot be applied yet waits on exactly one
 * missing dot (replica r, counter c): it sits in a min-heap per replica r
 * keyed by c. When r's clock reaches c (by a message or a snapshot), the
 * heap releases it; it then either waits on its next missing dependency
 * (the scan of its deps resumes where it stopped) or is applied. Each
 * message is therefore pushed at most deps + 2 times, each push O(log n):
 * N messages in any order cost O(N log N), and nothing is ever rescanned.
 */
#include <stdlib.h>

#include "internal.h"
#include "envelope.h"
#include "crdt/doc.h"
#include "crdt/chat.h"
#include "crdt/secure.h"

#define KIND_MSG CRDT__KIND_MSG
#define KIND_SNAP 6
#define KIND_HELLO 7
#define KIND_DATA 8

typedef struct rep_entry {
	crdt__key k;
	uint32_t idx;
} rep_entry;

typedef struct wait {
	uint64_t c;
	uint32_t msg;
} wait;

typedef struct logent {
	uint8_t *bytes;
	size_t len;
} logent;

typedef struct fifo_ent {
	uint32_t r;
	uint64_t c;
} fifo_ent;

/* From counter c on, a replica's messages hold admin counter a in their
 * causal past (a step of a non-decreasing function). */
typedef struct admstep {
	uint64_t c, a;
} admstep;

/* Per-replica state, indexed by interned replica number. */
typedef struct rstate {
	crdt_replica_id id;
	uint64_t vc;   /* highest contiguous counter applied */
	uint64_t sent; /* vc when our last message was built (deps) */
	uint64_t admin_seen; /* admin counter in this replica's causal past */
	uint64_t stamp; /* greatest op stamp applied from this replica: saved,
			 * so a restarted replica never stamps below its own
			 * earlier writes whatever its device clock says */
	admstep *steps; /* admin_seen by counter, ascending (allowlist only) */
	size_t nsteps, capsteps;
	size_t ev_bytes; /* equivocation evidence this signer holds */
	size_t buf_bytes; /* causal buffer bytes this sender holds */
	bool dirty;
	wait *heap; /* buffered messages waiting on (this replica, c) */
	size_t nheap, capheap;
	uint64_t log_lo; /* counter of log[log_start] */
	logent *log;
	size_t log_start, log_n, log_cap;
	size_t log_bytes; /* bytes of log[log_start ..] */
	size_t lpos[2];   /* place in d->lheap[k] while log_n > 0 */
} rstate;

typedef struct dep {
	uint32_t r;
	uint64_t c;
} dep;

typedef struct bmsg {
	uint8_t *bytes;
	size_t len;
	uint32_t sender;
	uint64_t counter;
	dep *deps;
	size_t ndeps, next_dep;
	void *caller;
	uint32_t next_free;
	uint32_t next_var; /* another buffered variant of this dot */
	bool live;
} bmsg;

typedef struct obj {
	char name[CRDT_OBJ_NAME_MAX + 1];
	crdt_obj_type type;
	void *o;
	bool acl;           /* the hidden allowlist G-Set ("__acl") */
	uint64_t post_walk; /* chat: walk that last saw a post (one per msg) */
	uint64_t post_txn;  /* chat: transaction that staged a post */
} dobj;

/* A decoded message: views into the caller's bytes. */
typedef struct msgview {
	unsigned version;
	crdt_replica_id sender;
	uint64_t counter, hlc;
	size_t ndeps; /* deps in d->sdeps */
	const uint8_t *payload; /* plaintext ops; NULL when opaque (relay) */
	size_t plen, nops;
	/* security: sealed payload and signature slot */
	const uint8_t *bytes;
	size_t payload_off, auth_off;
	bool sealed, opened, has_auth;
	uint32_t epoch;
	const uint8_t *nonce, *ct, *pk, *sig;
	size_t ctlen;
	const uint8_t *end;
} msgview;

/* Equivocation evidence: every variant seen of one dot, ascending bytes. */
typedef struct evid {
	crdt_dot dot;
	logent *v;
	size_t n, cap;
	uint32_t r; /* signer's replica index its bytes count to, or none */
	size_t bytes;
} evid;

typedef struct acl_change {
	uint64_t c; /* admin counter of the grant / revoke */
	bool allowed;
} acl_change;

typedef struct acl_ent {
	crdt__key k;
	acl_change *h; /* ascending c */
	size_t n, cap;
	size_t pend; /* records being made room for (acl_prepare) */
} acl_ent;

typedef struct epoch_key {
	uint32_t epoch;
	uint8_t key[CRDT_DOC_KEY_BYTES];
} epoch_key;

typedef crdt__iddep iddep;

/* Open-addressed (replica, counter) -> buffered message, for dedup. */
typedef struct dotslot {
	uint64_t c;
	uint32_t r;
	uint32_t msg; /* UINT32_MAX = empty */
} dotslot;

struct crdt_doc {
	crdt_config cfg;
	crdt_replica_id self;
	uint32_t self_idx;
	crdt_hlc clock;
	uint64_t hlc_max; /* greatest op stamp applied */

	dobj *objs;
	size_t nobjs, capobjs;
	bool has_data;

	crdt__table reps;
	rstate *rs;
	size_t nrs, caprs;
	uint32_t *dirty;
	size_t ndirty, capdirty;

	bmsg *bm;
	size_t nbm, capbm;
	uint32_t free_bm;
	size_t nbuffered, buffered_bytes;
	dotslot *dots;
	size_t ndotslots, ndots;
	uint8_t dotkey[16];

	fifo_ent *fifo;
	size_t fifo_start, fifo_n, fifo_cap;
	size_t log_count, log_bytes;
	/* Replicas with a non-empty log, max-heaps by log_n (LH_MSGS) and
	 * by log_bytes (LH_BYTES): eviction takes from the largest. */
	uint32_t *lheap[2];
	size_t lheap_n[2], lheap_cap[2];

	bool in_txn;
	uint64_t txn_serial, walk_serial;
	crdt_buf scratch; /* chat records under construction */
	crdt_buf stage;
	size_t stage_ops;

	/* security (secure.h) */
	bool signed_mode, encrypted;
	bool sync_snaps; /* crdt_doc_security.sync_snapshots */
	const crdt_identity *ident;
	epoch_key *keys;
	size_t nkeys, capkeys;
	uint32_t cur_epoch;
	bool has_cur;
	crdt_buf plain; /* opened payload of the message being handled */
	evid *ev;       /* equivocated dots, ascending by dot */
	size_t nev, capev, ev_bytes;
	/* write permissions: allowlist history per writer, by admin counter */
	bool has_admin;
	crdt_replica_id admin;
	uint32_t admin_idx;
	uint32_t acl_obj;
	crdt__table acl; /* acl_ent keyed by replica ID */

	crdt__undo undo;
	iddep *sdeps;
	size_t capsdeps;
	crdt_doc_listener l;
};

/* ---------------------------------------------------------------- */
/* replica table                                                    */

static int
rep_find(const crdt_doc *d, const crdt_replica_id *id, uint32_t *idx)
{
	uint64_t h = crdt__table_hash(&d->reps, id->bytes, sizeof id->bytes);
	const rep_entry *e = crdt__table_find(&d->reps, id->bytes,
	    sizeof id->bytes, h);
	if (e == NULL)
		return CRDT_ENOTFOUND;
	*idx = e->idx;
	return 0;
}

static int
rep_intern(crdt_doc *d, const crdt_replica_id *id, uint32_t *idx)
{
	if (rep_find(d, id, idx) == 0)
		return 0;
	/* Every new sender or dependency costs a table entry: bounded, as
	 * peers choose IDs freely. */
	if (d->nrs >= d->cfg.max_replicas)
		return CRDT_ETOOBIG;
	const crdt_allocator *a = &d->cfg.alloc;
	void *v = d->rs;
	CRDT_TRY(crdt__grow(a, &v, &d->caprs, d->nrs + 1, sizeof *d->rs));
	d->rs = v;
	CRDT_TRY(crdt__table_reserve(&d->reps, 1));
	uint8_t *key = crdt__memdup(a, id->bytes, sizeof id->bytes);
	if (key == NULL)
		return CRDT_ENOMEM;
	uint64_t h = crdt__table_hash(&d->reps, id->bytes, sizeof id->bytes);
	rep_entry *e = crdt__table_insert(&d->reps, key, sizeof id->bytes, h);
	e->idx = (uint32_t)d->nrs;
	rstate *r = &d->rs[d->nrs];
	memset(r, 0, sizeof *r);
	r->id = *id;
	r->log_lo = 1;
	*idx = (uint32_t)d->nrs++;
	return 0;
}

/* Forget replicas interned after the first `n` (LIFO): a refused message
 * must not leave its sender or dependencies in the table, or junk IDs
 * would fill `max_replicas` for good. */
static void
unintern_to(crdt_doc *d, size_t n)
{
	while (d->nrs > n) {
		rstate *r = &d->rs[d->nrs - 1];
		crdt__key *k = crdt__table_pop(&d->reps);
		crdt__free(&d->cfg.alloc, k->ptr, k->len);
		crdt__free(&d->cfg.alloc, r->heap, r->capheap * sizeof *r->heap);
		crdt__free(&d->cfg.alloc, r->log, r->log_cap * sizeof *r->log);
		crdt__free(&d->cfg.alloc, r->steps,
		    r->capsteps * sizeof *r->steps);
		d->nrs--;
	}
}

static int
mark_dirty(crdt_doc *d, uint32_t r)
{
	if (r == d->self_idx || d->rs[r].dirty)
		return 0;
	void *v = d->dirty;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &d->capdirty, d->ndirty + 1,
	    sizeof *d->dirty));
	d->dirty = v;
	d->dirty[d->ndirty++] = r;
	d->rs[r].dirty = true;
	return 0;
}

/* ---------------------------------------------------------------- */
/* lifecycle and schema                                             */

static void
obj_free(dobj *o)
{
	switch (o->type) {
	case CRDT_OBJ_GSET:
		crdt_gset_free(o->o);
		break;
	case CRDT_OBJ_LWW:
		crdt_lww_free(o->o);
		break;
	case CRDT_OBJ_MAP:
		crdt_lww_map_free(o->o);
		break;
	case CRDT_OBJ_CHAT:
		crdt__chat_free(o->o);
		break;
	}
	o->o = NULL;
}

int
crdt_doc_new(const crdt_config *cfg, const crdt_replica_id *self,
    crdt_doc **out)
{
	crdt_config c;

	if (self == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__config_resolve(cfg, &c));
	crdt_doc *d = crdt__malloc(&c.alloc, sizeof *d);
	if (d == NULL)
		return CRDT_ENOMEM;
	memset(d, 0, sizeof *d);
	d->cfg = c;
	d->self = *self;
	d->free_bm = UINT32_MAX;
	d->undo.a = &d->cfg.alloc;
	crdt_hlc_init(&d->clock, &d->cfg);
	crdt_buf_init(&d->stage, &d->cfg.alloc);
	crdt_buf_init(&d->scratch, &d->cfg.alloc);
	crdt_buf_init(&d->plain, &d->cfg.alloc);
	int rc = crdt__table_init(&d->reps, &d->cfg.alloc, sizeof(rep_entry));
	if (rc == 0)
		rc = crdt__random(d->dotkey, sizeof d->dotkey);
	if (rc == 0)
		rc = rep_intern(d, self, &d->self_idx);
	if (rc < 0) {
		crdt_doc_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

static void
bmsg_release(crdt_doc *d, uint32_t m)
{
	const crdt_allocator *a = &d->cfg.alloc;
	bmsg *b = &d->bm[m];
	d->nbuffered--;
	d->buffered_bytes -= b->len;
	d->rs[b->sender].buf_bytes -= b->len;
	crdt__free(a, b->bytes, b->len);
	crdt__free(a, b->deps, b->ndeps * sizeof *b->deps);
	b->bytes = NULL;
	b->deps = NULL;
	b->live = false;
	b->next_free = d->free_bm;
	d->free_bm = m;
}

static void acl_ent_fini(void *e, const crdt_allocator *a);

void
crdt_doc_free(crdt_doc *d)
{
	if (d == NULL)
		return;
	crdt_allocator a = d->cfg.alloc;
	crdt__undo_fini(&d->undo);
	for (size_t i = 0; i < d->nobjs; i++)
		obj_free(&d->objs[i]);
	crdt__free(&a, d->objs, d->capobjs * sizeof *d->objs);
	for (size_t i = 0; i < d->nbm; i++)
		if (d->bm[i].live)
			bmsg_release(d, (uint32_t)i);
	crdt__free(&a, d->bm, d->capbm * sizeof *d->bm);
	crdt__free(&a, d->dots, d->ndotslots * sizeof *d->dots);
	for (size_t i = 0; i < d->nrs; i++) {
		rstate *r = &d->rs[i];
		crdt__free(&a, r->heap, r->capheap * sizeof *r->heap);
		for (size_t j = 0; j < r->log_n; j++) {
			logent *e = &r->log[r->log_start + j];
			crdt__free(&a, e->bytes, e->len);
		}
		crdt__free(&a, r->log, r->log_cap * sizeof *r->log);
		crdt__free(&a, r->steps, r->capsteps * sizeof *r->steps);
	}
	crdt__free(&a, d->rs, d->caprs * sizeof *d->rs);
	crdt__free(&a, d->dirty, d->capdirty * sizeof *d->dirty);
	crdt__free(&a, d->fifo, d->fifo_cap * sizeof *d->fifo);
	for (int k = 0; k < 2; k++)
		crdt__free(&a, d->lheap[k], d->lheap_cap[k] * sizeof *d->lheap[k]);
	crdt__free(&a, d->sdeps, d->capsdeps * sizeof *d->sdeps);
	crdt_buf_fini(&d->stage);
	crdt_buf_fini(&d->scratch);
	crdt_buf_fini(&d->plain);
	crdt__table_fini(&d->acl, acl_ent_fini);
	for (size_t i = 0; i < d->nev; i++) {
		for (size_t j = 0; j < d->ev[i].n; j++)
			crdt__free(&a, d->ev[i].v[j].bytes, d->ev[i].v[j].len);
		crdt__free(&a, d->ev[i].v, d->ev[i].cap * sizeof *d->ev[i].v);
	}
	crdt__free(&a, d->ev, d->capev * sizeof *d->ev);
	if (d->keys != NULL) {
		crdt__memzero(d->keys, d->capkeys * sizeof *d->keys);
		crdt__free(&a, d->keys, d->capkeys * sizeof *d->keys);
	}
	crdt__table_fini(&d->reps, NULL);
	crdt__free(&a, d, sizeof *d);
}

const crdt_replica_id *
crdt_doc_self(const crdt_doc *d)
{
	return d ? &d->self : NULL;
}

static int
new_object(const crdt_doc *d, crdt_obj_type type,
    const crdt_replica_id *server, void **o)
{
	switch (type) {
	case CRDT_OBJ_CHAT:
		return crdt__chat_new(&d->cfg, &d->self, server,
		    (crdt_chat **)o);
	case CRDT_OBJ_GSET:
		return crdt_gset_new(&d->cfg, &d->self, (crdt_gset **)o);
	case CRDT_OBJ_LWW:
		return crdt_lww_new(&d->cfg, &d->self, (crdt_lww **)o);
	case CRDT_OBJ_MAP:
		return crdt_lww_map_new(&d->cfg, &d->self, (crdt_lww_map **)o);
	}
	return CRDT_EINVAL;
}

int
crdt_doc_lookup(const crdt_doc *d, const char *name, uint32_t *objn)
{
	if (d == NULL || name == NULL)
		return CRDT_EINVAL;
	for (size_t i = 0; i < d->nobjs; i++) {
		if (strcmp(d->objs[i].name, name) == 0) {
			if (objn != NULL)
				*objn = (uint32_t)i;
			return 0;
		}
	}
	return CRDT_ENOTFOUND;
}

static int get_obj(const crdt_doc *d, uint32_t n, crdt_obj_type type,
    const void *out);

static int
register_obj(crdt_doc *d, const char *name, crdt_obj_type type,
    const crdt_replica_id *server, uint32_t *objn)
{
	if (d == NULL || name == NULL)
		return CRDT_EINVAL;
	size_t nlen = strlen(name);
	if (nlen == 0 || nlen > CRDT_OBJ_NAME_MAX)
		return CRDT_EINVAL;
	if (d->has_data || d->in_txn)
		return CRDT_ESTATE;
	if (crdt_doc_lookup(d, name, NULL) == 0)
		return CRDT_EINVAL;
	void *v = d->objs;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &d->capobjs, d->nobjs + 1,
	    sizeof *d->objs));
	d->objs = v;
	dobj *o = &d->objs[d->nobjs];
	memset(o, 0, sizeof *o);
	CRDT_TRY(new_object(d, type, server, &o->o));
	memcpy(o->name, name, nlen + 1);
	o->type = type;
	if (objn != NULL)
		*objn = (uint32_t)d->nobjs;
	d->nobjs++;
	return 0;
}

int
crdt_doc_register(crdt_doc *d, const char *name, crdt_obj_type type,
    uint32_t *objn)
{
	if (type != CRDT_OBJ_GSET && type != CRDT_OBJ_LWW &&
	    type != CRDT_OBJ_MAP)
		return CRDT_EINVAL;
	return register_obj(d, name, type, NULL, objn);
}

int
crdt_doc_register_chat(crdt_doc *d, const char *name,
    const crdt_replica_id *server, uint32_t *objn)
{
	return register_obj(d, name, CRDT_OBJ_CHAT, server, objn);
}

int
crdt_doc_chat(const crdt_doc *d, uint32_t n, const crdt_chat **out)
{
	CRDT_TRY(get_obj(d, n, CRDT_OBJ_CHAT, out));
	*out = d->objs[n].o;
	return 0;
}

static int
get_obj(const crdt_doc *d, uint32_t n, crdt_obj_type type, const void *out)
{
	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	if (n >= d->nobjs || d->objs[n].type != type)
		return CRDT_ESCHEMA;
	return 0;
}

int
crdt_doc_gset(const crdt_doc *d, uint32_t n, const crdt_gset **out)
{
	CRDT_TRY(get_obj(d, n, CRDT_OBJ_GSET, out));
	*out = d->objs[n].o;
	return 0;
}

int
crdt_doc_lww(const crdt_doc *d, uint32_t n, const crdt_lww **out)
{
	CRDT_TRY(get_obj(d, n, CRDT_OBJ_LWW, out));
	*out = d->objs[n].o;
	return 0;
}

int
crdt_doc_map(const crdt_doc *d, uint32_t n, const crdt_lww_map **out)
{
	CRDT_TRY(get_obj(d, n, CRDT_OBJ_MAP, out));
	*out = d->objs[n].o;
	return 0;
}

void
crdt_doc_set_listener(crdt_doc *d, const crdt_doc_listener *l)
{
	if (d == NULL)
		return;
	if (l != NULL)
		d->l = *l;
	else
		memset(&d->l, 0, sizeof d->l);
}

/* ---------------------------------------------------------------- */
/* message decoding                                                 */

static size_t
op_arity(crdt_obj_type t)
{
	return t == CRDT_OBJ_MAP ? 3 : 2;
}

/* What apply_ops needs to stamp writes; NULL = validate only. */
typedef struct stamp {
	crdt_dot dot;
	uint64_t hlc;
} stamp;

/*
 * Walk a payload: [op, op, ...], op = [obj, elem] (G-Set),
 * [obj, value|nil] (LWW), [obj, key, value|nil] (map). With `st`, apply
 * each op through the undo log; op i is stamped hlc + i so a later write in
 * the same transaction wins over an earlier one.
 */
static int
walk_ops(crdt_doc *d, const uint8_t *p, size_t len, size_t *nops,
    const stamp *st, const crdt_replica_id *sender)
{
	crdt__rd r;
	size_t n;

	CRDT_TRY(crdt__rd_init(&r, &d->cfg.limits, p, len));
	CRDT_TRY(crdt__rd_array(&r, &n));
	uint64_t walk = ++d->walk_serial;
	for (size_t i = 0; i < n; i++) {
		size_t k;
		uint64_t on;
		const uint8_t *a, *b = NULL;
		size_t alen, blen = 0;
		bool present = true;

		CRDT_TRY(crdt__rd_array(&r, &k));
		CRDT_TRY(crdt__rd_uint(&r, &on));
		if (on >= d->nobjs)
			return CRDT_ESCHEMA;
		dobj *o = &d->objs[on];
		if (o->type == CRDT_OBJ_CHAT) {
			uint64_t kind;
			if (k < 2)
				return CRDT_EMALFORMED;
			CRDT_TRY(crdt__rd_uint(&r, &kind));
			if (kind == 0) { /* one post per thread per message */
				if (o->post_walk == walk)
					return CRDT_EMALFORMED;
				o->post_walk = walk;
			}
			crdt_dot dot = { { { 0 } }, 0 };
			uint64_t ts = 0;
			if (st != NULL) {
				dot = st->dot;
				ts = st->hlc + i;
			} else if (sender != NULL) {
				dot.replica = *sender;
			}
			CRDT_TRY(crdt__chat_op(o->o, &r, k, kind, dot, ts,
			    st ? &d->undo : NULL, (uint32_t)on, &d->scratch,
			    walk));
			r.depth--;
			continue;
		}
		if (o->acl) {
			/* [obj, writer id, allowed]: the admin's alone. The
			 * record kept is [writer, admin counter, allowed]. */
			crdt_replica_id wid;
			uint64_t allowed;
			if (k != 3)
				return CRDT_EMALFORMED;
			CRDT_TRY(crdt__rd_id(&r, &wid));
			CRDT_TRY(crdt__rd_uint(&r, &allowed));
			r.depth--;
			const crdt_replica_id *who = st ? &st->dot.replica :
							  sender;
			if (allowed > 1 || who == NULL)
				return CRDT_EMALFORMED;
			if (crdt_replica_id_cmp(who, &d->admin) != 0)
				return CRDT_EPERM;
			if (st == NULL)
				continue;
			crdt_buf *sc = &d->scratch;
			crdt_buf_clear(sc);
			CRDT_TRY(crdt__w_array(sc, 3));
			CRDT_TRY(crdt__w_id(sc, &wid));
			CRDT_TRY(crdt__w_uint(sc, st->dot.counter));
			CRDT_TRY(crdt__w_uint(sc, allowed));
			CRDT_TRY(crdt__gset_write(o->o, sc->data, sc->len,
			    st->dot, &d->undo, (uint32_t)on));
			continue;
		}
		if (k != op_arity(o->type))
			return CRDT_EMALFORMED;
		if (o->type == CRDT_OBJ_GSET) {
			CRDT_TRY(crdt__rd_bin(&r, &a, &alen));
		} else if (o->type == CRDT_OBJ_LWW) {
			CRDT_TRY(crdt__rd_opt_bin(&r, &a, &alen, &present));
		} else {
			CRDT_TRY(crdt__rd_bin(&r, &a, &alen));
			CRDT_TRY(crdt__rd_opt_bin(&r, &b, &blen, &present));
		}
		r.depth--;
		if (st == NULL)
			continue;
		uint64_t ts = st->hlc + i;
		const crdt_replica_id *w = &st->dot.replica;
		uint32_t oi = (uint32_t)on;
		if (o->type == CRDT_OBJ_GSET)
			CRDT_TRY(crdt__gset_write(o->o, a, alen, st->dot,
			    &d->undo, oi));
		else if (o->type == CRDT_OBJ_LWW)
			CRDT_TRY(crdt__lww_write(o->o, ts, w, present, a, alen,
			    &d->undo, oi));
		else
			CRDT_TRY(crdt__map_write(o->o, a, alen, ts, w, present,
			    b, blen, &d->undo, oi));
	}
	CRDT_TRY(crdt__rd_done(&r));
	*nops = n;
	return 0;
}

/* crdt__env_parse()'s sink: the document's dependency scratch array. */
static crdt__iddep *
sdeps_room(void *ud, size_t n)
{
	crdt_doc *d = ud;
	void *v = d->sdeps;
	if (crdt__grow(&d->cfg.alloc, &v, &d->capsdeps, n,
		sizeof *d->sdeps) != 0)
		return NULL;
	d->sdeps = v;
	return d->sdeps;
}

/*
 * Message: [1, 5, sender, counter, hlc, deps, payload, auth]. `payload` is
 * a bin holding the ops so that encrypted mode can seal it without changing
 * the header a relay reads; `auth` (nil) is where a signature will go.
 */
static int
validate_ops(crdt_doc *d, msgview *mv)
{
	CRDT_TRY(walk_ops(d, mv->payload, mv->plen, &mv->nops, NULL,
	    &mv->sender));
	/* Op stamps are hlc + i; they must not wrap. */
	if (mv->nops > 0 && mv->hlc > UINT64_MAX - (mv->nops - 1))
		return CRDT_EMALFORMED;
	return 0;
}

static const epoch_key *
find_key(const crdt_doc *d, uint32_t epoch)
{
	for (size_t i = 0; i < d->nkeys; i++)
		if (d->keys[i].epoch == epoch)
			return &d->keys[i];
	return NULL;
}

static bool
is_relay(const crdt_doc *d)
{
	return d->encrypted && d->nkeys == 0;
}

/*
 * Check the signature (`verify`) and open a sealed payload. The signature
 * covers every byte before the auth slot; the AEAD's associated data is
 * every byte before the payload (the header a relay reads). A relay keeps
 * the payload opaque (mv->payload NULL).
 */
static int
open_msg(crdt_doc *d, msgview *mv, bool verify)
{
	if (verify && (mv->has_auth || d->signed_mode)) {
		uint8_t h[32];
		crdt_replica_id id;
		if (!mv->has_auth)
			return CRDT_EBADSIG;
		CRDT_TRY(crdt_replica_id_from_public_key(mv->pk, &id));
		if (crdt_replica_id_cmp(&id, &mv->sender) != 0)
			return CRDT_EBADKEY;
		CRDT_TRY(crdt__env_sig_digest(h, mv->version, &d->cfg.doc_id,
		    mv->bytes, mv->auth_off));
		CRDT_TRY(crdt__verify(mv->sig, h, sizeof h, mv->pk));
	}
	if (!mv->sealed || mv->opened || is_relay(d)) {
		mv->opened = true;
		return 0;
	}
	const epoch_key *k = find_key(d, mv->epoch);
	if (k == NULL)
		return CRDT_ENOKEY;
	size_t plen = mv->ctlen - CRDT__TAG_BYTES;
	crdt_buf_clear(&d->plain);
	if (plen + 1 > d->plain.cap) { /* grow; ctlen >= plen + 16 */
		CRDT_TRY(crdt_buf_append(&d->plain, mv->ct, plen + 1));
		crdt_buf_clear(&d->plain);
	}
	uint8_t adbuf[32];
	const uint8_t *ad;
	size_t adlen;
	CRDT_TRY(crdt__env_ad(adbuf, mv->version, &d->cfg.doc_id, mv->bytes,
	    mv->payload_off, &ad, &adlen));
	CRDT_TRY(crdt__aead_open(d->plain.data, mv->ct, mv->ctlen, ad, adlen,
	    mv->nonce, k->key));
	d->plain.len = plen;
	mv->payload = d->plain.data;
	mv->plen = plen;
	mv->opened = true;
	return 0;
}

/*
 * Decode the envelope; with `ops`, also validate every op. A message that
 * is applied at once skips the op validation: applying walks the ops
 * anyway, through the undo log, and rolls everything back on the first
 * bad op, so the result is the same for half the work.
 */
static int
parse_msg(crdt_doc *d, const void *bytes, size_t len, msgview *mv, bool ops)
{
	crdt__env e;

	CRDT_TRY(crdt__env_parse(&d->cfg.limits, bytes, len, &e, sdeps_room,
	    d));
	/* A version-1 message names no document, signed or not. */
	if (e.version == 1 && !crdt__doc_id_zero(&d->cfg.doc_id))
		return CRDT_EWRONGDOC;
	mv->version = e.version;
	mv->sender = e.sender;
	mv->counter = e.counter;
	mv->hlc = e.hlc;
	mv->ndeps = e.ndeps;
	mv->bytes = bytes;
	mv->end = (const uint8_t *)bytes + len;
	mv->payload_off = e.payload_off;
	mv->auth_off = e.auth_off;
	mv->sealed = e.sealed;
	mv->opened = false;
	mv->payload = e.payload;
	mv->plen = e.plen;
	mv->epoch = e.epoch;
	mv->nonce = e.nonce;
	mv->ct = e.ct;
	mv->ctlen = e.ctlen;
	mv->has_auth = e.has_auth;
	mv->pk = e.pk;
	mv->sig = e.sig;
	/* The mode is part of the document's schema: a plaintext message in
	 * an encrypted document, or the reverse, is refused everywhere. */
	if (mv->sealed != d->encrypted)
		return d->encrypted ? CRDT_EDECRYPT : CRDT_EMALFORMED;
	mv->nops = 0;
	if (!ops)
		return mv->sealed ? 0 : (mv->opened = true, 0);
	CRDT_TRY(open_msg(d, mv, true));
	return mv->payload != NULL ? validate_ops(d, mv) : 0;
}

/* ---------------------------------------------------------------- */
/* message log                                                      */

/*
 * The log keeps, per replica, a contiguous run of its latest applied
 * messages; the fifo records the order in which they were applied (a
 * causal order, which DATA frames follow). Over a bound, the oldest
 * message of the replica holding the most messages (or bytes, for the
 * byte bound) goes: eviction is per writer, so one sender, however many
 * messages it pushes (a keyless relay cannot judge them), only ever
 * flushes its own history once it holds the largest share. Each push or
 * eviction costs O(log replicas); fifo entries of evicted messages are
 * skipped and compacted away, O(1) amortised.
 */
enum { LH_MSGS = 0, LH_BYTES = 1 };

static bool in_log(const rstate *r, uint64_t c);

static size_t
lh_key(const crdt_doc *d, int k, uint32_t ri)
{
	return k == LH_MSGS ? d->rs[ri].log_n : d->rs[ri].log_bytes;
}

static void
lh_set(crdt_doc *d, int k, size_t i, uint32_t ri)
{
	d->lheap[k][i] = ri;
	d->rs[ri].lpos[k] = i;
}

static void
lh_up(crdt_doc *d, int k, size_t i)
{
	uint32_t ri = d->lheap[k][i];
	size_t key = lh_key(d, k, ri);
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (lh_key(d, k, d->lheap[k][p]) >= key)
			break;
		lh_set(d, k, i, d->lheap[k][p]);
		i = p;
	}
	lh_set(d, k, i, ri);
}

static void
lh_down(crdt_doc *d, int k, size_t i)
{
	size_t n = d->lheap_n[k];
	uint32_t ri = d->lheap[k][i];
	size_t key = lh_key(d, k, ri);
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && lh_key(d, k, d->lheap[k][c + 1]) >
		    lh_key(d, k, d->lheap[k][c]))
			c++;
		if (lh_key(d, k, d->lheap[k][c]) <= key)
			break;
		lh_set(d, k, i, d->lheap[k][c]);
		i = c;
	}
	lh_set(d, k, i, ri);
}

/* Replica ri's log changed size; log_n == 0 means it leaves the heaps.
 * `was_in`: it was in them before the change. Room was reserved. */
static void
lh_update(crdt_doc *d, uint32_t ri, bool was_in)
{
	for (int k = 0; k < 2; k++) {
		if (!was_in) {
			if (d->rs[ri].log_n == 0)
				continue;
			size_t i = d->lheap_n[k]++;
			lh_set(d, k, i, ri);
			lh_up(d, k, i);
			continue;
		}
		size_t i = d->rs[ri].lpos[k];
		if (d->rs[ri].log_n == 0) {
			uint32_t last = d->lheap[k][--d->lheap_n[k]];
			if (i == d->lheap_n[k])
				continue;
			lh_set(d, k, i, last);
		}
		uint32_t x = d->lheap[k][i];
		lh_up(d, k, i);
		lh_down(d, k, d->rs[x].lpos[k]);
	}
}

/* Drop fifo entries of messages no longer in the log once they make up
 * half of it; the survivors keep their order. */
static void
fifo_compact(crdt_doc *d)
{
	while (d->fifo_n > 0) {
		fifo_ent f = d->fifo[d->fifo_start];
		if (in_log(&d->rs[f.r], f.c))
			break;
		d->fifo_start++;
		d->fifo_n--;
	}
	if (d->fifo_n <= 2 * d->log_count + 16)
		return;
	size_t w = 0;
	for (size_t i = 0; i < d->fifo_n; i++) {
		fifo_ent f = d->fifo[d->fifo_start + i];
		if (in_log(&d->rs[f.r], f.c))
			d->fifo[w++] = f;
	}
	d->fifo_start = 0;
	d->fifo_n = w;
}

/* Evict the oldest message of the replica that holds the most messages
 * (k = LH_MSGS) or bytes (LH_BYTES). */
static void
log_evict_one(crdt_doc *d, int k)
{
	if (d->lheap_n[k] == 0)
		return;
	uint32_t ri = d->lheap[k][0];
	rstate *r = &d->rs[ri];
	logent *e = &r->log[r->log_start];
	d->log_count--;
	d->log_bytes -= e->len;
	r->log_bytes -= e->len;
	crdt__free(&d->cfg.alloc, e->bytes, e->len);
	r->log_start++;
	r->log_n--;
	r->log_lo++;
	lh_update(d, ri, true);
}

static void
log_reset(crdt_doc *d, uint32_t ri, uint64_t next)
{
	rstate *r = &d->rs[ri];
	bool was_in = r->log_n > 0;
	for (size_t j = 0; j < r->log_n; j++) {
		logent *e = &r->log[r->log_start + j];
		d->log_count--;
		d->log_bytes -= e->len;
		crdt__free(&d->cfg.alloc, e->bytes, e->len);
	}
	r->log_start = r->log_n = 0;
	r->log_bytes = 0;
	r->log_lo = next;
	if (was_in)
		lh_update(d, ri, true);
}

/* Room for one more entry in replica r's log, in the fifo and in the
 * heaps; after this, log_push cannot fail. */
static int
log_reserve(crdt_doc *d, uint32_t ri)
{
	const crdt_allocator *a = &d->cfg.alloc;
	rstate *r = &d->rs[ri];
	if (r->log_start > 0 && r->log_start + r->log_n == r->log_cap) {
		memmove(r->log, r->log + r->log_start,
		    r->log_n * sizeof *r->log);
		r->log_start = 0;
	}
	void *v = r->log;
	CRDT_TRY(crdt__grow(a, &v, &r->log_cap, r->log_start + r->log_n + 1,
	    sizeof *r->log));
	r->log = v;
	if (d->fifo_start > 0 && d->fifo_start + d->fifo_n == d->fifo_cap) {
		memmove(d->fifo, d->fifo + d->fifo_start,
		    d->fifo_n * sizeof *d->fifo);
		d->fifo_start = 0;
	}
	v = d->fifo;
	CRDT_TRY(crdt__grow(a, &v, &d->fifo_cap, d->fifo_start + d->fifo_n + 1,
	    sizeof *d->fifo));
	d->fifo = v;
	for (int k = 0; k < 2; k++) {
		v = d->lheap[k];
		CRDT_TRY(crdt__grow(a, &v, &d->lheap_cap[k],
		    d->lheap_n[k] + 1, sizeof *d->lheap[k]));
		d->lheap[k] = v;
	}
	return 0;
}

static void
log_push(crdt_doc *d, uint32_t ri, uint64_t c, uint8_t *bytes, size_t len)
{
	rstate *r = &d->rs[ri];
	if (r->log_n == 0)
		r->log_lo = c;
	if (r->log_lo + r->log_n != c) {
		/* Not contiguous (a snapshot jumped this replica): restart. */
		log_reset(d, ri, c);
	}
	bool was_in = r->log_n > 0;
	r->log[r->log_start + r->log_n++] = (logent){ bytes, len };
	r->log_bytes += len;
	d->fifo[d->fifo_start + d->fifo_n++] = (fifo_ent){ ri, c };
	d->log_count++;
	d->log_bytes += len;
	lh_update(d, ri, was_in);
	/* Bounded: each pass evicts one message. */
	while (d->log_count > d->cfg.log_max_msgs ||
	    d->log_bytes > d->cfg.log_max_bytes)
		log_evict_one(d, d->log_count > d->cfg.log_max_msgs ?
		    LH_MSGS : LH_BYTES);
	fifo_compact(d);
}

size_t
crdt_doc_log_size(const crdt_doc *d)
{
	return d ? d->log_count : 0;
}

/* ---------------------------------------------------------------- */
/* apply                                                            */

/* ---- write permissions ---- */

static void
acl_ent_fini(void *e, const crdt_allocator *a)
{
	acl_ent *x = e;
	crdt__free(a, x->h, x->cap * sizeof *x->h);
}

/* Fold one allowlist record [writer, admin counter, allowed] in. */
static int
acl_add(crdt_doc *d, const uint8_t *rec, size_t len)
{
	static const crdt_limits lim = { SIZE_MAX, SIZE_MAX, SIZE_MAX, 4 };
	crdt__rd r;
	crdt_replica_id w;
	acl_change ch;
	uint64_t allowed;

	CRDT_TRY(crdt__rd_init(&r, &lim, rec, len));
	CRDT_TRY(crdt__rd_array_n(&r, 3));
	CRDT_TRY(crdt__rd_id(&r, &w));
	CRDT_TRY(crdt__rd_uint(&r, &ch.c));
	CRDT_TRY(crdt__rd_uint(&r, &allowed));
	ch.allowed = allowed != 0;
	uint64_t h = crdt__table_hash(&d->acl, w.bytes, 16);
	acl_ent *e = crdt__table_find(&d->acl, w.bytes, 16, h);
	if (e == NULL) {
		CRDT_TRY(crdt__table_reserve(&d->acl, 1));
		uint8_t *k = crdt__memdup(&d->cfg.alloc, w.bytes, 16);
		if (k == NULL)
			return CRDT_ENOMEM;
		e = crdt__table_insert(&d->acl, k, 16, h);
	}
	void *v = e->h;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &e->cap, e->n + 1,
	    sizeof *e->h));
	e->h = v;
	size_t i = e->n;
	/* ascending counter; at equal counters a revoke sorts last (wins) */
	while (i > 0 && (e->h[i - 1].c > ch.c ||
	    (e->h[i - 1].c == ch.c && !e->h[i - 1].allowed && ch.allowed))) {
		e->h[i] = e->h[i - 1];
		i--;
	}
	e->h[i] = ch;
	e->n++;
	return 0;
}

/* The allowlist index of G-Set `g`, built into `t` (all or nothing). */
static int
acl_build(crdt_doc *d, const crdt_gset *g, crdt__table *t)
{
	crdt__table old = d->acl;
	CRDT_TRY(crdt__table_init(&d->acl, &d->cfg.alloc, sizeof(acl_ent)));
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < crdt_gset_size(g); i++) {
		const crdt__key *k = crdt__gset_entry_key(g, i);
		rc = acl_add(d, k->ptr, k->len);
	}
	if (rc < 0)
		crdt__table_fini(&d->acl, acl_ent_fini);
	else
		*t = d->acl;
	d->acl = old;
	return rc;
}

/* Replace the allowlist index by one built with acl_build(). */
static void
acl_replace(crdt_doc *d, crdt__table *t)
{
	crdt__table_fini(&d->acl, acl_ent_fini);
	d->acl = *t;
}

/* Room in the index for record `rec` [writer, counter, allowed] so that
 * folding it in (acl_add) cannot fail. */
/* The writer an allowlist record [writer, counter, allowed] is about. */
static int
acl_rec_writer(const uint8_t *rec, size_t len, crdt_replica_id *w)
{
	static const crdt_limits lim = { SIZE_MAX, SIZE_MAX, SIZE_MAX, 4 };
	crdt__rd r;
	CRDT_TRY(crdt__rd_init(&r, &lim, rec, len));
	CRDT_TRY(crdt__rd_array_n(&r, 3));
	return crdt__rd_id(&r, w);
}

static int
acl_room(crdt_doc *d, const uint8_t *rec, size_t len)
{
	crdt_replica_id w;
	CRDT_TRY(acl_rec_writer(rec, len, &w));
	uint64_t h = crdt__table_hash(&d->acl, w.bytes, 16);
	acl_ent *e = crdt__table_find(&d->acl, w.bytes, 16, h);
	if (e == NULL) {
		/* An entry with no history reads as "not allowed", the same
		 * as no entry, so it may stay if the message is refused. */
		CRDT_TRY(crdt__table_reserve(&d->acl, 1));
		uint8_t *k = crdt__memdup(&d->cfg.alloc, w.bytes, 16);
		if (k == NULL)
			return CRDT_ENOMEM;
		e = crdt__table_insert(&d->acl, k, 16, h);
		e->h = NULL;
		e->n = e->cap = e->pend = 0;
	}
	void *v = e->h;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &e->cap, e->n + e->pend + 1,
	    sizeof *e->h));
	e->h = v;
	e->pend++;
	return 0;
}

/*
 * Make room in the allowlist index for every allowlist record the
 * message's ops added (the undo log), before the commit point: the index
 * is then updated with the state, at every commit and receive, and
 * crdt_doc_allowed() never rebuilds or allocates.
 */
static int
acl_prepare(crdt_doc *d)
{
	if (!d->has_admin)
		return 0;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < d->undo.n; i++) {
		const crdt__undo_rec *u = &d->undo.v[i];
		if (!d->objs[u->obj].acl || u->kind != CRDT__UNDO_GSET_NEW)
			continue;
		const crdt__key *k = crdt__gset_entry_key(u->target, u->idx);
		rc = acl_room(d, k->ptr, k->len);
	}
	for (size_t i = 0; i < d->undo.n; i++) {
		const crdt__undo_rec *u = &d->undo.v[i];
		if (!d->objs[u->obj].acl || u->kind != CRDT__UNDO_GSET_NEW)
			continue;
		const crdt__key *k = crdt__gset_entry_key(u->target, u->idx);
		crdt_replica_id w;
		if (acl_rec_writer(k->ptr, k->len, &w) != 0)
			continue;
		uint64_t h = crdt__table_hash(&d->acl, w.bytes, 16);
		acl_ent *e = crdt__table_find(&d->acl, w.bytes, 16, h);
		if (e != NULL)
			e->pend = 0;
	}
	return rc;
}

/*
 * Is `w` allowed to write, judged by the allowlist as of admin counter
 * `a` (what the message's causal past holds of the admin's history)?
 * The answer depends only on the message and its causal past, so every
 * replica gives the same one. The admin is always allowed.
 */
static int
acl_check(crdt_doc *d, const crdt_replica_id *w, uint64_t a)
{
	if (!d->has_admin || crdt_replica_id_cmp(w, &d->admin) == 0)
		return 0;
	uint64_t h = crdt__table_hash(&d->acl, w->bytes, 16);
	const acl_ent *e = crdt__table_find(&d->acl, w->bytes, 16, h);
	bool ok = false;
	for (size_t i = 0; e != NULL && i < e->n && e->h[i].c <= a; i++)
		ok = e->h[i].allowed;
	return ok ? 0 : CRDT_EPERM;
}

/* The admin counter a message lists among its dependencies (0 if none). */
static uint64_t
listed_admin(const crdt_doc *d, const dep *deps, size_t n)
{
	if (!d->has_admin)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (deps[i].r == d->admin_idx)
			return deps[i].c;
	return 0;
}

static void
emit_changes(crdt_doc *d, crdt_dot dot)
{
	for (size_t i = 0; i < d->undo.n; i++) {
		const crdt__undo_rec *u = &d->undo.v[i];
		crdt_change ch;
		const crdt__reg *now = NULL;
		const crdt__key *k = NULL;
		memset(&ch, 0, sizeof ch);
		ch.obj = u->obj;
		ch.dot = dot;
		if (d->objs[u->obj].acl) {
			if (u->kind == CRDT__UNDO_GSET_NEW) {
				const crdt__key *ak = crdt__gset_entry_key(
				    u->target, u->idx);
				/* Cannot fail: acl_prepare made room. */
				int arc = acl_add(d, ak->ptr, ak->len);
				assert(arc == 0);
				(void)arc;
			}
			continue;
		}
		if (d->objs[u->obj].type == CRDT_OBJ_CHAT) {
			/* The thread's index follows every change, listener
			 * or not. */
			if (crdt__chat_after(d->objs[u->obj].o, u, &ch) &&
			    d->l.on_change != NULL)
				d->l.on_change(d->l.ud, &ch);
			continue;
		}
		if (d->l.on_change == NULL)
			continue;
		switch (u->kind) {
		case CRDT__UNDO_GSET_NEW:
			ch.kind = CRDT_CHANGE_GSET_ADD;
			k = crdt__gset_entry_key(u->target, u->idx);
			break;
		case CRDT__UNDO_LWW:
			ch.kind = CRDT_CHANGE_LWW_SET;
			now = crdt__lww_reg(u->target);
			break;
		case CRDT__UNDO_MAP_NEW:
		case CRDT__UNDO_MAP_REG:
			ch.kind = CRDT_CHANGE_MAP_SET;
			k = crdt__map_entry(u->target, u->idx, &now);
			break;
		default:
			continue; /* dot lowered: nothing a UI shows */
		}
		if (k != NULL) {
			ch.key = k->ptr;
			ch.key_len = k->len;
		}
		if (now != NULL) {
			const crdt__reg *old = &u->old;
			if (u->kind == CRDT__UNDO_MAP_NEW)
				old = NULL;
			ch.has_old = old != NULL && old->state == 2;
			ch.old_value = ch.has_old ? old->val : NULL;
			ch.old_len = ch.has_old ? old->len : 0;
			ch.has_new = now->state == 2;
			ch.new_value = ch.has_new ? now->val : NULL;
			ch.new_len = ch.has_new ? now->len : 0;
			if (!ch.has_old && !ch.has_new)
				continue; /* absent -> absent */
		}
		d->l.on_change(d->l.ud, &ch);
	}
}

/*
 * The admin counter in the causal past of message (r, c): the admin's own
 * message c holds c; another replica's holds what its message c (or the
 * last before it that raised the value) recorded when it was applied. A
 * replica known only from a snapshot has no steps below its clock: 0.
 */
static uint64_t
adm_at(const crdt_doc *d, uint32_t r, uint64_t c)
{
	if (c == 0 || !d->has_admin)
		return 0;
	if (r == d->admin_idx)
		return c;
	const rstate *s = &d->rs[r];
	size_t lo = 0, hi = s->nsteps;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->steps[mid].c <= c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 ? s->steps[lo - 1].a : 0;
}

/* What a ready message's whole causal past holds of the admin's history:
 * its sender's previous message and every dependency, each of which
 * carries its own causal past (so the maximum is transitive). */
static uint64_t
causal_admin(const crdt_doc *d, uint32_t sender, uint64_t counter,
    const dep *deps, size_t n)
{
	uint64_t a = adm_at(d, sender, counter - 1);
	for (size_t i = 0; i < n; i++)
		a = CRDT_MAX(a, adm_at(d, deps[i].r, deps[i].c));
	return a;
}

/*
 * Authorise writer `w` whose message lists admin counter `listed` and
 * whose causal past holds `causal` (0 when not known yet). An honest
 * writer always lists all it has applied of the admin's history, which
 * is at least its causal past's; listing less hides a revocation, so it
 * is refused like the revoked write it is. Then the allowlist as of
 * `listed` decides. The admin is always allowed; a keyless relay cannot
 * read the (sealed) allowlist and leaves this to keyed replicas.
 */
static int
authorise(crdt_doc *d, const crdt_replica_id *w, uint64_t listed,
    uint64_t causal)
{
	if (!d->has_admin || is_relay(d) ||
	    crdt_replica_id_cmp(w, &d->admin) == 0)
		return 0;
	if (listed < causal)
		return CRDT_EPERM;
	return acl_check(d, w, listed);
}

/* Room to record that replica r's messages from now on hold `a`. */
static int
steps_reserve(crdt_doc *d, uint32_t r, uint64_t a)
{
	rstate *s = &d->rs[r];
	if (!d->has_admin || r == d->admin_idx ||
	    a <= (s->nsteps ? s->steps[s->nsteps - 1].a : 0))
		return 0;
	void *v = s->steps;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &s->capsteps, s->nsteps + 1,
	    sizeof *s->steps));
	s->steps = v;
	return 0;
}

static void
steps_push(crdt_doc *d, uint32_t r, uint64_t c, uint64_t a)
{
	rstate *s = &d->rs[r];
	if (!d->has_admin || r == d->admin_idx ||
	    a <= (s->nsteps ? s->steps[s->nsteps - 1].a : 0))
		return;
	s->steps[s->nsteps++] = (admstep){ c, a };
}

/* One message on its way into the state (see apply_core). */
typedef struct ingest {
	uint32_t sender;
	uint64_t counter, hlc;
	const uint8_t *bytes;
	size_t len;
	const uint8_t *payload; /* NULL: a relay, the ops are sealed */
	size_t plen;
	crdt_update_source src;
	void *caller;
	uint64_t listed, causal; /* admin counters: named, and causal past */
	/* An equivocation variant: the dot is applied already, so only its
	 * ops join (the union); `first` is the variant it conflicts with. */
	bool variant;
	const uint8_t *first;
	size_t flen;
} ingest;

/*
 * Apply one authenticated, causally ready message: a fresh one, a
 * buffered one released, a local commit or an equivocation variant, all
 * through here, so each is authorised, stamped and reported alike.
 * All or nothing: on failure the document is exactly as before.
 */
static int
apply_core(crdt_doc *d, const ingest *in)
{
	const crdt_allocator *a = &d->cfg.alloc;
	uint32_t sender = in->sender;
	size_t nops = 0;
	stamp st = { { d->rs[sender].id, in->counter }, in->hlc };
	uint64_t admin_at = CRDT_MAX(in->listed, in->causal);
	uint8_t *copy = NULL;

	CRDT_TRY(authorise(d, &d->rs[sender].id, in->listed, in->causal));
	if (!in->variant) {
		CRDT_TRY(log_reserve(d, sender));
		CRDT_TRY(steps_reserve(d, sender, admin_at));
		copy = crdt__memdup(a, in->bytes, in->len);
		if (copy == NULL)
			return CRDT_ENOMEM;
	}
	int rc = 0;
	if (in->payload != NULL)
		rc = walk_ops(d, in->payload, in->plen, &nops, &st, NULL);
	if (rc == 0 && nops > 0 && in->hlc > UINT64_MAX - (nops - 1))
		rc = CRDT_EMALFORMED; /* op stamps hlc + i must not wrap */
	if (rc == 0)
		rc = acl_prepare(d);
	if (rc == 0 && !in->variant && sender != d->self_idx &&
	    d->rs[sender].vc < in->counter)
		rc = mark_dirty(d, sender);
	if (rc < 0) {
		crdt__undo_rollback(&d->undo);
		crdt__free(a, copy, in->len);
		return rc;
	}
	/* Nothing below can fail. */
	if (!in->variant) {
		d->has_data = true;
		d->rs[sender].vc = in->counter;
		d->rs[sender].admin_seen = CRDT_MAX(admin_at,
		    d->rs[sender].admin_seen);
		steps_push(d, sender, in->counter, admin_at);
	}
	uint64_t top = nops ? in->hlc + (nops - 1) : in->hlc;
	if (top > d->rs[sender].stamp)
		d->rs[sender].stamp = top;
	if (top > d->hlc_max)
		d->hlc_max = top;
	if (in->src == CRDT_UPDATE_LOCAL) {
		/* Our own commit: stamped by our clock, within the drift
		 * bound, with one stamp per op. */
		if (top > d->clock.last)
			d->clock.last = top;
	} else {
		/* A peer's stamp, even one under our own ID (a peer can
		 * claim any ID in unsigned mode, and our old messages come
		 * back after a restart): the clock follows it only within
		 * the drift bound. */
		int hrc = crdt_hlc_update(&d->clock, top, NULL);
		if (hrc == CRDT_EDRIFT && d->l.on_skew != NULL)
			d->l.on_skew(d->l.ud, &d->rs[sender].id, top,
			    crdt_hlc_physical(&d->clock));
	}
	if (!in->variant)
		log_push(d, sender, in->counter, copy, in->len);
	if (d->l.on_update != NULL)
		d->l.on_update(d->l.ud, in->src, in->bytes, in->len,
		    in->caller);
	emit_changes(d, st.dot);
	crdt__undo_commit(&d->undo);
	if (in->variant && d->l.on_equivocation != NULL)
		d->l.on_equivocation(d->l.ud, st.dot, in->first, in->flen,
		    in->bytes, in->len);
	return 0;
}

/* A fresh, causally ready message (or our own commit, `admin_listed`
 * being what we have applied of the admin's history). */
static int
apply_msg(crdt_doc *d, uint32_t sender, uint64_t counter, uint64_t hlc,
    const uint8_t *bytes, size_t len, const uint8_t *payload, size_t plen,
    crdt_update_source src, void *caller, uint64_t admin_listed,
    uint64_t admin_causal)
{
	ingest in = { sender, counter, hlc, bytes, len, payload, plen, src,
		caller, admin_listed, admin_causal, false, NULL, 0 };
	return apply_core(d, &in);
}

/* ---------------------------------------------------------------- */
/* causal buffer                                                    */

static uint64_t
dot_hash(const crdt_doc *d, uint32_t r, uint64_t c)
{
	uint8_t k[12];
	memcpy(k, &r, 4);
	memcpy(k + 4, &c, 8);
	return crdt__siphash(d->dotkey, k, sizeof k);
}

static dotslot *
dots_find(const crdt_doc *d, uint32_t r, uint64_t c)
{
	if (d->ndotslots == 0)
		return NULL;
	size_t mask = d->ndotslots - 1;
	for (size_t i = (size_t)dot_hash(d, r, c) & mask;; i = (i + 1) & mask) {
		dotslot *s = &d->dots[i];
		if (s->msg == UINT32_MAX)
			return NULL;
		if (s->r == r && s->c == c)
			return s;
	}
}

static void
dots_place(dotslot *slots, size_t n, uint64_t h, dotslot v)
{
	size_t mask = n - 1;
	size_t i = (size_t)h & mask;
	while (slots[i].msg != UINT32_MAX)
		i = (i + 1) & mask;
	slots[i] = v;
}

static int
dots_reserve(crdt_doc *d)
{
	size_t ns = d->ndotslots ? d->ndotslots : 64;
	while (d->ndots + 1 > ns / 2)
		ns *= 2;
	if (ns == d->ndotslots)
		return 0;
	dotslot *s = crdt__malloc(&d->cfg.alloc, ns * sizeof *s);
	if (s == NULL)
		return CRDT_ENOMEM;
	for (size_t i = 0; i < ns; i++)
		s[i].msg = UINT32_MAX;
	for (size_t i = 0; i < d->ndotslots; i++)
		if (d->dots[i].msg != UINT32_MAX)
			dots_place(s, ns, dot_hash(d, d->dots[i].r,
			    d->dots[i].c), d->dots[i]);
	crdt__free(&d->cfg.alloc, d->dots, d->ndotslots * sizeof *d->dots);
	d->dots = s;
	d->ndotslots = ns;
	return 0;
}

/* Backward-shift deletion keeps linear probing chains intact without
 * tombstones. */
static void
dots_remove(crdt_doc *d, dotslot *s)
{
	size_t mask = d->ndotslots - 1;
	size_t i = (size_t)(s - d->dots);
	size_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (d->dots[j].msg == UINT32_MAX)
			break;
		size_t home = (size_t)dot_hash(d, d->dots[j].r,
		    d->dots[j].c) & mask;
		/* Move j into the hole i unless its home lies in (i, j]. */
		bool stays = i <= j ? (home > i && home <= j) :
		    (home > i || home <= j);
		if (!stays) {
			d->dots[i] = d->dots[j];
			i = j;
		}
	}
	d->dots[i].msg = UINT32_MAX;
	d->ndots--;
}

/* Take buffered message m off its dot's chain of variants. */
static void
dot_unlink(crdt_doc *d, uint32_t m)
{
	bmsg *b = &d->bm[m];
	dotslot *s = dots_find(d, b->sender, b->counter);
	if (s == NULL)
		return;
	if (s->msg == m) {
		if (b->next_var != UINT32_MAX)
			s->msg = b->next_var;
		else
			dots_remove(d, s);
		return;
	}
	for (uint32_t p = s->msg; p != UINT32_MAX; p = d->bm[p].next_var) {
		if (d->bm[p].next_var == m) {
			d->bm[p].next_var = b->next_var;
			return;
		}
	}
}

/* Is buffered message m, whose dot is applied meanwhile, a variant the
 * equivocation rule takes (rather than a copy of what is applied)? */
static bool in_log(const rstate *r, uint64_t c);
static evid *evid_find(const crdt_doc *d, crdt_dot dot, size_t *at);
static bool evid_has(const evid *e, const uint8_t *b, size_t len);
static bool
covered_variant(const crdt_doc *d, const bmsg *b)
{
	const rstate *r = &d->rs[b->sender];
	size_t at;
	crdt_dot dot = { r->id, b->counter };
	if (in_log(r, b->counter)) {
		const logent *e = &r->log[r->log_start +
		    (b->counter - r->log_lo)];
		return !(e->len == b->len &&
		    memcmp(e->bytes, b->bytes, b->len) == 0);
	}
	const evid *e = evid_find(d, dot, &at);
	return e != NULL && !evid_has(e, b->bytes, b->len);
}

static void
heap_push(rstate *r, wait w)
{
	size_t i = r->nheap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (r->heap[p].c <= w.c)
			break;
		r->heap[i] = r->heap[p];
		i = p;
	}
	r->heap[i] = w;
}

static wait
heap_pop(rstate *r)
{
	wait top = r->heap[0];
	wait last = r->heap[--r->nheap];
	size_t i = 0, n = r->nheap;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && r->heap[c + 1].c < r->heap[c].c)
			c++;
		if (r->heap[c].c >= last.c)
			break;
		r->heap[i] = r->heap[c];
		i = c;
	}
	if (n > 0)
		r->heap[i] = last;
	return top;
}

/* The next dot message m waits for, or false when it is ready. */
static bool
next_missing(crdt_doc *d, bmsg *b, uint32_t *r, uint64_t *c)
{
	if (d->rs[b->sender].vc < b->counter - 1) {
		*r = b->sender;
		*c = b->counter - 1;
		return true;
	}
	while (b->next_dep < b->ndeps) {
		dep *e = &b->deps[b->next_dep];
		if (d->rs[e->r].vc < e->c) {
			*r = e->r;
			*c = e->c;
			return true;
		}
		b->next_dep++;
	}
	return false;
}

static int
heap_reserve(crdt_doc *d, uint32_t ri)
{
	rstate *r = &d->rs[ri];
	void *v = r->heap;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &r->capheap, r->nheap + 1,
	    sizeof *r->heap));
	r->heap = v;
	return 0;
}

static int apply_buffered(crdt_doc *d, uint32_t m);
static int admit_covered(crdt_doc *d, uint32_t m);

/*
 * Release what waits on replicas whose clock moved. `stack` starts with
 * `first`; every message applied pushes its sender. Each waiting message
 * is looked at once per dependency it waited on.
 */
static int
release(crdt_doc *d, uint32_t first)
{
	uint32_t stack_small[16];
	uint32_t *stack = stack_small;
	size_t sn = 0, scap = 16;
	int rc = 0;

	stack[sn++] = first;
	while (sn > 0 && rc == 0) {
		uint32_t ri = stack[--sn];
		rstate *r = &d->rs[ri];
		while (r->nheap > 0 && r->heap[0].c <= r->vc) {
			wait w = heap_pop(r);
			bmsg *b = &d->bm[w.msg];
			uint32_t wr = 0;
			uint64_t wc = 0;
			bool covered = b->counter <= d->rs[b->sender].vc;
			if (covered && !covered_variant(d, b)) {
				/* Covered meanwhile (a snapshot, or this very
				 * message applied another way): redundant. */
				dot_unlink(d, w.msg);
				bmsg_release(d, w.msg);
				continue;
			}
			if (next_missing(d, b, &wr, &wc)) {
				/* Cannot fail: the slot just popped is free
				 * when wr == ri; otherwise reserve. */
				if (wr != ri && heap_reserve(d, wr) < 0) {
					heap_push(r, w); /* re-queue */
					rc = CRDT_ENOMEM;
					break;
				}
				heap_push(&d->rs[wr], (wait){ wc, w.msg });
				continue;
			}
			uint32_t sender = b->sender;
			if (covered) {
				/* Another variant of its dot was applied
				 * first: it joins as an equivocation. */
				rc = admit_covered(d, w.msg);
				if (rc < 0) {
					heap_push(r, w);
					break;
				}
				continue;
			}
			rc = apply_buffered(d, w.msg);
			if (rc < 0) {
				/* Keep it; it is ready and will be retried
				 * when this replica's clock is next looked
				 * at. */
				heap_push(r, w);
				break;
			}
			if (sn == scap) {
				size_t ncap = scap * 2;
				uint32_t *ns = crdt__malloc(&d->cfg.alloc,
				    ncap * sizeof *ns);
				if (ns == NULL) {
					rc = CRDT_ENOMEM;
					break;
				}
				memcpy(ns, stack, sn * sizeof *ns);
				if (stack != stack_small)
					crdt__free(&d->cfg.alloc, stack,
					    scap * sizeof *stack);
				stack = ns;
				scap = ncap;
			}
			stack[sn++] = sender;
		}
	}
	if (stack != stack_small)
		crdt__free(&d->cfg.alloc, stack, scap * sizeof *stack);
	return rc;
}

static int
apply_buffered(crdt_doc *d, uint32_t m)
{
	bmsg *b = &d->bm[m];
	msgview mv;
	/* Already validated when it was buffered; the walk repeats only the
	 * cheap envelope read to find the payload. */
	CRDT_TRY(parse_msg(d, b->bytes, b->len, &mv, false));
	CRDT_TRY(open_msg(d, &mv, false)); /* verified when buffered */
	int rc = apply_msg(d, b->sender, b->counter, mv.hlc, b->bytes, b->len,
	    mv.payload, mv.plen, CRDT_UPDATE_REMOTE, b->caller,
	    listed_admin(d, b->deps, b->ndeps),
	    causal_admin(d, b->sender, b->counter, b->deps, b->ndeps));
	/* Out of memory: keep it for a retry. Refused (a writer outside the
	 * allowlist, decided by its causal past, so everywhere alike): drop
	 * it as any replica would have. */
	if (rc == CRDT_ENOMEM)
		return rc;
	dot_unlink(d, m);
	bmsg_release(d, m);
	return 0;
}

static int equivocation(crdt_doc *d, msgview *mv, uint32_t s, void *caller,
    bool evidence);

/* A buffered variant whose dot another variant took meanwhile, now ready:
 * judged by the same equivocation rule as one that arrives after. */
static int
admit_covered(crdt_doc *d, uint32_t m)
{
	bmsg *b = &d->bm[m];
	msgview mv;
	int rc = parse_msg(d, b->bytes, b->len, &mv, false);
	if (rc == 0)
		rc = equivocation(d, &mv, b->sender, b->caller, false);
	if (rc == CRDT_ENOMEM)
		return rc;
	/* Refused (not allowed, over the evidence bounds): dropped as every
	 * replica with the same past drops it. */
	dot_unlink(d, m);
	bmsg_release(d, m);
	return 0;
}

/*
 * Hold a message until its dependencies arrive. `head` is a buffered
 * variant of the same dot (UINT32_MAX: none); the new one joins its chain
 * so the dot table keeps one slot per dot and both halves wait. Each
 * sender holds at most max_sender_buffered bytes, so no sender (allowed,
 * unknown or not yet vetted) can pin the whole buffer: past it, only that
 * sender's further messages get the transient CRDT_EBUFFULL.
 */
static int
buffer_msg(crdt_doc *d, const void *bytes, size_t len, uint32_t sender,
    uint64_t counter, const dep *deps, size_t ndeps, void *caller,
    uint32_t head)
{
	const crdt_allocator *a = &d->cfg.alloc;
	size_t sb = d->rs[sender].buf_bytes;

	if (d->nbuffered + 1 > d->cfg.max_buffered_msgs ||
	    len > d->cfg.max_buffered_bytes - d->buffered_bytes ||
	    len > d->cfg.max_sender_buffered -
		    CRDT_MIN(sb, d->cfg.max_sender_buffered))
		return CRDT_EBUFFULL;
	uint32_t m;
	if (d->free_bm == UINT32_MAX) {
		if (d->nbm >= UINT32_MAX - 1)
			return CRDT_EBUFFULL;
		void *v = d->bm;
		CRDT_TRY(crdt__grow(a, &v, &d->capbm, d->nbm + 1,
		    sizeof *d->bm));
		d->bm = v;
	}
	CRDT_TRY(dots_reserve(d));
	bmsg nb;
	memset(&nb, 0, sizeof nb);
	nb.sender = sender;
	nb.counter = counter;
	nb.caller = caller;
	nb.len = len;
	nb.ndeps = ndeps;
	nb.live = true;
	nb.next_var = UINT32_MAX;
	nb.bytes = crdt__memdup(a, bytes, len);
	if (nb.bytes == NULL)
		return CRDT_ENOMEM;
	if (ndeps > 0) {
		nb.deps = crdt__malloc(a, ndeps * sizeof *deps);
		if (nb.deps == NULL) {
			crdt__free(a, nb.bytes, len);
			return CRDT_ENOMEM;
		}
		memcpy(nb.deps, deps, ndeps * sizeof *deps);
	}
	uint32_t wr = 0;
	uint64_t wc = 0;
	bool waiting = next_missing(d, &nb, &wr, &wc);
	assert(waiting);
	(void)waiting;
	if (heap_reserve(d, wr) < 0) {
		crdt__free(a, nb.bytes, len);
		crdt__free(a, nb.deps, ndeps * sizeof *deps);
		return CRDT_ENOMEM;
	}
	if (d->free_bm != UINT32_MAX) {
		m = d->free_bm;
		d->free_bm = d->bm[m].next_free;
	} else {
		m = (uint32_t)d->nbm++;
	}
	d->bm[m] = nb;
	d->nbuffered++;
	d->buffered_bytes += len;
	d->rs[sender].buf_bytes += len;
	if (head != UINT32_MAX) {
		d->bm[m].next_var = d->bm[head].next_var;
		d->bm[head].next_var = m;
	} else {
		dots_place(d->dots, d->ndotslots,
		    dot_hash(d, sender, counter),
		    (dotslot){ counter, sender, m });
		d->ndots++;
	}
	heap_push(&d->rs[wr], (wait){ wc, m });
	return 0;
}

/* Intern every replica a message names; harmless if it is then refused
 * (the table is internal and never encoded). */
static int
intern_deps(crdt_doc *d, const msgview *mv, uint32_t *sender, bool known,
    dep **out)
{
	if (!known)
		CRDT_TRY(rep_intern(d, &mv->sender, sender));
	dep *deps = NULL;
	if (mv->ndeps > 0) {
		deps = crdt__malloc(&d->cfg.alloc, mv->ndeps * sizeof *deps);
		if (deps == NULL)
			return CRDT_ENOMEM;
	}
	for (size_t i = 0; i < mv->ndeps; i++) {
		int rc = rep_intern(d, &d->sdeps[i].id, &deps[i].r);
		if (rc < 0) {
			crdt__free(&d->cfg.alloc, deps,
			    mv->ndeps * sizeof *deps);
			return rc;
		}
		deps[i].c = d->sdeps[i].c;
	}
	*out = deps;
	return 0;
}

static bool in_log(const rstate *r, uint64_t c);
static int w_evidence(const crdt_doc *d, crdt_buf *out);
static int rd_evidence(crdt_doc *d, crdt__rd *r, size_t n, const uint8_t **ep,
    size_t *el);

static int
bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	return crdt__key_cmp(a, al, b, bl);
}

static evid *
evid_find(const crdt_doc *d, crdt_dot dot, size_t *at)
{
	size_t lo = 0, hi = d->nev;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (crdt_dot_cmp(d->ev[mid].dot, dot) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return lo < d->nev && crdt_dot_cmp(d->ev[lo].dot, dot) == 0 ?
	    &d->ev[lo] :
	    NULL;
}

static bool
evid_has(const evid *e, const uint8_t *b, size_t len)
{
	for (size_t i = 0; e != NULL && i < e->n; i++)
		if (bytes_cmp(e->v[i].bytes, e->v[i].len, b, len) == 0)
			return true;
	return false;
}

/*
 * Would `len` more bytes of evidence for `dot` fit? Per dot at most
 * max_variants variants, per signer a quarter of max_evidence_bytes, in
 * all max_evidence_bytes and max_buffered_msgs dots. One signer that
 * equivocates without end thus fills only its own share, and what every
 * replica keeps (and puts in snapshots and DATA frames) stays well under
 * max_bytes. Checked before any allocation or signature check.
 */
static int
evid_fits(const crdt_doc *d, crdt_dot dot, size_t len, size_t more)
{
	size_t at;
	const evid *e = evid_find(d, dot, &at);
	uint32_t r;
	size_t cap = d->cfg.max_evidence_bytes;
	if (e == NULL && d->nev >= d->cfg.max_buffered_msgs)
		return CRDT_EBUFFULL; /* bounded like the buffer */
	if ((e ? e->n : 0) + more > d->cfg.max_variants)
		return CRDT_ETOOBIG;
	if (len > cap - CRDT_MIN(cap, d->ev_bytes))
		return CRDT_ETOOBIG;
	if (rep_find(d, &dot.replica, &r) == 0 &&
	    len > cap / 4 - CRDT_MIN(cap / 4, d->rs[r].ev_bytes))
		return CRDT_ETOOBIG;
	return 0;
}

/* Add variant `b` of `dot` (copied) to the evidence; 1 = added, 0 = known.
 * The vector grows geometrically and is freed with the size it has, so
 * insertion is linear only in the (bounded) variants of one dot. */
static int
evid_add(crdt_doc *d, crdt_dot dot, const uint8_t *b, size_t len)
{
	const crdt_allocator *a = &d->cfg.alloc;
	size_t at;
	evid *e = evid_find(d, dot, &at);
	if (evid_has(e, b, len))
		return 0;
	CRDT_TRY(evid_fits(d, dot, len, 1));
	if (e == NULL) {
		void *nv = d->ev;
		CRDT_TRY(crdt__grow(a, &nv, &d->capev, d->nev + 1,
		    sizeof *d->ev));
		d->ev = nv;
	}
	logent *v = e ? e->v : NULL;
	size_t cap = e ? e->cap : 0;
	void *vv = v;
	CRDT_TRY(crdt__grow(a, &vv, &cap, (e ? e->n : 0) + 1, sizeof *v));
	v = vv;
	uint8_t *copy = crdt__memdup(a, b, len);
	if (copy == NULL) {
		if (e == NULL)
			crdt__free(a, v, cap * sizeof *v);
		else {
			e->v = v;
			e->cap = cap;
		}
		return CRDT_ENOMEM;
	}
	if (e == NULL) {
		memmove(&d->ev[at + 1], &d->ev[at],
		    (d->nev - at) * sizeof *d->ev);
		d->nev++;
		e = &d->ev[at];
		memset(e, 0, sizeof *e);
		e->dot = dot;
		uint32_t r;
		e->r = rep_find(d, &dot.replica, &r) == 0 ? r : UINT32_MAX;
	}
	e->v = v;
	e->cap = cap;
	size_t i = 0;
	while (i < e->n && bytes_cmp(e->v[i].bytes, e->v[i].len, b, len) < 0)
		i++;
	memmove(&e->v[i + 1], &e->v[i], (e->n - i) * sizeof *e->v);
	e->v[i] = (logent){ copy, len };
	e->n++;
	e->bytes += len;
	d->ev_bytes += len;
	if (e->r != UINT32_MAX)
		d->rs[e->r].ev_bytes += len;
	return 1;
}

/* Free one variant's bytes and take them off the counts. */
static void
evid_drop_bytes(crdt_doc *d, evid *e, size_t i)
{
	size_t len = e->v[i].len;
	crdt__free(&d->cfg.alloc, e->v[i].bytes, len);
	e->bytes -= len;
	d->ev_bytes -= len;
	if (e->r != UINT32_MAX)
		d->rs[e->r].ev_bytes -= len;
}

/* Free dot entry `e` (its variants and vector). */
static void
evid_free(crdt_doc *d, evid *e)
{
	for (size_t j = 0; j < e->n; j++)
		evid_drop_bytes(d, e, j);
	crdt__free(&d->cfg.alloc, e->v, e->cap * sizeof *e->v);
}

/* Remove variant `b` of `dot`; an entry left with one variant is no
 * evidence of anything and goes too. */
static void
evid_remove(crdt_doc *d, crdt_dot dot, const uint8_t *b, size_t len)
{
	size_t at;
	evid *e = evid_find(d, dot, &at);
	if (e == NULL)
		return;
	for (size_t i = 0; i < e->n; i++) {
		if (bytes_cmp(e->v[i].bytes, e->v[i].len, b, len) != 0)
			continue;
		evid_drop_bytes(d, e, i);
		memmove(&e->v[i], &e->v[i + 1], (e->n - i - 1) * sizeof *e->v);
		e->n--;
		break;
	}
	if (e->n <= 1) {
		evid_free(d, e);
		memmove(&d->ev[at], &d->ev[at + 1],
		    (d->nev - at - 1) * sizeof *d->ev);
		d->nev--;
	}
}

/* Drop the dots left with a single variant (see equivocation()). */
static void
evid_prune(crdt_doc *d)
{
	size_t k = 0;
	for (size_t i = 0; i < d->nev; i++) {
		evid *e = &d->ev[i];
		if (e->n >= 2) {
			d->ev[k++] = *e;
			continue;
		}
		evid_free(d, e);
	}
	d->nev = k;
}

/*
 * A message whose dot is already applied. Byte-identical: a duplicate.
 * Different: an equivocation. The resolution must not depend on which
 * half arrived first, and nothing already applied can be taken back, so
 * every replica applies the union of both halves' ops (CRDT ops commute
 * and are idempotent), keeps both halves as evidence (saved in snapshots,
 * sent in every sync DATA frame so the other halves travel too) and
 * reports them. A variant is a write like any other: it is authorised by
 * its own causal past, so a revoked writer cannot write by re-signing an
 * old dot. Detection needs the first half in the log or the evidence; a
 * variant whose dependencies are not all here is dropped, as nobody
 * applied it yet (a buffered one waits for them, see release()).
 */
static int
equivocation(crdt_doc *d, msgview *mv, uint32_t s, void *caller,
    bool evidence)
{
	crdt_dot dot = { mv->sender, mv->counter };
	const uint8_t *first = NULL;
	size_t flen = 0, at;
	const rstate *r = &d->rs[s];
	const uint8_t *bytes = mv->bytes;
	size_t len = (size_t)(mv->end - mv->bytes);

	if (in_log(r, mv->counter)) {
		const logent *e = &r->log[r->log_start +
		    (mv->counter - r->log_lo)];
		if (e->len == len && memcmp(e->bytes, bytes, len) == 0)
			return 0;
		first = e->bytes;
		flen = e->len;
	}
	evid *ev = evid_find(d, dot, &at);
	/* Nothing to compare with (the dot came in a snapshot, or left the
	 * log): a duplicate, unless the variant comes in an evidence list,
	 * which carries every variant of the dot. Then apply it like the
	 * others (the union) and keep it; evid_prune() drops a dot left with
	 * one variant. */
	if (first == NULL && ev == NULL && !evidence)
		return 0;
	if (evid_has(ev, bytes, len))
		return 0;
	bool need_first = first != NULL && !evid_has(ev, first, flen);
	CRDT_TRY(evid_fits(d, dot, len + (need_first ? flen : 0),
	    need_first ? 2 : 1));
	CRDT_TRY(open_msg(d, mv, true));
	uint64_t listed = 0, causal = adm_at(d, s, mv->counter - 1);
	for (size_t i = 0; i < mv->ndeps; i++) {
		uint32_t ri;
		if (rep_find(d, &d->sdeps[i].id, &ri) != 0 ||
		    d->rs[ri].vc < d->sdeps[i].c)
			return 0;
		if (d->has_admin && ri == d->admin_idx)
			listed = d->sdeps[i].c;
		causal = CRDT_MAX(causal, adm_at(d, ri, d->sdeps[i].c));
	}
	int fadded = 0;
	if (first != NULL) {
		fadded = evid_add(d, dot, first, flen);
		if (fadded < 0)
			return fadded;
	}
	int added = evid_add(d, dot, bytes, len);
	if (added < 0) {
		if (fadded == 1)
			evid_remove(d, dot, first, flen);
		return added;
	}
	ingest in = { s, mv->counter, mv->hlc, bytes, len, mv->payload,
		mv->plen, CRDT_UPDATE_REMOTE, caller, listed, causal, true,
		first, flen };
	int rc = apply_core(d, &in);
	if (rc < 0) {
		/* Refused: the variant is not evidence of anything, and
		 * nothing changed. */
		evid_remove(d, dot, bytes, len);
		if (fadded == 1)
			evid_remove(d, dot, first, flen);
		return rc;
	}
	return 0;
}

/* Is `b` byte-identical to buffered message m or a variant chained to it? */
static bool
buffered_copy(const crdt_doc *d, uint32_t m, const uint8_t *b, size_t len,
    size_t *nvar)
{
	*nvar = 0;
	for (; m != UINT32_MAX; m = d->bm[m].next_var) {
		const bmsg *x = &d->bm[m];
		if (x->len == len && memcmp(x->bytes, b, len) == 0)
			return true;
		++*nvar;
	}
	return false;
}

/*
 * Authorise before anything is interned or buffered, when that can be
 * decided now: the allowlist as of the admin counter a message lists is
 * known once we hold the admin's history up to it, and it can only be
 * refused later, never allowed (see authorise()). So a non-member's
 * message is refused here, and its made-up dependencies and bytes never
 * reach the replica table or the buffer. A message listing admin history
 * we lack waits, bounded per sender (buffer_msg).
 */
static int
admit_early(crdt_doc *d, const msgview *mv)
{
	if (!d->has_admin || is_relay(d))
		return 0;
	uint64_t listed = 0;
	for (size_t i = 0; i < mv->ndeps; i++)
		if (crdt_replica_id_cmp(&d->sdeps[i].id, &d->admin) == 0)
			listed = d->sdeps[i].c;
	if (listed > d->rs[d->admin_idx].vc)
		return 0;
	return authorise(d, &mv->sender, listed, 0);
}

/*
 * The ingest pipeline for one message from a peer (docs/security.md,
 * "Ingest"): bounded decode (parse_msg), authenticate (open_msg:
 * signature, AEAD), authorise what can be decided now (admit_early),
 * admit (duplicate and equivocation against the log, the evidence and the
 * buffer), then apply (apply_core) or buffer, then events.
 */
static int
receive_msg(crdt_doc *d, const void *bytes, size_t len, void *caller,
    bool evidence)
{
	msgview mv;
	uint32_t s;
	dep *deps;
	uint32_t head = UINT32_MAX;

	CRDT_TRY(parse_msg(d, bytes, len, &mv, false));
	/* Cheap duplicate test before any allocation. */
	bool known = rep_find(d, &mv.sender, &s) == 0;
	if (known && mv.counter <= d->rs[s].vc)
		return equivocation(d, &mv, s, caller, evidence);
	if (known && d->ndots > 0) {
		dotslot *sl = dots_find(d, s, mv.counter);
		size_t nvar;
		if (sl != NULL) {
			if (buffered_copy(d, sl->msg, bytes, len, &nvar))
				return 0;
			/* A second half while the first waits: both wait,
			 * and whichever is applied first, the other joins as
			 * an equivocation, on every replica alike. */
			if (nvar >= d->cfg.max_variants)
				return CRDT_ETOOBIG;
			head = sl->msg;
		}
	}
	CRDT_TRY(open_msg(d, &mv, true));
	CRDT_TRY(admit_early(d, &mv));
	size_t nrs0 = d->nrs;
	int irc = intern_deps(d, &mv, &s, known, &deps);
	if (irc < 0) {
		unintern_to(d, nrs0);
		return irc;
	}
	bool ready = d->rs[s].vc == mv.counter - 1;
	for (size_t i = 0; ready && i < mv.ndeps; i++)
		ready = d->rs[deps[i].r].vc >= deps[i].c;
	int rc;
	if (ready) {
		rc = apply_msg(d, s, mv.counter, mv.hlc, bytes, len,
		    mv.payload, mv.plen, CRDT_UPDATE_REMOTE, caller,
		    listed_admin(d, deps, mv.ndeps),
		    causal_admin(d, s, mv.counter, deps, mv.ndeps));
		if (rc == 0)
			rc = release(d, s);
	} else {
		/* Buffered bytes must be known good: validate now (a relay
		 * cannot read them; it checked the signature). */
		rc = mv.payload != NULL ? validate_ops(d, &mv) : 0;
		if (rc == 0)
			rc = buffer_msg(d, bytes, len, s, mv.counter, deps,
			    mv.ndeps, caller, head);
	}
	crdt__free(&d->cfg.alloc, deps, mv.ndeps * sizeof *deps);
	/* Refused before anything referred to them (an applied message that
	 * then failed to release others keeps its sender: it is in). */
	if (rc < 0 && d->rs[s].vc < mv.counter && !dots_find(d, s, mv.counter))
		unintern_to(d, nrs0);
	return rc;
}

static int
receive_one(crdt_doc *d, const void *bytes, size_t len, void *caller)
{
	return receive_msg(d, bytes, len, caller, false);
}

int
crdt_doc_receive(crdt_doc *d, const void *msg, size_t len, void *caller)
{
	if (d == NULL || msg == NULL)
		return CRDT_EINVAL;
	if (d->in_txn)
		return CRDT_ESTATE;
	return receive_one(d, msg, len, caller);
}

size_t
crdt_doc_buffered(const crdt_doc *d)
{
	return d ? d->nbuffered : 0;
}

uint64_t
crdt_doc_hlc(const crdt_doc *d)
{
	return d ? crdt_hlc_last(&d->clock) : 0;
}

int
crdt_doc_vclock(const crdt_doc *d, crdt_vclock **out)
{
	crdt_vclock *vc;

	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt_vclock_new(&d->cfg, &vc));
	for (size_t i = 0; i < d->nrs; i++) {
		int rc = crdt_vclock_set(vc, &d->rs[i].id, d->rs[i].vc);
		if (rc < 0) {
			crdt_vclock_free(vc);
			return rc;
		}
	}
	*out = vc;
	return 0;
}

int
crdt_doc_missing(const crdt_doc *d, crdt_vclock **out)
{
	crdt_vclock *vc;

	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	CRDT_TRY(crdt_vclock_new(&d->cfg, &vc));
	for (size_t i = 0; i < d->nrs; i++) {
		const rstate *r = &d->rs[i];
		uint64_t top = 0;
		for (size_t j = 0; j < r->nheap; j++)
			top = CRDT_MAX(top, r->heap[j].c);
		int rc = crdt_vclock_set(vc, &r->id, top);
		if (rc < 0) {
			crdt_vclock_free(vc);
			return rc;
		}
	}
	*out = vc;
	return 0;
}

/* ---------------------------------------------------------------- */
/* transactions                                                     */

int
crdt_doc_begin(crdt_doc *d)
{
	if (d == NULL)
		return CRDT_EINVAL;
	if (d->in_txn)
		return CRDT_ESTATE;
	d->in_txn = true;
	d->txn_serial++;
	crdt_buf_clear(&d->stage);
	d->stage_ops = 0;
	return 0;
}

void
crdt_doc_abort(crdt_doc *d)
{
	if (d == NULL)
		return;
	d->in_txn = false;
	crdt_buf_clear(&d->stage);
	d->stage_ops = 0;
}

/* What this replica has applied of the admin's messages. */
static uint64_t
own_admin(const crdt_doc *d)
{
	uint32_t ai;
	if (!d->has_admin || rep_find(d, &d->admin, &ai) != 0)
		return 0;
	return d->rs[ai].vc;
}

static int
dep_id_cmp(const void *x, const void *y)
{
	return crdt_replica_id_cmp(&((const iddep *)x)->id,
	    &((const iddep *)y)->id);
}

/* Seal `plain` (n bytes) as [epoch, nonce, ciphertext] with the bytes
 * of `out` from `mark` on (the header) as associated data. */
static int
w_sealed(crdt_doc *d, crdt_buf *out, size_t mark, const uint8_t *plain,
    size_t n)
{
	const epoch_key *k = find_key(d, d->cur_epoch);
	uint8_t nonce[CRDT__NONCE_BYTES], adbuf[32];
	const uint8_t *ad;
	size_t adlen;
	if (k == NULL)
		return CRDT_ENOKEY;
	/* The header, up to the payload, bound to the document. */
	CRDT_TRY(crdt__env_ad(adbuf, CRDT__DOC_FORMAT_VERSION, &d->cfg.doc_id,
	    out->data + mark, out->len - mark, &ad, &adlen));
	CRDT_TRY(crdt__random(nonce, sizeof nonce));
	CRDT_TRY(crdt__w_array(out, 3));
	CRDT_TRY(crdt__w_uint(out, k->epoch));
	CRDT_TRY(crdt__w_bin(out, nonce, sizeof nonce));
	CRDT_TRY(crdt__w_bin_header(out, n + CRDT__TAG_BYTES));
	/* Room for the ciphertext first: appending may move out->data. */
	size_t at = out->len;
	CRDT_TRY(crdt_buf_append(out, plain, n));
	CRDT_TRY(crdt_buf_append(out, nonce, CRDT__TAG_BYTES));
	return crdt__aead_seal(out->data + at, plain, n, ad, adlen, nonce,
	    k->key);
}

/* The auth slot: nil, or [public key, Ed25519 signature of the
 * personalised BLAKE2b-256 of the message bytes before this slot]. */
static int
w_auth(const crdt_doc *d, crdt_buf *out, size_t mark)
{
	uint8_t h[32], sig[CRDT__SIG_BYTES];
	if (d->ident == NULL)
		return crdt__w_nil(out);
	CRDT_TRY(crdt__env_sig_digest(h, CRDT__DOC_FORMAT_VERSION,
	    &d->cfg.doc_id, out->data + mark, out->len - mark));
	crdt__sign(sig, h, sizeof h, crdt__identity_sk(d->ident));
	CRDT_TRY(crdt__w_array(out, 2));
	CRDT_TRY(crdt__w_bin(out, crdt__identity_pk(d->ident),
	    CRDT_PUBLIC_KEY_BYTES));
	return crdt__w_bin(out, sig, sizeof sig);
}

static int
encode_msg(crdt_doc *d, crdt_buf *out, uint64_t counter, uint64_t hlc,
    size_t *ndeps)
{
	size_t mark = out->len;
	/* Deps: only the entries that grew since our previous message. */
	void *v = d->sdeps;
	CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &d->capsdeps, d->ndirty,
	    sizeof *d->sdeps));
	d->sdeps = v;
	size_t n = 0;
	for (size_t i = 0; i < d->ndirty; i++) {
		const rstate *r = &d->rs[d->dirty[i]];
		if (r->vc > r->sent)
			d->sdeps[n++] = (iddep){ r->id, r->vc };
	}
	/* With an allowlist, always name the admin entry: receivers judge
	 * this message by the allowlist as of that counter. */
	uint64_t adm = own_admin(d);
	if (adm > 0 && crdt_replica_id_cmp(&d->self, &d->admin) != 0) {
		bool listed = false;
		for (size_t i = 0; i < n; i++)
			listed |= crdt_replica_id_cmp(&d->sdeps[i].id,
			    &d->admin) == 0;
		if (!listed) {
			v = d->sdeps;
			CRDT_TRY(crdt__grow(&d->cfg.alloc, &v, &d->capsdeps,
			    n + 1, sizeof *d->sdeps));
			d->sdeps = v;
			d->sdeps[n++] = (iddep){ d->admin, adm };
		}
	}
	if (n > 1)
		qsort(d->sdeps, n, sizeof *d->sdeps, dep_id_cmp);
	CRDT_TRY(crdt__w_header(out, KIND_MSG, 6));
	CRDT_TRY(crdt__w_id(out, &d->self));
	CRDT_TRY(crdt__w_uint(out, counter));
	CRDT_TRY(crdt__w_uint(out, hlc));
	CRDT_TRY(crdt__w_array(out, 2 * n));
	for (size_t i = 0; i < n; i++) {
		CRDT_TRY(crdt__w_id(out, &d->sdeps[i].id));
		CRDT_TRY(crdt__w_uint(out, d->sdeps[i].c));
	}
	/* payload = bin(array(nops) ++ staged ops) */
	uint8_t hdr[5];
	size_t hl;
	if (d->stage_ops < 16) {
		hdr[0] = (uint8_t)(0x90 | d->stage_ops);
		hl = 1;
	} else if (d->stage_ops <= UINT16_MAX) {
		hdr[0] = 0xdc;
		hdr[1] = (uint8_t)(d->stage_ops >> 8);
		hdr[2] = (uint8_t)d->stage_ops;
		hl = 3;
	} else {
		if (d->stage_ops > UINT32_MAX)
			return CRDT_ETOOBIG;
		hdr[0] = 0xdd;
		for (int i = 0; i < 4; i++)
			hdr[1 + i] = (uint8_t)(d->stage_ops >> (24 - 8 * i));
		hl = 5;
	}
	size_t plen = hl + d->stage.len;
	if (d->encrypted) {
		crdt_buf_clear(&d->plain);
		CRDT_TRY(crdt_buf_append(&d->plain, hdr, hl));
		CRDT_TRY(crdt_buf_append(&d->plain, d->stage.data,
		    d->stage.len));
		CRDT_TRY(w_sealed(d, out, mark, d->plain.data, d->plain.len));
	} else {
		CRDT_TRY(crdt__w_bin_header(out, plen));
		CRDT_TRY(crdt_buf_append(out, hdr, hl));
		CRDT_TRY(crdt_buf_append(out, d->stage.data, d->stage.len));
	}
	CRDT_TRY(w_auth(d, out, mark));
	*ndeps = n;
	return 0;
}

int
crdt_doc_commit(crdt_doc *d, crdt_buf *msg_out)
{
	if (d == NULL || msg_out == NULL)
		return CRDT_EINVAL;
	if (!d->in_txn || (d->signed_mode && d->ident == NULL) ||
	    is_relay(d))
		return CRDT_ESTATE;
	rstate *me = &d->rs[d->self_idx];
	if (me->vc == UINT64_MAX)
		return CRDT_EOVERFLOW;
	uint64_t counter = me->vc + 1;
	crdt_hlc saved = d->clock;
	uint64_t hlc;
	CRDT_TRY(crdt_hlc_now(&d->clock, &hlc));
	if (d->stage_ops > 0 && hlc > UINT64_MAX - (d->stage_ops - 1)) {
		d->clock = saved;
		return CRDT_EOVERFLOW;
	}
	size_t mark = msg_out->len, ndeps = 0;
	int rc = encode_msg(d, msg_out, counter, hlc, &ndeps);
	if (rc == 0 && msg_out->len - mark > d->cfg.limits.max_bytes)
		rc = CRDT_ETOOBIG;
	if (rc == 0) {
		const uint8_t *m = msg_out->data + mark;
		size_t mlen = msg_out->len - mark;
		msgview mv;
		/* Apply through the same path as a remote message, so the
		 * local state is exactly what every receiver will get. */
		rc = parse_msg(d, m, mlen, &mv, false);
		if (rc == 0)
			rc = open_msg(d, &mv, false);
		if (rc == 0)
			rc = apply_msg(d, d->self_idx, counter, hlc, m, mlen,
			    mv.payload, mv.plen, CRDT_UPDATE_LOCAL, NULL,
			    own_admin(d), 0);
	}
	if (rc < 0) {
		d->clock = saved;
		msg_out->len = mark;
		return rc;
	}
	for (size_t i = 0; i < d->ndirty; i++) {
		rstate *r = &d->rs[d->dirty[i]];
		r->sent = r->vc;
		r->dirty = false;
	}
	d->ndirty = 0;
	crdt_doc_abort(d);
	return release(d, d->self_idx);
}

/*
 * Staging: every mutation appends one op to the open transaction, or, with
 * none open, runs as a one-op transaction. stage_open/stage_close carry
 * that logic for all object types.
 */
static int
stage_open(crdt_doc *d, crdt_buf *msg_out, bool *one, size_t *mark)
{
	if (d->in_txn == (msg_out != NULL))
		return CRDT_ESTATE;
	*one = !d->in_txn;
	if (*one)
		CRDT_TRY(crdt_doc_begin(d));
	*mark = d->stage.len;
	return 0;
}

static int
stage_close(crdt_doc *d, bool one, size_t mark, int rc, crdt_buf *msg_out)
{
	if (rc < 0) {
		d->stage.len = mark;
		if (one)
			crdt_doc_abort(d);
		return rc;
	}
	d->stage_ops++;
	if (!one)
		return 0;
	rc = crdt_doc_commit(d, msg_out);
	if (rc < 0)
		crdt_doc_abort(d);
	return rc;
}

static int
stage_op(crdt_doc *d, uint32_t on, crdt_obj_type type, const void *a,
    size_t alen, bool bpresent, const void *b, size_t blen,
    crdt_buf *msg_out)
{
	bool one;
	size_t mark;

	if (d == NULL || (a == NULL && alen != 0) ||
	    (bpresent && b == NULL && blen != 0))
		return CRDT_EINVAL;
	if (on >= d->nobjs || d->objs[on].type != type || d->objs[on].acl)
		return CRDT_ESCHEMA;
	if (alen > d->cfg.limits.max_value_bytes ||
	    blen > d->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	CRDT_TRY(stage_open(d, msg_out, &one, &mark));
	crdt_buf *s = &d->stage;
	int rc = crdt__w_array(s, op_arity(type));
	if (rc == 0)
		rc = crdt__w_uint(s, on);
	if (rc == 0 && type == CRDT_OBJ_GSET)
		rc = crdt__w_bin(s, a, alen);
	else if (rc == 0 && type == CRDT_OBJ_LWW)
		rc = bpresent ? crdt__w_bin(s, a, alen) : crdt__w_nil(s);
	else if (rc == 0) {
		rc = crdt__w_bin(s, a, alen);
		if (rc == 0)
			rc = bpresent ? crdt__w_bin(s, b, blen) :
			    crdt__w_nil(s);
	}
	return stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_gset_add(crdt_doc *d, uint32_t on, const void *elem, size_t len,
    crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_GSET, elem, len, false, NULL, 0,
	    msg_out);
}

int
crdt_doc_lww_set(crdt_doc *d, uint32_t on, const void *value, size_t len,
    crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_LWW, value, len, true, NULL, 0,
	    msg_out);
}

int
crdt_doc_lww_clear(crdt_doc *d, uint32_t on, crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_LWW, NULL, 0, false, NULL, 0,
	    msg_out);
}

int
crdt_doc_map_set(crdt_doc *d, uint32_t on, const void *key, size_t klen,
    const void *value, size_t vlen, crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_MAP, key, klen, true, value, vlen,
	    msg_out);
}

int
crdt_doc_map_remove(crdt_doc *d, uint32_t on, const void *key, size_t klen,
    crdt_buf *msg_out)
{
	return stage_op(d, on, CRDT_OBJ_MAP, key, klen, false, NULL, 0,
	    msg_out);
}

/* ---------------------------------------------------------------- */
/* snapshots                                                        */

static int
rs_id_cmp(const void *x, const void *y)
{
	const rstate *a = *(const rstate *const *)x;
	const rstate *b = *(const rstate *const *)y;
	return crdt_replica_id_cmp(&a->id, &b->id);
}

/* [id, c, id, c, ...] of every non-zero entry, ascending by ID. */
static int
w_vc_pairs(const crdt_doc *d, crdt_buf *out)
{
	const crdt_allocator *a = &d->cfg.alloc;
	const rstate **v = crdt__malloc(a, d->nrs * sizeof *v);
	size_t n = 0;
	int rc = 0;

	if (v == NULL)
		return CRDT_ENOMEM;
	for (size_t i = 0; i < d->nrs; i++)
		if (d->rs[i].vc > 0)
			v[n++] = &d->rs[i];
	if (n > 1)
		qsort(v, n, sizeof *v, rs_id_cmp);
	rc = crdt__w_array(out, 2 * n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = crdt__w_id(out, &v[i]->id);
		if (rc == 0)
			rc = crdt__w_uint(out, v[i]->vc);
	}
	crdt__free(a, v, d->nrs * sizeof *v);
	return rc;
}

/* [stamp, ...]: each clock entry's greatest op stamp, in the clock's
 * order (ascending by ID). */
static int
w_stamps(const crdt_doc *d, crdt_buf *out)
{
	const crdt_allocator *a = &d->cfg.alloc;
	const rstate **v = crdt__malloc(a, d->nrs * sizeof *v);
	size_t n = 0;
	int rc;

	if (v == NULL)
		return CRDT_ENOMEM;
	for (size_t i = 0; i < d->nrs; i++)
		if (d->rs[i].vc > 0)
			v[n++] = &d->rs[i];
	if (n > 1)
		qsort(v, n, sizeof *v, rs_id_cmp);
	rc = crdt__w_array(out, n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = crdt__w_uint(out, v[i]->stamp);
	crdt__free(a, v, d->nrs * sizeof *v);
	return rc;
}

/* Whether any replica's admin_seen is non-zero: the snapshot then has the
 * optional admin_seen field (absent otherwise, so every snapshot of a
 * document without an allowlist keeps its layout). */
static bool
any_admin_seen(const crdt_doc *d)
{
	for (size_t i = 0; i < d->nrs; i++)
		if (d->rs[i].admin_seen > 0)
			return true;
	return false;
}

/* [id, admin_seen, ...] of every non-zero entry, ascending by ID. This is
 * permission state (security.md, Write permissions): a replica that
 * catches up by snapshot must judge a writer's next message with what
 * the writer's earlier messages established, as one that applied them. */
static int
w_admin_seen(const crdt_doc *d, crdt_buf *out)
{
	const crdt_allocator *a = &d->cfg.alloc;
	const rstate **v = crdt__malloc(a, d->nrs * sizeof *v);
	size_t n = 0;
	int rc = 0;

	if (v == NULL)
		return CRDT_ENOMEM;
	for (size_t i = 0; i < d->nrs; i++)
		if (d->rs[i].admin_seen > 0)
			v[n++] = &d->rs[i];
	if (n > 1)
		qsort(v, n, sizeof *v, rs_id_cmp);
	rc = crdt__w_array(out, 2 * n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = crdt__w_id(out, &v[i]->id);
		if (rc == 0)
			rc = crdt__w_uint(out, v[i]->admin_seen);
	}
	crdt__free(a, v, d->nrs * sizeof *v);
	return rc;
}

static int
encode_obj(const dobj *o, crdt_buf *out)
{
	switch (o->type) {
	case CRDT_OBJ_GSET:
		return crdt_gset_encode(o->o, out);
	case CRDT_OBJ_LWW:
		return crdt_lww_encode(o->o, out);
	case CRDT_OBJ_MAP:
		return crdt_lww_map_encode(o->o, out);
	case CRDT_OBJ_CHAT:
		return crdt__chat_encode(o->o, out);
	}
	return CRDT_EINVAL;
}

/* A buffered message and its dot, for sorting without the document. */
typedef struct bm_sort {
	crdt_dot dot;
	const bmsg *m;
} bm_sort;

static int
bm_cmp(const void *x, const void *y)
{
	const bm_sort *a = x, *b = y;
	int c = crdt_dot_cmp(a->dot, b->dot);
	/* Variants of one dot (both halves waiting): by bytes. */
	return c != 0 ? c :
			bytes_cmp(a->m->bytes, a->m->len, b->m->bytes, b->m->len);
}

static int
save_body(const crdt_doc *d, crdt_buf *out, crdt_buf *tmp)
{
	const crdt_allocator *a = &d->cfg.alloc;
	bool seen = any_admin_seen(d);

	CRDT_TRY(crdt__w_header(out, KIND_SNAP, seen ? 7 : 6));
	CRDT_TRY(crdt__w_bin(out, d->cfg.doc_id.bytes, CRDT_DOC_ID_BYTES));
	CRDT_TRY(w_vc_pairs(d, out));
	CRDT_TRY(w_stamps(d, out));
	CRDT_TRY(crdt__w_uint(out, d->hlc_max));
	CRDT_TRY(crdt__w_array(out, d->nobjs));
	for (size_t i = 0; i < d->nobjs; i++) {
		const dobj *o = &d->objs[i];
		crdt_buf_clear(tmp);
		CRDT_TRY(encode_obj(o, tmp));
		CRDT_TRY(crdt__w_array(out, 3));
		CRDT_TRY(crdt__w_bin(out, o->name, strlen(o->name)));
		CRDT_TRY(crdt__w_uint(out, (uint64_t)o->type));
		CRDT_TRY(crdt__w_bin(out, tmp->data, tmp->len));
	}
	bm_sort *v = NULL;
	if (d->nbuffered > 0) {
		v = crdt__malloc(a, d->nbuffered * sizeof *v);
		if (v == NULL)
			return CRDT_ENOMEM;
	}
	size_t n = 0;
	for (size_t i = 0; i < d->nbm; i++)
		if (d->bm[i].live) {
			const bmsg *m = &d->bm[i];
			v[n++] = (bm_sort){ { d->rs[m->sender].id, m->counter },
				m };
		}
	if (n > 1)
		qsort(v, n, sizeof *v, bm_cmp);
	int rc = crdt__w_array(out, n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = crdt__w_bin(out, v[i].m->bytes, v[i].m->len);
	crdt__free(a, v, d->nbuffered * sizeof *v);
	if (rc == 0 && seen)
		rc = w_admin_seen(d, out);
	return rc == 0 ? w_evidence(d, out) : rc;
}

int
crdt_doc_save(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf tmp;

	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	if (is_relay(d))
		return CRDT_ESTATE; /* no content to snapshot */
	crdt_buf_init(&tmp, &d->cfg.alloc);
	size_t mark = out->len;
	int rc = save_body(d, out, &tmp);
	crdt_buf_fini(&tmp);
	if (rc < 0)
		out->len = mark;
	return rc;
}

/* Smallest message as an item of a snapshot list: bin8 header (2) and
 * [1, 5, id (18), counter, hlc, [], bin (2), nil] (27). Checked against
 * the bytes left before sizing the list's arrays. */
#define MIN_MSG_BIN 29

/* Everything a snapshot holds, decoded but not yet merged. */
typedef struct snapview {
	iddep *vc;
	size_t nvc;
	uint64_t *stamps; /* per clock entry (version 2), or NULL */
	uint64_t hlc_max;
	void **tmp; /* one decoded object per schema entry */
	bool *changed;
	const uint8_t **bp; /* buffered messages */
	size_t *bl;
	size_t nb;
	uint32_t *jumped;
	size_t njumped;
	const uint8_t **ep; /* equivocation evidence */
	size_t *el;
	size_t ne;
	iddep *seen; /* admin_seen per replica (allowlist only) */
	size_t nseen;
} snapview;

static int
decode_obj(const crdt_doc *d, const dobj *like, const uint8_t *p, size_t n,
    void **o)
{
	switch (like->type) {
	case CRDT_OBJ_CHAT:
		return crdt__chat_decode(like->o, p, n, (crdt_chat **)o);
	case CRDT_OBJ_GSET:
		return crdt_gset_decode(&d->cfg, &d->self, p, n,
		    (crdt_gset **)o);
	case CRDT_OBJ_LWW:
		return crdt_lww_decode(&d->cfg, &d->self, p, n,
		    (crdt_lww **)o);
	case CRDT_OBJ_MAP:
		return crdt_lww_map_decode(&d->cfg, &d->self, p, n,
		    (crdt_lww_map **)o);
	}
	return CRDT_EINVAL;
}

static void
snapview_free(const crdt_doc *d, snapview *sv)
{
	const crdt_allocator *a = &d->cfg.alloc;
	if (sv->tmp != NULL) {
		for (size_t i = 0; i < d->nobjs; i++) {
			dobj o;
			memset(&o, 0, sizeof o);
			o.type = d->objs[i].type;
			o.o = sv->tmp[i];
			obj_free(&o);
		}
	}
	crdt__free(a, sv->tmp, d->nobjs * sizeof *sv->tmp);
	crdt__free(a, sv->changed, d->nobjs * sizeof *sv->changed);
	crdt__free(a, sv->vc, sv->nvc * sizeof *sv->vc);
	if (sv->stamps != NULL)
		crdt__free(a, sv->stamps, sv->nvc * sizeof *sv->stamps);
	crdt__free(a, sv->bp, sv->nb * sizeof *sv->bp);
	crdt__free(a, sv->bl, sv->nb * sizeof *sv->bl);
	crdt__free(a, sv->jumped, sv->nvc * sizeof *sv->jumped);
	crdt__free(a, sv->ep, sv->ne * sizeof *sv->ep);
	crdt__free(a, sv->el, sv->ne * sizeof *sv->el);
	crdt__free(a, sv->seen, sv->nseen * sizeof *sv->seen);
	memset(sv, 0, sizeof *sv);
}

/* Read [id, c, ...] ascending into a fresh array. */
static int
rd_vc_pairs(const crdt_doc *d, crdt__rd *r, iddep **out, size_t *nout)
{
	size_t n;

	CRDT_TRY(crdt__rd_array(r, &n));
	if (n % 2 != 0)
		return CRDT_EMALFORMED;
	n /= 2;
	CRDT_TRY(crdt__rd_fits(r, n, CRDT__MIN_ID_UINT));
	iddep *v = crdt__malloc(&d->cfg.alloc, n * sizeof *v);
	if (v == NULL)
		return CRDT_ENOMEM;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = crdt__rd_id(r, &v[i].id);
		if (rc == 0)
			rc = crdt__rd_uint(r, &v[i].c);
		if (rc == 0 && (v[i].c == 0 || (i > 0 &&
		    crdt_replica_id_cmp(&v[i - 1].id, &v[i].id) >= 0)))
			rc = CRDT_EMALFORMED;
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

/* The snapshot's clock entry for `id` (0 if none); sv->vc is ascending. */
static uint64_t
sv_clock(const snapview *sv, const crdt_replica_id *id)
{
	size_t lo = 0, hi = sv->nvc;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = crdt_replica_id_cmp(&sv->vc[mid].id, id);
		if (c == 0)
			return sv->vc[mid].c;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* The optional admin_seen field: present only when non-empty (one
 * encoding per state), only with an allowlist, and each entry as a
 * message would leave it: a replica the snapshot's clock holds messages
 * of, at most the admin counter that clock holds. */
static int
rd_admin_seen(crdt_doc *d, crdt__rd *r, snapview *sv)
{
	CRDT_TRY(rd_vc_pairs(d, r, &sv->seen, &sv->nseen));
	if (sv->nseen == 0 || !d->has_admin)
		return CRDT_EMALFORMED;
	uint64_t admin = sv_clock(sv, &d->admin);
	for (size_t i = 0; i < sv->nseen; i++)
		if (sv->seen[i].c > admin ||
		    sv_clock(sv, &sv->seen[i].id) == 0)
			return CRDT_EMALFORMED;
	return 0;
}

static int
parse_snap(crdt_doc *d, const void *bytes, size_t len, snapview *sv)
{
	const crdt_allocator *a = &d->cfg.alloc;
	crdt__rd r;
	size_t n;

	CRDT_TRY(crdt__rd_init(&r, &d->cfg.limits, bytes, len));
	unsigned ver;
	CRDT_TRY(crdt__rd_header_v(&r, KIND_SNAP, &n, &ver));
	/* Version 2 adds doc_id; admin_seen is there only when not empty. */
	size_t base = ver == 1 ? 7 : 8;
	if (n != base && n != base + 1)
		return CRDT_EMALFORMED;
	bool has_seen = n == base + 1;
	/* Checked before anything is decoded: another document's state
	 * must not even be interned. A version-1 snapshot names no
	 * document: only an unbound document takes it. */
	if (ver == 1) {
		if (!crdt__doc_id_zero(&d->cfg.doc_id))
			return CRDT_EWRONGDOC;
	} else {
		const uint8_t *docid;
		size_t idlen;
		CRDT_TRY(crdt__rd_bin(&r, &docid, &idlen));
		if (idlen != CRDT_DOC_ID_BYTES)
			return CRDT_EMALFORMED;
		if (memcmp(docid, d->cfg.doc_id.bytes, CRDT_DOC_ID_BYTES) != 0)
			return CRDT_EWRONGDOC;
	}
	CRDT_TRY(rd_vc_pairs(d, &r, &sv->vc, &sv->nvc));
	if (ver >= 2) {
		/* One stamp per clock entry: sized by the clock already
		 * checked, never by a claimed count. */
		CRDT_TRY(crdt__rd_array(&r, &n));
		if (n != sv->nvc)
			return CRDT_EMALFORMED;
		if (n > 0) {
			sv->stamps = crdt__malloc(a, n * sizeof *sv->stamps);
			if (sv->stamps == NULL)
				return CRDT_ENOMEM;
		}
		for (size_t i = 0; i < n; i++)
			CRDT_TRY(crdt__rd_uint(&r, &sv->stamps[i]));
		r.depth--;
	}
	CRDT_TRY(crdt__rd_uint(&r, &sv->hlc_max));
	CRDT_TRY(crdt__rd_array(&r, &n));
	if (n != d->nobjs)
		return CRDT_ESCHEMA;
	sv->tmp = crdt__malloc(a, d->nobjs * sizeof *sv->tmp);
	if (sv->tmp == NULL)
		return CRDT_ENOMEM;
	/* Zero at once: snapview_free walks it whatever fails next. */
	memset(sv->tmp, 0, d->nobjs * sizeof *sv->tmp);
	sv->changed = crdt__malloc(a, d->nobjs * sizeof *sv->changed);
	if (sv->changed == NULL)
		return CRDT_ENOMEM;
	memset(sv->changed, 0, d->nobjs * sizeof *sv->changed);
	for (size_t i = 0; i < d->nobjs; i++) {
		const uint8_t *name, *st;
		size_t nlen, slen;
		uint64_t type;
		CRDT_TRY(crdt__rd_array_n(&r, 3));
		CRDT_TRY(crdt__rd_bin(&r, &name, &nlen));
		CRDT_TRY(crdt__rd_uint(&r, &type));
		CRDT_TRY(crdt__rd_blob(&r, &st, &slen));
		r.depth--;
		const dobj *o = &d->objs[i];
		if (nlen != strlen(o->name) || memcmp(name, o->name, nlen) ||
		    type != (uint64_t)o->type)
			return CRDT_ESCHEMA;
		CRDT_TRY(decode_obj(d, o, st, slen, &sv->tmp[i]));
	}
	r.depth--;
	CRDT_TRY(crdt__rd_array(&r, &n));
	CRDT_TRY(crdt__rd_fits(&r, n, MIN_MSG_BIN));
	sv->bp = crdt__malloc(a, n * sizeof *sv->bp);
	sv->bl = crdt__malloc(a, n * sizeof *sv->bl);
	sv->nb = n;
	if (sv->bp == NULL || sv->bl == NULL)
		return CRDT_ENOMEM;
	crdt_dot prev = { { { 0 } }, 0 };
	for (size_t i = 0; i < n; i++) {
		msgview mv;
		CRDT_TRY(crdt__rd_blob(&r, &sv->bp[i], &sv->bl[i]));
		CRDT_TRY(parse_msg(d, sv->bp[i], sv->bl[i], &mv, true));
		crdt_dot dot = { mv.sender, mv.counter };
		/* Ascending by dot, then bytes: both halves of an
		 * equivocation may wait (see buffer_msg). */
		int dc = i > 0 ? crdt_dot_cmp(prev, dot) : -1;
		if (dc > 0 || (dc == 0 && bytes_cmp(sv->bp[i - 1],
		    sv->bl[i - 1], sv->bp[i], sv->bl[i]) >= 0))
			return CRDT_EMALFORMED;
		prev = dot;
	}
	r.depth--;
	if (has_seen)
		CRDT_TRY(rd_admin_seen(d, &r, sv));
	CRDT_TRY(crdt__rd_array(&r, &n));
	CRDT_TRY(crdt__rd_fits(&r, n, MIN_MSG_BIN));
	sv->ep = crdt__malloc(a, n * sizeof *sv->ep);
	sv->el = crdt__malloc(a, n * sizeof *sv->el);
	sv->ne = n;
	if (sv->ep == NULL || sv->el == NULL)
		return CRDT_ENOMEM;
	CRDT_TRY(rd_evidence(d, &r, n, sv->ep, sv->el));
	CRDT_TRY(crdt__rd_done(&r));
	/* Evidence is kept and served to every sync peer: each variant must
	 * pass what crdt_doc_receive() checks (signature, decryption, every
	 * op), or one forged variant makes every peer refuse our frames. */
	for (size_t i = 0; i < sv->ne; i++) {
		msgview mv;
		CRDT_TRY(parse_msg(d, sv->ep[i], sv->el[i], &mv, true));
	}
	return 0;
}

/* Evidence lists (snapshots and DATA frames): n messages, ascending by
 * (dot, bytes), at least two variants a dot. A lone variant proves
 * nothing, and a list we wrote must load again. */
static int
rd_evidence(crdt_doc *d, crdt__rd *r, size_t n, const uint8_t **ep,
    size_t *el)
{
	crdt_dot prev = { { { 0 } }, 0 };
	const uint8_t *pp = NULL;
	size_t pl = 0, run = 0;
	for (size_t i = 0; i < n; i++) {
		msgview mv;
		const uint8_t *m;
		size_t ml;
		CRDT_TRY(crdt__rd_blob(r, &m, &ml));
		CRDT_TRY(parse_msg(d, m, ml, &mv, false));
		crdt_dot dot = { mv.sender, mv.counter };
		int c = i == 0 ? 1 : crdt_dot_cmp(prev, dot);
		if (c > 0 && i > 0)
			return CRDT_EMALFORMED;
		if (c == 0 && bytes_cmp(pp, pl, m, ml) >= 0)
			return CRDT_EMALFORMED;
		if (c != 0) {
			if (i > 0 && run < 2)
				return CRDT_EMALFORMED;
			run = 0;
		}
		run++;
		prev = dot;
		pp = m;
		pl = ml;
		if (ep != NULL) {
			ep[i] = m;
			el[i] = ml;
		}
	}
	return n > 0 && run < 2 ? CRDT_EMALFORMED : 0;
}

/* Before the commit point: the snapshot's evidence dots that are new
 * here fit the evidence bound (max_buffered_msgs dots), so none is
 * dropped for it after the commit. */
static int
evid_room(crdt_doc *d, const snapview *sv)
{
	size_t fresh = 0, at;
	crdt_dot prev = { { { 0 } }, 0 };
	for (size_t i = 0; i < sv->ne; i++) {
		msgview mv;
		CRDT_TRY(parse_msg(d, sv->ep[i], sv->el[i], &mv, false));
		crdt_dot dot = { mv.sender, mv.counter };
		if ((i == 0 || crdt_dot_cmp(prev, dot) != 0) &&
		    evid_find(d, dot, &at) == NULL)
			fresh++;
		prev = dot;
	}
	if (fresh > 0 && fresh > d->cfg.max_buffered_msgs - CRDT_MIN(d->nev,
	    d->cfg.max_buffered_msgs))
		return CRDT_EBUFFULL;
	return 0;
}

static int
merge_into_tmp(const dobj *o, void *tmp, bool *changed)
{
	switch (o->type) {
	case CRDT_OBJ_GSET:
		CRDT_TRY(crdt_gset_merge(tmp, o->o));
		*changed = !crdt_gset_equal(tmp, o->o);
		return 0;
	case CRDT_OBJ_LWW:
		CRDT_TRY(crdt_lww_merge(tmp, o->o));
		*changed = !crdt_lww_equal(tmp, o->o);
		return 0;
	case CRDT_OBJ_MAP:
		CRDT_TRY(crdt_lww_map_merge(tmp, o->o));
		*changed = !crdt_lww_map_equal(tmp, o->o);
		return 0;
	case CRDT_OBJ_CHAT:
		CRDT_TRY(crdt__chat_merge(tmp, o->o));
		*changed = !crdt__chat_equal(tmp, o->o);
		return 0;
	}
	return CRDT_EINVAL;
}

/*
 * load = parse everything, build the merged objects aside, intern and
 * reserve; only then swap in (nothing after that point can fail). The
 * merged object is snapshot ∪ current, which is current ∪ snapshot:
 * merge is commutative.
 */
static int load_plain(crdt_doc *d, const void *snap, size_t len,
    const void *orig, size_t origlen, void *caller);
static bool is_sealed_snapshot(const uint8_t *b, size_t len);
static int open_sealed_snapshot(crdt_doc *d, const void *bytes, size_t len,
    crdt_buf *plain);

int
crdt_doc_load(crdt_doc *d, const void *snap, size_t len, void *caller)
{
	if (d == NULL || snap == NULL)
		return CRDT_EINVAL;
	/* A relay holds no content: it cannot merge states. */
	if (d->in_txn || is_relay(d))
		return CRDT_ESTATE;
	if (!is_sealed_snapshot(snap, len))
		return load_plain(d, snap, len, snap, len, caller);
	crdt_buf plain;
	crdt_buf_init(&plain, &d->cfg.alloc);
	int rc = open_sealed_snapshot(d, snap, len, &plain);
	if (rc == 0)
		rc = load_plain(d, plain.data, plain.len, snap, len, caller);
	crdt__memzero(plain.data, plain.cap);
	crdt_buf_fini(&plain);
	return rc;
}

/* Listeners see `orig` (the sealed bytes when the input was sealed), so a
 * provider never forwards a decrypted snapshot by accident. */
static int
load_plain(crdt_doc *d, const void *snap, size_t len, const void *orig,
    size_t origlen, void *caller)
{
	snapview sv;
	int rc;

	memset(&sv, 0, sizeof sv);
	rc = parse_snap(d, snap, len, &sv);
	for (size_t i = 0; rc == 0 && i < d->nobjs; i++)
		rc = merge_into_tmp(&d->objs[i], sv.tmp[i], &sv.changed[i]);
	if (rc == 0) {
		sv.jumped = crdt__malloc(&d->cfg.alloc,
		    sv.nvc * sizeof *sv.jumped);
		if (sv.jumped == NULL)
			rc = CRDT_ENOMEM;
	}
	/* Interned last and forgotten on failure: a refused snapshot must
	 * not fill max_replicas with its IDs. */
	size_t nrs0 = d->nrs;
	for (size_t i = 0; rc == 0 && i < sv.nvc; i++) {
		uint32_t ri;
		rc = rep_intern(d, &sv.vc[i].id, &ri);
	}
	if (rc == 0) {
		void *v = d->dirty;
		rc = crdt__grow(&d->cfg.alloc, &v, &d->capdirty, d->nrs,
		    sizeof *d->dirty);
		d->dirty = v;
	}
	if (rc == 0)
		rc = evid_room(d, &sv);
	/* The allowlist index of the merged allowlist, before the commit
	 * point: it is current from the moment the state is. */
	crdt__table acl;
	memset(&acl, 0, sizeof acl);
	if (rc == 0 && d->has_admin)
		rc = acl_build(d, sv.tmp[d->acl_obj], &acl);
	if (rc < 0) {
		unintern_to(d, nrs0);
		snapview_free(d, &sv);
		return rc;
	}
	/* Commit: cannot fail from here, and nothing after it returns an
	 * error (an error return means nothing changed). */
	bool any = false;
	for (size_t i = 0; i < d->nobjs; i++) {
		void *old = d->objs[i].o;
		d->objs[i].o = sv.tmp[i];
		sv.tmp[i] = old; /* freed with the view */
		any |= sv.changed[i];
	}
	for (size_t i = 0; i < sv.nvc; i++) {
		uint32_t ri = 0;
		if (rep_find(d, &sv.vc[i].id, &ri) != 0)
			continue; /* cannot happen: interned above */
		rstate *r = &d->rs[ri];
		if (sv.vc[i].c <= r->vc)
			continue;
		if (r->log_n > 0)
			log_reset(d, ri, sv.vc[i].c + 1);
		else
			r->log_lo = sv.vc[i].c + 1;
		r->vc = sv.vc[i].c;
		(void)mark_dirty(d, ri); /* capacity reserved above */
		sv.jumped[sv.njumped++] = ri;
		any = true;
	}
	for (size_t i = 0; i < sv.nseen; i++) {
		uint32_t ri = 0;
		if (rep_find(d, &sv.seen[i].id, &ri) != 0)
			continue; /* cannot happen: in the clock, interned */
		if (sv.seen[i].c > d->rs[ri].admin_seen)
			d->rs[ri].admin_seen = sv.seen[i].c;
	}
	for (size_t i = 0; sv.stamps != NULL && i < sv.nvc; i++) {
		uint32_t ri = 0;
		if (rep_find(d, &sv.vc[i].id, &ri) != 0)
			continue; /* cannot happen: interned above */
		if (sv.stamps[i] > d->rs[ri].stamp)
			d->rs[ri].stamp = sv.stamps[i];
	}
	if (sv.hlc_max > d->hlc_max)
		d->hlc_max = sv.hlc_max;
	if (d->has_admin)
		acl_replace(d, &acl);
	/* Our own stamps are ours: restore them whatever the device clock
	 * says (a restart with a clock behind the saved stamp must not
	 * stamp new writes below our earlier ones). Others' stamps move the
	 * clock only within the drift bound. */
	if (d->rs[d->self_idx].stamp > d->clock.last)
		d->clock.last = d->rs[d->self_idx].stamp;
	rc = crdt_hlc_update(&d->clock, d->hlc_max, NULL);
	(void)rc; /* beyond the drift bound: keep the clock (clock.h) */
	if (any) {
		d->has_data = true;
		if (d->l.on_update != NULL)
			d->l.on_update(d->l.ud, CRDT_UPDATE_SNAPSHOT, orig,
			    origlen, caller);
		for (size_t i = 0; d->l.on_change != NULL && i < d->nobjs;
		     i++) {
			if (!sv.changed[i])
				continue;
			crdt_change ch;
			memset(&ch, 0, sizeof ch);
			ch.kind = CRDT_CHANGE_RELOADED;
			ch.obj = (uint32_t)i;
			d->l.on_change(d->l.ud, &ch);
		}
	}
	/* Deliver what the new clock unblocks, then re-offer the snapshot's
	 * buffered messages, each like a received one. The snapshot is in:
	 * what fails here (out of memory; a buffered message the buffer has
	 * no room for or the allowlist refuses) is what a later sync brings
	 * again, as for any message refused on receipt, so the load still
	 * succeeds. Ready messages left queued are retried at the next
	 * clock move. */
	for (size_t i = 0; i < sv.njumped; i++)
		(void)release(d, sv.jumped[i]);
	for (size_t i = 0; i < sv.nb; i++)
		(void)receive_one(d, sv.bp[i], sv.bl[i], caller);
	/* The merged state already holds the union of every variant; the
	 * variants were verified by parse_snap() and evid_room() made sure
	 * the dots fit. Out of memory drops a variant: every DATA frame
	 * carries evidence, so sync brings it back. */
	for (size_t i = 0; i < sv.ne; i++) {
		msgview mv;
		if (parse_msg(d, sv.ep[i], sv.el[i], &mv, false) != 0)
			continue;
		crdt_dot dot = { mv.sender, mv.counter };
		/* Room was made before the commit point (evid_room); a
		 * variant over the evidence bounds is not kept, like any
		 * variant past them: the snapshot itself is in. */
		(void)evid_add(d, dot, sv.ep[i], sv.el[i]);
	}
	snapview_free(d, &sv);
	return 0;
}

/* ---------------------------------------------------------------- */
/* sync protocol                                                    */

int
crdt_doc_sync_start(const crdt_doc *d, crdt_buf *out)
{
	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	size_t mark = out->len;
	int rc = crdt__w_header(out, KIND_HELLO, 1);
	if (rc == 0)
		rc = w_vc_pairs(d, out);
	if (rc < 0)
		out->len = mark;
	return rc;
}

/* peer[r] for each of our replicas, from the peer's clock pairs. */
static int
peer_clock(const crdt_doc *d, const iddep *pairs, size_t n, uint64_t **out)
{
	uint64_t *p = crdt__malloc(&d->cfg.alloc, d->nrs * sizeof *p);
	if (p == NULL)
		return CRDT_ENOMEM;
	memset(p, 0, d->nrs * sizeof *p);
	for (size_t i = 0; i < n; i++) {
		uint32_t ri;
		if (rep_find(d, &pairs[i].id, &ri) == 0)
			p[ri] = pairs[i].c;
	}
	*out = p;
	return 0;
}

static bool
in_log(const rstate *r, uint64_t c)
{
	return r->log_n > 0 && c >= r->log_lo && c < r->log_lo + r->log_n;
}

static size_t
evid_variants(const crdt_doc *d)
{
	size_t n = 0;
	for (size_t i = 0; i < d->nev; i++)
		n += d->ev[i].n;
	return n;
}

/* [variant, ...] of every equivocated dot, ascending (dot, bytes). */
static int
w_evidence(const crdt_doc *d, crdt_buf *out)
{
	CRDT_TRY(crdt__w_array(out, evid_variants(d)));
	for (size_t i = 0; i < d->nev; i++)
		for (size_t j = 0; j < d->ev[i].n; j++)
			CRDT_TRY(crdt__w_bin(out, d->ev[i].v[j].bytes,
			    d->ev[i].v[j].len));
	return 0;
}

/*
 * Trust levels (security.md). A snapshot is merged state: nothing in it
 * proves who wrote what. Sync is the channel for untrusted peers, so in
 * signed mode it carries snapshots only when the application opted in
 * (sync_snapshots). In encrypted mode it carries them sealed under the
 * document key, never in plaintext (a keyless peer must read nothing):
 * the key proves a key holder sealed it, which is all that every holder
 * may write anyway unless an allowlist narrows writers to fewer than the
 * key holders; then only with the opt-in.
 */
enum { SNAP_NONE, SNAP_PLAIN, SNAP_SEALED };

static int
sync_snap_kind(const crdt_doc *d)
{
	if (d->encrypted)
		return !d->has_admin || d->sync_snaps ? SNAP_SEALED : SNAP_NONE;
	return !d->signed_mode || d->sync_snaps ? SNAP_PLAIN : SNAP_NONE;
}

/* The snapshot field of a DATA frame, as sync_snap_kind() allows. */
static int
w_sync_snapshot(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf tmp;
	crdt_buf_init(&tmp, &d->cfg.alloc);
	int rc = sync_snap_kind(d) == SNAP_SEALED ?
	    crdt_doc_save_sealed(d, &tmp) :
	    crdt_doc_save(d, &tmp);
	if (rc == 0)
		rc = crdt__w_bin(out, tmp.data, tmp.len);
	crdt__memzero(tmp.data, tmp.cap);
	crdt_buf_fini(&tmp);
	return rc;
}

/* A DATA frame's snapshot: merged only where sync_snap_kind() allows
 * it, checked before anything in the frame is applied. */
static int
sync_load(crdt_doc *d, const uint8_t *snap, size_t len, void *caller)
{
	switch (sync_snap_kind(d)) {
	case SNAP_NONE:
		return CRDT_EPERM;
	case SNAP_SEALED:
		/* A plaintext snapshot in an encrypted document is refused
		 * like a plaintext message. */
		if (!is_sealed_snapshot(snap, len))
			return CRDT_EDECRYPT;
		break;
	default:
		break;
	}
	return crdt_doc_load(d, snap, len, caller);
}

/*
 * DATA = [2, 8, our clock, [msg, ...], snapshot | nil, evidence, flags].
 * Messages go in log order, which is an order in which this replica
 * applied them, hence causal: the peer applies them without buffering.
 * A frame carries a prefix of that order within the budget
 * (cfg.sync_max_bytes) and says DATA_MORE when messages were left out:
 * the receiver that took something in then asks again (DATA_REPLY), and
 * the next frame starts where the peer's new clock says. If the log no
 * longer holds everything the peer lacks, send a snapshot instead; a
 * keyless relay cannot make one, so it sends what its log holds of the
 * other replicas and says DATA_PARTIAL.
 */
#define DATA_MORE 1u    /* the sender holds more that the receiver lacks */
#define DATA_REPLY 2u   /* answer with what the sender lacks, even if this
			 * frame brought nothing new */
#define DATA_PARTIAL 4u /* the sender cannot serve part of what the
			 * receiver lacks (log evicted, no snapshot) */
#define DATA_FLAGS (DATA_MORE | DATA_REPLY | DATA_PARTIAL)

/* Encoded sizes, as msgpack-c writes them (smallest form). */
static size_t
bin_size(size_t n)
{
	return n + (n < 256 ? 2 : n < 65536 ? 3 : 5);
}

static size_t
arr_size(size_t n)
{
	return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

static size_t
evidence_size(const crdt_doc *d)
{
	size_t s = arr_size(evid_variants(d));
	for (size_t i = 0; i < d->nev; i++)
		for (size_t j = 0; j < d->ev[i].n; j++)
			s += bin_size(d->ev[i].v[j].len);
	return s;
}

/* Is the fifo entry a message the peer lacks and the log holds? */
static const logent *
data_pick(const crdt_doc *d, const uint64_t *peer, fifo_ent f)
{
	const rstate *r = &d->rs[f.r];
	if (f.c <= peer[f.r] || !in_log(r, f.c))
		return NULL;
	return &r->log[r->log_start + (f.c - r->log_lo)];
}

/*
 * How many messages, in fifo order, fit in the frame after `used` bytes
 * and `elems` elements. A frame that would carry none gets the first one
 * anyway if that stays within limits.max_bytes (a small budget never
 * blocks a large message). *more: some were left out.
 */
static int
data_count(const crdt_doc *d, const uint64_t *peer, size_t used,
    size_t elems, size_t *count, bool *more)
{
	size_t budget = d->cfg.sync_max_bytes, hard = d->cfg.limits.max_bytes;
	size_t n = 0;

	*more = false;
	for (size_t i = 0; i < d->fifo_n; i++) {
		const logent *e = data_pick(d, peer, d->fifo[d->fifo_start + i]);
		if (e == NULL)
			continue;
		size_t sz = bin_size(e->len);
		bool fits = used <= budget && sz <= budget - used;
		if (!fits && n == 0)
			fits = used <= hard && sz <= hard - used;
		if (!fits || elems + n + 1 > d->cfg.limits.max_elems) {
			*more = true;
			break;
		}
		used += sz;
		n++;
	}
	/* The next message cannot travel in any frame a peer with our
	 * limits accepts: refuse here rather than send what it refuses. */
	if (*more && n == 0)
		return CRDT_ETOOBIG;
	*count = n;
	return 0;
}

static int
w_data(const crdt_doc *d, uint64_t *peer, unsigned flags, crdt_buf *out)
{
	size_t mark = out->len, npairs = 0;
	bool complete = true;

	for (size_t i = 0; i < d->nrs; i++) {
		const rstate *r = &d->rs[i];
		npairs += r->vc > 0;
		if (r->vc <= peer[i])
			continue;
		if (!in_log(r, peer[i] + 1) || !in_log(r, r->vc))
			complete = false;
	}
	CRDT_TRY(crdt__w_header(out, KIND_DATA, 5));
	CRDT_TRY(w_vc_pairs(d, out));
	if (!complete && !is_relay(d) && sync_snap_kind(d) != SNAP_NONE) {
		CRDT_TRY(crdt__w_array(out, 0));
		CRDT_TRY(w_sync_snapshot(d, out));
		CRDT_TRY(w_evidence(d, out));
		CRDT_TRY(crdt__w_uint(out, flags));
		return out->len - mark > d->cfg.limits.max_bytes ?
		    CRDT_ETOOBIG : 0;
	}
	if (!complete) {
		/* No snapshot to send (a keyless relay cannot make one; signed
		 * mode sends none unless opted in): serve the replicas whose
		 * lacking run the log still holds in full; the others' later
		 * messages would only wait. */
		for (size_t j = 0; j < d->nrs; j++) {
			const rstate *rj = &d->rs[j];
			if (rj->vc > peer[j] && (!in_log(rj, peer[j] + 1) ||
			    !in_log(rj, rj->vc)))
				peer[j] = rj->vc;
		}
		flags |= DATA_PARTIAL;
	}
	/* fixed part: what is written, the message array's header (at most
	 * 5 bytes), nil, the evidence and the flags (1 byte) */
	size_t used = (out->len - mark) + 5 + 1 + evidence_size(d) + 1;
	size_t elems = 7 + 2 * npairs + evid_variants(d), count;
	bool more;
	CRDT_TRY(data_count(d, peer, used, elems, &count, &more));
	if (more)
		flags |= DATA_MORE;
	CRDT_TRY(crdt__w_array(out, count));
	for (size_t i = 0, k = 0; k < count && i < d->fifo_n; i++) {
		const logent *e = data_pick(d, peer, d->fifo[d->fifo_start + i]);
		if (e == NULL)
			continue;
		CRDT_TRY(crdt__w_bin(out, e->bytes, e->len));
		k++;
	}
	CRDT_TRY(crdt__w_nil(out));
	CRDT_TRY(w_evidence(d, out));
	CRDT_TRY(crdt__w_uint(out, flags));
	return out->len - mark > d->cfg.limits.max_bytes ? CRDT_ETOOBIG : 0;
}

static bool
peer_lacks(const crdt_doc *d, const uint64_t *peer)
{
	for (size_t i = 0; i < d->nrs; i++)
		if (d->rs[i].vc > peer[i])
			return true;
	return false;
}

/*
 * Grows with every message taken in (applied, buffered or kept as
 * evidence) and with every clock a snapshot raised: a frame that leaves
 * it unchanged brought nothing new. O(replicas + evidence), like the
 * frame's own clock.
 */
static uint64_t
progress_mark(const crdt_doc *d)
{
	uint64_t m = d->nbuffered + evid_variants(d);
	for (size_t i = 0; i < d->nrs; i++)
		m += d->rs[i].vc;
	return m;
}

/*
 * Whether and what to answer. A HELLO is always answered (DATA_REPLY:
 * its sender answers back with what we lack). A DATA frame is answered
 * when its sender lacks something of ours (or holds fewer equivocation
 * variants), or said DATA_MORE, but only if the frame asked for it
 * (DATA_REPLY) or brought something new: every frame of a round past the
 * third is paid for by progress, so a round always ends, also between
 * replicas that each refuse something the other holds.
 */
static int
reply_data(crdt_doc *d, const iddep *pairs, size_t n, bool hello,
    unsigned in_flags, bool progressed, size_t nevid, crdt_buf *reply,
    bool *replied)
{
	uint64_t *peer;
	unsigned flags = DATA_REPLY;
	bool want = true;

	*replied = false;
	CRDT_TRY(peer_clock(d, pairs, n, &peer));
	if (!hello) {
		bool cont = progressed && (in_flags & DATA_MORE);
		flags = cont ? DATA_REPLY : 0;
		want = ((in_flags & DATA_REPLY) || progressed) &&
		    (cont || peer_lacks(d, peer) || evid_variants(d) > nevid);
	}
	int rc = 0;
	if (want) {
		size_t mark = reply->len;
		rc = w_data(d, peer, flags, reply);
		if (rc < 0)
			reply->len = mark;
		*replied = rc == 0;
	}
	crdt__free(&d->cfg.alloc, peer, d->nrs * sizeof *peer);
	return rc;
}

/* A message of a DATA frame refused for its own content is skipped (a
 * keyless relay forwards what keyed replicas refuse); only running out
 * of memory stops the frame. */
static bool
data_fatal(int rc)
{
	return rc == CRDT_ENOMEM;
}

int
crdt_doc_sync_handle(crdt_doc *d, const void *frame, size_t len,
    void *caller, crdt_buf *reply)
{
	crdt__rd r;
	size_t n, nmsgs = 0;
	uint64_t kind, ver, flags = 0;
	iddep *pairs = NULL;
	size_t npairs = 0;
	const uint8_t *snap = NULL, *mstart = NULL, *estart = NULL;
	size_t nevid = 0;
	size_t snaplen = 0;
	bool has_snap = false, replied = false;
	int rc;

	if (d == NULL || frame == NULL || reply == NULL)
		return CRDT_EINVAL;
	if (d->in_txn)
		return CRDT_ESTATE;
	CRDT_TRY(crdt__rd_init(&r, &d->cfg.limits, frame, len));
	CRDT_TRY(crdt__rd_array(&r, &n));
	CRDT_TRY(crdt__rd_uint(&r, &ver));
	if (ver < CRDT__DOC_FORMAT_OLDEST || ver > CRDT__DOC_FORMAT_VERSION)
		return CRDT_EVERSION;
	CRDT_TRY(crdt__rd_uint(&r, &kind));
	/* A version-1 DATA frame had no flags (read as 0). */
	size_t data_n = ver == 1 ? 6 : 7;
	if (!((kind == KIND_HELLO && n == 3) ||
		(kind == KIND_DATA && n == data_n)))
		return CRDT_EMALFORMED;
	CRDT_TRY(rd_vc_pairs(d, &r, &pairs, &npairs));
	rc = 0;
	if (kind == KIND_DATA) {
		/* Validate every message and find the snapshot before
		 * applying anything. */
		/* Framing only: each message is verified when received
		 * (verifying twice would double the cost of signed mode). */
		rc = crdt__rd_array(&r, &nmsgs);
		mstart = r.p;
		for (size_t i = 0; rc == 0 && i < nmsgs; i++) {
			const uint8_t *m;
			size_t ml;
			msgview mv;
			rc = crdt__rd_blob(&r, &m, &ml);
			if (rc == 0)
				rc = parse_msg(d, m, ml, &mv, false);
		}
		if (rc == 0 && r.p < r.end && *r.p == 0xc0)
			r.p++;
		else if (rc == 0) {
			rc = crdt__rd_blob(&r, &snap, &snaplen);
			has_snap = true;
		}
		if (rc == 0)
			rc = crdt__rd_array(&r, &nevid);
		estart = r.p;
		if (rc == 0)
			rc = rd_evidence(d, &r, nevid, NULL, NULL);
		if (rc == 0 && data_n == 7)
			rc = crdt__rd_uint(&r, &flags);
		if (rc == 0 && (flags & ~(uint64_t)DATA_FLAGS) != 0)
			rc = CRDT_EMALFORMED;
	}
	if (rc == 0)
		rc = crdt__rd_done(&r);
	uint64_t mark0 = progress_mark(d);
	if (rc == 0 && has_snap)
		rc = sync_load(d, snap, snaplen, caller);
	if (rc == 0 && nmsgs > 0) {
		crdt__rd mr;
		rc = crdt__rd_init(&mr, &d->cfg.limits, mstart,
		    (size_t)(r.end - mstart));
		for (size_t i = 0; rc == 0 && i < nmsgs; i++) {
			const uint8_t *m;
			size_t ml;
			rc = crdt__rd_blob(&mr, &m, &ml);
			if (rc == 0 && data_fatal(receive_one(d, m, ml,
			    caller)))
				rc = CRDT_ENOMEM;
		}
	}
	if (rc == 0 && nevid > 0) {
		crdt__rd er;
		rc = crdt__rd_init(&er, &d->cfg.limits, estart,
		    (size_t)(r.end - estart));
		for (size_t i = 0; rc == 0 && i < nevid; i++) {
			const uint8_t *m;
			size_t ml;
			rc = crdt__rd_blob(&er, &m, &ml);
			if (rc == 0 && data_fatal(receive_msg(d, m, ml, caller,
			    true)))
				rc = CRDT_ENOMEM;
		}
		evid_prune(d);
	}
	bool progressed = progress_mark(d) != mark0;
	if (rc == 0)
		rc = reply_data(d, pairs, npairs, kind == KIND_HELLO,
		    (unsigned)flags, progressed, nevid, reply, &replied);
	/* The peer cannot serve what we still lack and this frame changed
	 * nothing: say so, so the caller syncs with another replica. */
	if (rc == 0 && (flags & DATA_PARTIAL) && !progressed && !replied)
		rc = CRDT_ENOTFOUND;
	crdt__free(&d->cfg.alloc, pairs, npairs * sizeof *pairs);
	return rc;
}

/* ---------------------------------------------------------------- */
/* chat mutations (the thread itself is chat.c)                     */

static int
chat_check(crdt_doc *d, uint32_t on, crdt_chat **c)
{
	if (d == NULL)
		return CRDT_EINVAL;
	if (on >= d->nobjs || d->objs[on].type != CRDT_OBJ_CHAT)
		return CRDT_ESCHEMA;
	*c = d->objs[on].o;
	return 0;
}

/* Open the stage (a one-op transaction unless one is open) and write the
 * op header [obj, kind, ...] of a chat op with `n_more` fields. A failure
 * to open is returned (nothing to close); the header's own status goes to
 * *rc, for stage_close() to settle with the rest of the op. */
static int
chat_begin(crdt_doc *d, uint32_t on, unsigned kind, size_t n_more,
    crdt_buf *msg_out, bool *one, size_t *mark, int *rc)
{
	CRDT_TRY(stage_open(d, msg_out, one, mark));
	*rc = crdt__w_array(&d->stage, 2 + n_more);
	if (*rc == 0)
		*rc = crdt__w_uint(&d->stage, on);
	if (*rc == 0)
		*rc = crdt__w_uint(&d->stage, kind);
	return 0;
}

static bool
user_ok(const void *u, size_t n)
{
	return u != NULL && n > 0 && n <= 255;
}

static int
w_dot_(crdt_buf *b, crdt_dot x)
{
	CRDT_TRY(crdt__w_id(b, &x.replica));
	return crdt__w_uint(b, x.counter);
}

int
crdt_doc_chat_post(crdt_doc *d, uint32_t on, const crdt_chat_post *p,
    crdt_dot *id, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (p == NULL || !user_ok(p->user, p->user_len) ||
	    (p->body == NULL && p->body_len != 0) ||
	    (p->meta == NULL && p->meta_len != 0) ||
	    (p->reply_to != NULL && p->reply_to->counter == 0))
		return CRDT_EINVAL;
	if (p->body_len > d->cfg.limits.max_value_bytes ||
	    p->meta_len > d->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	if (d->in_txn && d->objs[on].post_txn == d->txn_serial)
		return CRDT_EINVAL; /* the message ID is the transaction dot */
	uint64_t seen = crdt__chat_seen(c);
	int rc;
	CRDT_TRY(chat_begin(d, on, 0, 5, msg_out, &one, &mark, &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = crdt__w_uint(s, seen);
	if (rc == 0)
		rc = crdt__w_bin(s, p->user, p->user_len);
	if (rc == 0)
		rc = crdt__w_bin(s, p->body, p->body_len);
	if (rc == 0 && p->reply_to != NULL) {
		rc = crdt__w_array(s, 2);
		if (rc == 0)
			rc = w_dot_(s, *p->reply_to);
	} else if (rc == 0) {
		rc = crdt__w_nil(s);
	}
	if (rc == 0)
		rc = p->meta != NULL ? crdt__w_bin(s, p->meta, p->meta_len) :
				       crdt__w_nil(s);
	crdt_dot next = { d->self, d->rs[d->self_idx].vc + 1 };
	if (rc == 0)
		d->objs[on].post_txn = d->txn_serial;
	rc = stage_close(d, one, mark, rc, msg_out);
	if (rc == 0 && id != NULL)
		*id = next;
	return rc;
}

int
crdt_doc_chat_react(crdt_doc *d, uint32_t on, crdt_dot msg, const void *user,
    size_t user_len, const void *emoji, size_t emoji_len, bool react_on,
    crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (!user_ok(user, user_len) || (emoji == NULL && emoji_len != 0) ||
	    msg.counter == 0)
		return CRDT_EINVAL;
	if (emoji_len > d->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	int rc;
	CRDT_TRY(chat_begin(d, on, 1, 5, msg_out, &one, &mark, &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = w_dot_(s, msg);
	if (rc == 0)
		rc = crdt__w_bin(s, user, user_len);
	if (rc == 0)
		rc = crdt__w_bin(s, emoji, emoji_len);
	if (rc == 0)
		rc = crdt__w_uint(s, react_on ? 1 : 0);
	return stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_chat_mark_read(crdt_doc *d, uint32_t on, const void *user,
    size_t user_len, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (!user_ok(user, user_len))
		return CRDT_EINVAL;
	int rc;
	CRDT_TRY(chat_begin(d, on, 2, 2, msg_out, &one, &mark, &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = crdt__w_bin(s, user, user_len);
	if (rc == 0)
		rc = w_vc_pairs(d, s);
	return stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_chat_member(crdt_doc *d, uint32_t on, const void *user,
    size_t user_len, bool joined, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (!user_ok(user, user_len))
		return CRDT_EINVAL;
	int rc;
	CRDT_TRY(chat_begin(d, on, 3, 2, msg_out, &one, &mark, &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = crdt__w_bin(s, user, user_len);
	if (rc == 0)
		rc = crdt__w_uint(s, joined ? 1 : 0);
	return stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_chat_ack(crdt_doc *d, uint32_t on, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (!crdt__chat_is_server(c, &d->self))
		return CRDT_EPERM;
	int rc;
	CRDT_TRY(chat_begin(d, on, 4, 1, msg_out, &one, &mark, &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = w_vc_pairs(d, s);
	return stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_chat_reject(crdt_doc *d, uint32_t on, crdt_dot msg,
    const void *reason, size_t reason_len, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if ((reason == NULL && reason_len != 0) || msg.counter == 0)
		return CRDT_EINVAL;
	if (reason_len > d->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	if (!crdt__chat_is_server(c, &d->self))
		return CRDT_EPERM;
	int rc;
	CRDT_TRY(chat_begin(d, on, 5, 3, msg_out, &one, &mark, &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = w_dot_(s, msg);
	if (rc == 0)
		rc = crdt__w_bin(s, reason, reason_len);
	return stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_log_get(const crdt_doc *d, crdt_dot dot, const uint8_t **bytes,
    size_t *len)
{
	uint32_t ri;

	if (d == NULL)
		return CRDT_EINVAL;
	if (rep_find(d, &dot.replica, &ri) != 0 || !in_log(&d->rs[ri],
	    dot.counter))
		return CRDT_ENOTFOUND;
	const rstate *r = &d->rs[ri];
	const logent *e = &r->log[r->log_start + (dot.counter - r->log_lo)];
	if (bytes != NULL)
		*bytes = e->bytes;
	if (len != NULL)
		*len = e->len;
	return 0;
}

/* ---------------------------------------------------------------- */
/* security settings (secure.h)                                     */

static int
put_key(crdt_doc *d, uint32_t epoch, const uint8_t *key)
{
	for (size_t i = 0; i < d->nkeys; i++) {
		if (d->keys[i].epoch == epoch) {
			memcpy(d->keys[i].key, key, CRDT_DOC_KEY_BYTES);
			return 0;
		}
	}
	void *v = d->keys;
	size_t oldcap = d->capkeys;
	epoch_key *old = d->keys;
	/* Grow by copy so the old block can be wiped, not just freed. */
	if (d->nkeys == d->capkeys) {
		size_t ncap = oldcap ? oldcap * 2 : 4;
		v = crdt__malloc(&d->cfg.alloc, ncap * sizeof *d->keys);
		if (v == NULL)
			return CRDT_ENOMEM;
		if (old != NULL) {
			memcpy(v, old, d->nkeys * sizeof *old);
			crdt__memzero(old, oldcap * sizeof *old);
			crdt__free(&d->cfg.alloc, old, oldcap * sizeof *old);
		}
		d->keys = v;
		d->capkeys = ncap;
	}
	d->keys[d->nkeys].epoch = epoch;
	memcpy(d->keys[d->nkeys].key, key, CRDT_DOC_KEY_BYTES);
	d->nkeys++;
	return 0;
}

int
crdt_doc_set_security(crdt_doc *d, const crdt_doc_security *s)
{
	if (d == NULL || s == NULL || (s->key != NULL && !s->encrypted))
		return CRDT_EINVAL;
	if (d->has_data || d->in_txn)
		return CRDT_ESTATE;
	if (s->identity != NULL) {
		crdt_replica_id id;
		crdt_identity_replica_id(s->identity, &id);
		if (crdt_replica_id_cmp(&id, &d->self) != 0)
			return CRDT_EINVAL;
	}
	/* All or nothing: every step that can fail runs before anything
	 * is set, and a failure undoes the steps before it, so a retry
	 * starts from the same state (not CRDT_ESTATE, nothing leaked). */
	crdt_replica_id admin;
	if (s->admin_key != NULL) {
		if (!s->signed_mode)
			return CRDT_EINVAL;
		if (d->nobjs != 0 || d->has_admin)
			return CRDT_ESTATE;
		CRDT_TRY(crdt_replica_id_from_public_key(s->admin_key,
		    &admin));
	}
	if (s->key != NULL && find_key(d, s->epoch) == NULL &&
	    d->nkeys == d->capkeys) {
		/* Room for the key first: put_key then cannot fail. */
		CRDT_TRY(put_key(d, s->epoch, s->key));
		d->nkeys--; /* added back below, after the admin steps */
		crdt__memzero(d->keys[d->nkeys].key, CRDT_DOC_KEY_BYTES);
	}
	if (s->admin_key != NULL) {
		uint32_t ai, on;
		size_t nrs0 = d->nrs;
		crdt__table acl;
		CRDT_TRY(rep_intern(d, &admin, &ai));
		int rc = crdt__table_init(&acl, &d->cfg.alloc,
		    sizeof(acl_ent));
		if (rc == 0) {
			rc = register_obj(d, "__acl", CRDT_OBJ_GSET, NULL,
			    &on);
			if (rc < 0)
				crdt__table_fini(&acl, acl_ent_fini);
		}
		if (rc < 0) {
			unintern_to(d, nrs0);
			return rc;
		}
		d->admin = admin;
		d->admin_idx = ai;
		d->acl = acl;
		d->objs[on].acl = true;
		d->acl_obj = on;
		d->has_admin = true;
	}
	if (s->key != NULL) {
		int krc = put_key(d, s->epoch, s->key);
		assert(krc == 0); /* room reserved above */
		(void)krc;
	}
	d->signed_mode = s->signed_mode;
	d->sync_snaps = s->sync_snapshots;
	d->ident = s->identity;
	d->encrypted = s->encrypted;
	d->cur_epoch = s->epoch;
	return 0;
}

int
crdt_doc_add_key(crdt_doc *d, uint32_t epoch,
    const uint8_t key[CRDT_DOC_KEY_BYTES], bool current)
{
	if (d == NULL || key == NULL)
		return CRDT_EINVAL;
	if (!d->encrypted || is_relay(d))
		return CRDT_ESTATE;
	CRDT_TRY(put_key(d, epoch, key));
	if (current)
		d->cur_epoch = epoch;
	return 0;
}

#define KIND_SEALED_SNAP 10

int
crdt_doc_save_sealed(const crdt_doc *d, crdt_buf *out)
{
	crdt_buf plain;

	if (d == NULL || out == NULL)
		return CRDT_EINVAL;
	if (!d->encrypted || is_relay(d))
		return CRDT_ESTATE;
	crdt_buf_init(&plain, &d->cfg.alloc);
	size_t mark = out->len;
	int rc = crdt_doc_save(d, &plain);
	if (rc == 0)
		rc = crdt__w_header(out, KIND_SEALED_SNAP, 1);
	if (rc == 0)
		rc = w_sealed((crdt_doc *)(uintptr_t)d, out, mark, plain.data,
		    plain.len);
	crdt__memzero(plain.data, plain.cap);
	crdt_buf_fini(&plain);
	if (rc < 0)
		out->len = mark;
	return rc;
}

/* Open a sealed snapshot into `plain` (caller's buffer: d->plain is
 * reused by every message the load re-offers). */
static int
open_sealed_snapshot(crdt_doc *d, const void *bytes, size_t len,
    crdt_buf *plain)
{
	crdt__rd r;
	size_t n, nl, ctlen;
	uint64_t ep;
	const uint8_t *nonce, *ct;

	CRDT_TRY(crdt__rd_init(&r, &d->cfg.limits, bytes, len));
	unsigned ver;
	CRDT_TRY(crdt__rd_header_v(&r, KIND_SEALED_SNAP, &n, &ver));
	if (n != 3)
		return CRDT_EMALFORMED;
	uint8_t adbuf[32];
	const uint8_t *ad;
	size_t adlen;
	CRDT_TRY(crdt__env_ad(adbuf, ver, &d->cfg.doc_id, bytes,
	    (size_t)(r.p - (const uint8_t *)bytes), &ad, &adlen));
	CRDT_TRY(crdt__rd_array_n(&r, 3));
	CRDT_TRY(crdt__rd_uint(&r, &ep));
	CRDT_TRY(crdt__rd_bin(&r, &nonce, &nl));
	CRDT_TRY(crdt__rd_blob(&r, &ct, &ctlen));
	CRDT_TRY(crdt__rd_done(&r));
	if (ep > UINT32_MAX || nl != CRDT__NONCE_BYTES ||
	    ctlen < CRDT__TAG_BYTES)
		return CRDT_EMALFORMED;
	const epoch_key *k = find_key(d, (uint32_t)ep);
	if (k == NULL)
		return CRDT_ENOKEY;
	CRDT_TRY(crdt_buf_append(plain, ct, ctlen));
	CRDT_TRY(crdt__aead_open(plain->data, ct, ctlen, ad, adlen, nonce,
	    k->key));
	plain->len = ctlen - CRDT__TAG_BYTES;
	return 0;
}

static bool
is_sealed_snapshot(const uint8_t *b, size_t len)
{
	return len >= 3 && b[0] == 0x93 && b[1] >= CRDT__DOC_FORMAT_OLDEST &&
	    b[1] <= CRDT__DOC_FORMAT_VERSION &&
	    b[2] == KIND_SEALED_SNAP;
}

int
crdt_doc_allow(crdt_doc *d, const crdt_replica_id *writer, bool allowed,
    crdt_buf *msg_out)
{
	bool one;
	size_t mark;

	if (d == NULL || writer == NULL)
		return CRDT_EINVAL;
	if (!d->has_admin)
		return CRDT_ESTATE;
	if (crdt_replica_id_cmp(&d->self, &d->admin) != 0)
		return CRDT_EPERM;
	CRDT_TRY(stage_open(d, msg_out, &one, &mark));
	crdt_buf *s = &d->stage;
	int rc = crdt__w_array(s, 3);
	if (rc == 0)
		rc = crdt__w_uint(s, d->acl_obj);
	if (rc == 0)
		rc = crdt__w_id(s, writer);
	if (rc == 0)
		rc = crdt__w_uint(s, allowed ? 1 : 0);
	return stage_close(d, one, mark, rc, msg_out);
}

bool
crdt_doc_allowed(crdt_doc *d, const crdt_replica_id *writer)
{
	if (d == NULL || writer == NULL)
		return false;
	return acl_check(d, writer, own_admin(d)) == 0;
}
