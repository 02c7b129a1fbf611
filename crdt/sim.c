/*
 * Deterministic simulated network. Everything random comes from one
 * splitmix64 stream seeded by the config, and every replica reads a
 * virtual clock, so a failing seed replays exactly.
 */
#include "internal.h"
#include "crdt/sim.h"

#define SIM_MAX_REPLICAS 64

typedef struct flight {
	uint8_t *bytes;
	size_t len;
	uint32_t from, to;
	uint64_t due; /* step at which it may be delivered */
} flight;

typedef struct simrep {
	crdt_sim *sim;
	uint32_t index;
	crdt_doc *doc;
	int64_t skew_ms;
	bool online;
	uint8_t side; /* partition side, 0 or 1 */
} simrep;

struct crdt_sim {
	crdt_config cfg;
	crdt_sim_config sc;
	uint64_t rng;
	uint64_t now_ms;
	uint64_t step;
	bool partitioned;
	simrep *reps;
	flight *fl;
	size_t nfl, capfl;
	int err; /* first allocation failure inside a listener */
	crdt_sim_stats st;
};

void
crdt_sim_config_default(crdt_sim_config *sc)
{
	if (sc == NULL)
		return;
	memset(sc, 0, sizeof *sc);
	sc->replicas = 3;
	sc->seed = 1;
	sc->drop_pct = 10;
	sc->dup_pct = 10;
	sc->max_delay = 8;
	sc->offline_pct = 5;
	sc->partition_pct = 3;
	sc->snapshot_pct = 3;
	sc->sync_pct = 5;
	sc->max_skew_ms = 5000;
}

uint64_t
crdt_sim_rand(crdt_sim *s)
{
	uint64_t z = (s->rng += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static bool
chance(crdt_sim *s, unsigned pct)
{
	return pct > 0 && crdt_sim_rand(s) % 100 < pct;
}

static uint64_t
sim_clock(void *ud)
{
	const simrep *r = ud;
	int64_t t = (int64_t)r->sim->now_ms + r->skew_ms;
	return t < 0 ? 0 : (uint64_t)t;
}

static int
enqueue(crdt_sim *s, uint32_t from, uint32_t to, const uint8_t *b, size_t n)
{
	void *v = s->fl;
	CRDT_TRY(crdt__grow(&s->cfg.alloc, &v, &s->capfl, s->nfl + 1,
	    sizeof *s->fl));
	s->fl = v;
	uint8_t *copy = crdt__memdup(&s->cfg.alloc, b, n);
	if (copy == NULL)
		return CRDT_ENOMEM;
	uint64_t delay = s->sc.max_delay ?
	    crdt_sim_rand(s) % (s->sc.max_delay + 1) : 0;
	s->fl[s->nfl++] = (flight){ copy, n, from, to, s->step + delay };
	return 0;
}

/* May a and b talk directly? With a hub, only through it. */
static bool
linked(const crdt_sim *s, uint32_t a, uint32_t b)
{
	if (s->sc.hub == 0)
		return true;
	return a == s->sc.hub - 1 || b == s->sc.hub - 1;
}

/* The listener: every local commit goes to every replica linked to this
 * one; a hub also forwards what it receives from others. */
static void
on_update(void *ud, crdt_update_source src, const uint8_t *bytes, size_t len,
    void *caller)
{
	simrep *r = ud;
	crdt_sim *s = r->sim;
	bool hub = s->sc.hub != 0 && r->index == s->sc.hub - 1;
	(void)caller;
	if (src != CRDT_UPDATE_LOCAL && !(hub && src == CRDT_UPDATE_REMOTE))
		return;
	for (size_t j = 0; j < s->sc.replicas; j++) {
		if (j == r->index || !linked(s, r->index, (uint32_t)j))
			continue;
		int rc = enqueue(s, r->index, (uint32_t)j, bytes, len);
		if (rc < 0 && s->err == 0)
			s->err = rc;
	}
}

int
crdt_sim_new(const crdt_config *cfg, const crdt_sim_config *sc,
    crdt_sim_setup_fn setup, void *ud, crdt_sim **out)
{
	crdt_config c;

	if (sc == NULL || setup == NULL || out == NULL || sc->replicas < 2 ||
	    sc->replicas > SIM_MAX_REPLICAS || sc->hub > sc->replicas)
		return CRDT_EINVAL;
	CRDT_TRY(crdt__config_resolve(cfg, &c));
	crdt_sim *s = crdt__malloc(&c.alloc, sizeof *s);
	if (s == NULL)
		return CRDT_ENOMEM;
	memset(s, 0, sizeof *s);
	s->cfg = c;
	s->sc = *sc;
	s->rng = sc->seed;
	s->now_ms = UINT64_C(1700000000000);
	s->reps = crdt__malloc(&c.alloc, sc->replicas * sizeof *s->reps);
	if (s->reps == NULL) {
		crdt__free(&c.alloc, s, sizeof *s);
		return CRDT_ENOMEM;
	}
	memset(s->reps, 0, sc->replicas * sizeof *s->reps);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < sc->replicas; i++) {
		simrep *r = &s->reps[i];
		crdt_replica_id id;
		uint8_t raw[16];
		uint64_t a = crdt_sim_rand(s), b = crdt_sim_rand(s) | 1;
		memcpy(raw, &a, 8);
		memcpy(raw + 8, &b, 8);
		rc = crdt_replica_id_from_bytes(&id, raw, sizeof raw);
		r->sim = s;
		r->index = (uint32_t)i;
		r->online = true;
		if (sc->max_skew_ms > 0)
			r->skew_ms = (int64_t)(crdt_sim_rand(s) %
			    (2 * sc->max_skew_ms + 1)) - (int64_t)sc->max_skew_ms;
		crdt_config dc = c;
		dc.clock = sim_clock;
		dc.clock_ud = r;
		if (rc == 0)
			rc = crdt_doc_new(&dc, &id, &r->doc);
		if (rc == 0)
			rc = setup(ud, r->doc, i);
		if (rc == 0) {
			crdt_doc_listener l = { .on_update = on_update,
				.ud = r };
			crdt_doc_set_listener(r->doc, &l);
		}
	}
	if (rc < 0) {
		crdt_sim_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void
crdt_sim_free(crdt_sim *s)
{
	if (s == NULL)
		return;
	crdt_allocator a = s->cfg.alloc;
	for (size_t i = 0; i < s->nfl; i++)
		crdt__free(&a, s->fl[i].bytes, s->fl[i].len);
	crdt__free(&a, s->fl, s->capfl * sizeof *s->fl);
	for (size_t i = 0; i < s->sc.replicas; i++)
		crdt_doc_free(s->reps[i].doc);
	crdt__free(&a, s->reps, s->sc.replicas * sizeof *s->reps);
	crdt__free(&a, s, sizeof *s);
}

crdt_doc *
crdt_sim_doc(crdt_sim *s, size_t i)
{
	return s != NULL && i < s->sc.replicas ? s->reps[i].doc : NULL;
}

size_t
crdt_sim_size(const crdt_sim *s)
{
	return s ? s->sc.replicas : 0;
}

bool
crdt_sim_online(const crdt_sim *s, size_t i)
{
	return s != NULL && i < s->sc.replicas && s->reps[i].online;
}

void
crdt_sim_stats_get(const crdt_sim *s, crdt_sim_stats *out)
{
	if (s != NULL && out != NULL)
		*out = s->st;
}

static bool
reachable(const crdt_sim *s, uint32_t a, uint32_t b)
{
	const simrep *x = &s->reps[a], *y = &s->reps[b];
	return linked(s, a, b) && x->online && y->online &&
	    (!s->partitioned || x->side == y->side);
}

/* Errors a peer's bytes may legitimately cause (a full buffer) are not
 * simulation failures; anything else is. */
static int
tolerate(int rc)
{
	/* ESTATE: a keyless relay cannot save or load snapshots. */
	return rc == CRDT_EBUFFULL || rc == CRDT_ESTATE ? 0 : rc;
}

static int
deliver_due(crdt_sim *s, bool everything)
{
	size_t i = 0;
	while (i < s->nfl) {
		flight f = s->fl[i];
		bool ok = everything || (f.due <= s->step &&
		    reachable(s, f.from, f.to));
		if (!ok) {
			/* An unreachable destination loses it half the time:
			 * nothing but a later sync may repair that. */
			if (!everything && f.due <= s->step &&
			    !reachable(s, f.from, f.to) && chance(s, 50)) {
				s->st.dropped++;
				goto remove;
			}
			i++;
			continue;
		}
		if (!everything && chance(s, s->sc.drop_pct)) {
			s->st.dropped++;
			goto remove;
		}
		if (!everything && chance(s, s->sc.dup_pct)) {
			CRDT_TRY(enqueue(s, f.from, f.to, f.bytes, f.len));
			s->st.duplicated++;
		}
		CRDT_TRY(tolerate(crdt_doc_receive(s->reps[f.to].doc, f.bytes,
		    f.len, NULL)));
		s->st.delivered++;
	remove:
		crdt__free(&s->cfg.alloc, f.bytes, f.len);
		/* Swap-remove: delivery order is already random. */
		s->fl[i] = s->fl[--s->nfl];
	}
	return 0;
}

/* One sync round a -> b -> a -> b; `lossy` drops frames at drop_pct. */
static int
sync_pair(crdt_sim *s, uint32_t a, uint32_t b, bool lossy)
{
	crdt_buf f[4];
	crdt_doc *da = s->reps[a].doc, *db = s->reps[b].doc;
	int rc;

	for (int i = 0; i < 4; i++)
		crdt_buf_init(&f[i], &s->cfg.alloc);
	rc = crdt_doc_sync_start(da, &f[0]);
	crdt_doc *to[3] = { db, da, db };
	for (int k = 0; rc == 0 && k < 3 && f[k].len > 0; k++) {
		if (lossy && chance(s, s->sc.drop_pct))
			break;
		rc = tolerate(crdt_doc_sync_handle(to[k], f[k].data, f[k].len,
		    NULL, &f[k + 1]));
	}
	for (int i = 0; i < 4; i++)
		crdt_buf_fini(&f[i]);
	s->st.syncs++;
	return rc;
}

static int
snapshot_pair(crdt_sim *s, uint32_t a, uint32_t b)
{
	crdt_buf snap;
	crdt_buf_init(&snap, &s->cfg.alloc);
	int rc = tolerate(crdt_doc_save(s->reps[a].doc, &snap));
	if (rc == 0 && snap.len > 0)
		rc = tolerate(crdt_doc_load(s->reps[b].doc, snap.data,
		    snap.len, NULL));
	crdt_buf_fini(&snap);
	s->st.snapshots++;
	return rc;
}

static bool
pick_pair(crdt_sim *s, uint32_t *a, uint32_t *b)
{
	uint32_t n = (uint32_t)s->sc.replicas;
	*a = (uint32_t)(crdt_sim_rand(s) % n);
	*b = (uint32_t)((*a + 1 + crdt_sim_rand(s) % (n - 1)) % n);
	return reachable(s, *a, *b);
}

int
crdt_sim_step(crdt_sim *s)
{
	uint32_t a, b;

	if (s == NULL)
		return CRDT_EINVAL;
	if (s->err != 0)
		return s->err;
	s->step++;
	s->st.steps++;
	s->now_ms += 1 + crdt_sim_rand(s) % 50;
	if (chance(s, s->sc.offline_pct)) {
		simrep *r = &s->reps[crdt_sim_rand(s) % s->sc.replicas];
		r->online = !r->online;
	}
	if (chance(s, s->sc.partition_pct)) {
		s->partitioned = !s->partitioned;
		for (size_t i = 0; i < s->sc.replicas; i++)
			s->reps[i].side = (uint8_t)(crdt_sim_rand(s) & 1);
	}
	CRDT_TRY(deliver_due(s, false));
	if (chance(s, s->sc.snapshot_pct) && pick_pair(s, &a, &b))
		CRDT_TRY(snapshot_pair(s, a, b));
	if (chance(s, s->sc.sync_pct) && pick_pair(s, &a, &b))
		CRDT_TRY(sync_pair(s, a, b, true));
	return s->err;
}

int
crdt_sim_heal(crdt_sim *s)
{
	if (s == NULL)
		return CRDT_EINVAL;
	if (s->err != 0)
		return s->err;
	s->partitioned = false;
	for (size_t i = 0; i < s->sc.replicas; i++)
		s->reps[i].online = true;
	CRDT_TRY(deliver_due(s, true));
	/* Sync every pair in both directions; twice around is enough for
	 * anything to reach everyone (a -> hub -> b), the third pass checks. */
	for (int pass = 0; pass < 3; pass++)
		for (uint32_t i = 0; i < s->sc.replicas; i++)
			for (uint32_t j = 0; j < s->sc.replicas; j++)
				if (i != j && linked(s, i, j))
					CRDT_TRY(sync_pair(s, i, j, false));
	return s->err;
}

int
crdt_sim_check(const crdt_sim *s)
{
	crdt_buf first, other;
	int rc = 0;

	if (s == NULL)
		return CRDT_EINVAL;
	crdt_buf_init(&first, &s->cfg.alloc);
	crdt_buf_init(&other, &s->cfg.alloc);
	crdt_vclock *v0 = NULL, *vi = NULL;
	size_t ref = s->sc.hub == 1 ? 1 : 0; /* a replica that can save */
	rc = crdt_doc_save(s->reps[ref].doc, &first);
	if (rc == 0)
		rc = crdt_doc_vclock(s->reps[ref].doc, &v0);
	for (size_t i = 0; rc == 0 && i < s->sc.replicas; i++) {
		if (crdt_doc_buffered(s->reps[i].doc) != 0) {
			rc = CRDT_EDIVERGED;
			break;
		}
		crdt_vclock_free(vi);
		vi = NULL;
		rc = crdt_doc_vclock(s->reps[i].doc, &vi);
		if (rc == 0 && crdt_vclock_compare(v0, vi) != CRDT_ORDER_EQUAL)
			rc = CRDT_EDIVERGED;
		if (rc != 0 || i == ref)
			continue;
		crdt_buf_clear(&other);
		rc = crdt_doc_save(s->reps[i].doc, &other);
		if (rc == CRDT_ESTATE && s->sc.hub == i + 1) {
			rc = 0; /* a keyless relay: clocks compared above */
			continue;
		}
		if (rc == 0 && (other.len != first.len ||
		    memcmp(other.data, first.data, first.len) != 0))
			rc = CRDT_EDIVERGED;
	}
	crdt_vclock_free(v0);
	crdt_vclock_free(vi);
	crdt_buf_fini(&first);
	crdt_buf_fini(&other);
	return rc;
}
