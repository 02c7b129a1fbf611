/*
 * The peers' workloads (shared/peers/lib.mjs, RESULTS.md) on libcrdt:
 * chat-thread messages, one per transaction, 40-byte bodies, timestamps
 * 1700000000000 + i*1000, one LWW register for W4. Prints one line per
 * case ("name  n  ns/op  ops/s  extra") and a markdown table whose rows
 * carry the RESULTS.md names. --json FILE writes the same figures.
 *
 *   bench_chat [--n N] [--seed S] [--runs R] [--json FILE] [--scaling]
 *
 * Inputs are deterministic (seeded); wall time is for reporting only.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <crdt/crdt.h>

#include "bench.h"
#include <sodium.h> /* only for the raw-verify baseline */

/* ---- timing, rng, allocator accounting ---- */

static uint64_t rng_state;
static uint64_t
rng(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

static long long live_bytes;
static void *
a_alloc(void *ud, size_t n)
{
	(void)ud;
	live_bytes += (long long)n;
	return malloc(n);
}
static void *
a_realloc(void *ud, void *p, size_t o, size_t n)
{
	(void)ud;
	void *q = realloc(p, n);
	if (q != NULL)
		live_bytes += (long long)n - (long long)o;
	return q;
}
static void
a_free(void *ud, void *p, size_t n)
{
	(void)ud;
	if (p != NULL)
		live_bytes -= (long long)n;
	free(p);
}

static long
rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;
	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = 0;
	fclose(f);
	return res * 4096;
}

static uint64_t clock_ms;
static uint64_t
fake_clock(void *ud)
{
	(void)ud;
	return clock_ms;
}

/* ---- replicas and message sets ---- */

typedef struct msgs {
	crdt_buf all;
	size_t *off;
	size_t n, cap;
} msgs;

static void
msgs_init(msgs *m, size_t cap)
{
	crdt_buf_init(&m->all, NULL);
	m->off = malloc((cap + 1) * sizeof *m->off);
	m->off[0] = 0;
	m->n = 0;
	m->cap = cap;
}

static void
msgs_fini(msgs *m)
{
	crdt_buf_fini(&m->all);
	free(m->off);
}

static const uint8_t *
msg_at(const msgs *m, size_t i, size_t *len)
{
	*len = m->off[i + 1] - m->off[i];
	return m->all.data + m->off[i];
}

static crdt_config cfg_plain, cfg_count;

static crdt_doc *
replica_with(uint8_t idn, const crdt_config *cfg)
{
	uint8_t raw[16] = { 0 };
	crdt_replica_id id;
	crdt_doc *d;
	raw[0] = idn;
	raw[15] = 1;
	CK(crdt_replica_id_from_bytes(&id, raw, sizeof raw));
	CK(crdt_doc_new(cfg, &id, &d));
	CK(crdt_doc_register_chat(d, "messages", NULL, NULL));
	CK(crdt_doc_register(d, "register", CRDT_OBJ_LWW, NULL));
	return d;
}

static crdt_doc *
replica(uint8_t idn, bool counted)
{
	return replica_with(idn, counted ? &cfg_count : &cfg_plain);
}

/* Append message i to `d`, capture its bytes into `m`. */
static void
append(crdt_doc *d, msgs *m, size_t i)
{
	char body[41];
	int n = snprintf(body, sizeof body, "#%zu ", i);
	for (int k = n; k < 40; k++)
		body[k] = (char)('a' + rng() % 26);
	body[40] = '\0';
	clock_ms = UINT64_C(1700000000000) + (uint64_t)i * 1000;
	crdt_chat_post p = { "replicaA", 8, body, 40, NULL, NULL, 0 };
	CK(crdt_doc_chat_post(d, 0, &p, NULL, &m->all));
	m->off[++m->n] = m->all.len;
}

static void
deliver(crdt_doc *d, const msgs *m, size_t i)
{
	size_t len;
	const uint8_t *p = msg_at(m, i, &len);
	CK(crdt_doc_receive(d, p, len, NULL));
}

static bool
same(const crdt_doc *a, const crdt_doc *b)
{
	crdt_buf x, y;
	crdt_buf_init(&x, NULL);
	crdt_buf_init(&y, NULL);
	CK(crdt_doc_save(a, &x));
	CK(crdt_doc_save(b, &y));
	bool eq = x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
	return eq;
}

static void
read_newest(const crdt_doc *d)
{
	const crdt_chat *c;
	crdt_chat_msg m;
	CK(crdt_doc_chat(d, 0, &c));
	CK(crdt_chat_at(c, crdt_chat_count(c) - 1, &m));
	if (m.body_len != 40)
		exit(2);
}

/* ---- reporting ---- */

typedef struct fig {
	char key[64];
	double v;
	char txt[64];
} fig;

static fig figs[128];
static size_t nfigs;
static FILE *json;

static void
put(const char *key, double v, const char *txt)
{
	fig *f = &figs[nfigs++];
	snprintf(f->key, sizeof f->key, "%s", key);
	f->v = v;
	snprintf(f->txt, sizeof f->txt, "%s", txt ? txt : "");
}

static double
get(const char *key)
{
	for (size_t i = 0; i < nfigs; i++)
		if (strcmp(figs[i].key, key) == 0)
			return figs[i].v;
	return NAN;
}

static void
line(const char *name, size_t n, double secs, size_t ops, const char *extra)
{
	double ns = secs * 1e9 / (double)(ops ? ops : 1);
	printf("%-28s %9zu %10.1f %12.0f  %s\n", name, n, ns,
	    ops / (secs > 0 ? secs : 1e-9), extra ? extra : "");
	fflush(stdout);
}

/* ---- workloads ---- */

typedef struct result {
	double w1_append, w1_apply, w1_size;
	bool w1_eq;
	double w2_rate, w2_rev_rate;
	bool w2_eq, w2_rev_eq;
	double w3_rate;
	bool w3_eq;
	double w4_set, w4_apply;
	size_t w4_sets;
	bool w4_agree;
	double w5_bytes, w5_save_ms, w5_load_ms, w5_more_ms;
	bool w5_ok;
	double w6_rss, w6_live, w6_nolog;
	double sync_ms, sync_bytes;
	bool sync_ok;
	double t_w1, t_w2, t_w5load;
} result;

static void
run_all(size_t n, uint64_t seed, result *r, bool quiet)
{
	char extra[128];
	msgs am;
	rng_state = seed;
	msgs_init(&am, n + 1000);

	/* W1: A appends N; B applies them in order. */
	crdt_doc *a = replica(1, false);
	double t0 = now_s();
	for (size_t i = 0; i < n; i++)
		append(a, &am, i);
	double t1 = now_s();
	r->w1_append = n / (t1 - t0);
	r->w1_size = (double)am.all.len / (double)n;
	long rss0 = rss_bytes();
	long long live0 = live_bytes;
	crdt_doc *b = replica(2, true);
	t0 = now_s();
	for (size_t i = 0; i < n; i++)
		deliver(b, &am, i);
	read_newest(b);
	t1 = now_s();
	r->w6_rss = (double)(rss_bytes() - rss0) / (double)n;
	r->w6_live = (double)(live_bytes - live0) / (double)n;
	r->w1_apply = n / (t1 - t0);
	/* W6 (extra): a replica whose message log keeps one message (one
	 * that never serves sync from its log): the state and indexes alone. */
	{
		crdt_config c = cfg_count;
		c.log_max_msgs = 1;
		long long l0 = live_bytes;
		crdt_doc *e = replica_with(3, &c);
		for (size_t i = 0; i < n; i++)
			deliver(e, &am, i);
		r->w6_nolog = (double)(live_bytes - l0) / (double)n;
		crdt_doc_free(e);
	}
	r->t_w1 = t1 - t0;
	r->w1_eq = same(a, b);
	if (!quiet) {
		snprintf(extra, sizeof extra, "%.1f B/msg", r->w1_size);
		line("W1 append+encode", n, n / r->w1_append * 1.0, n, extra);
		snprintf(extra, sizeof extra, "B==A %s",
		    r->w1_eq ? "yes" : "NO");
		line("W1 apply in order", n, r->t_w1, n, extra);
		snprintf(extra, sizeof extra, "rss %.0f B/msg, live %.0f B/msg",
		    r->w6_rss, r->w6_live);
		line("W6 memory", n, r->t_w1, n, extra);
	}

	/* W2: shuffled (seeded) and fully reversed delivery to fresh C. */
	size_t *perm = malloc(n * sizeof *perm);
	for (size_t i = 0; i < n; i++)
		perm[i] = i;
	rng_state = seed + 100;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rng() % (i + 1)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	crdt_doc *c = replica(3, false);
	t0 = now_s();
	for (size_t k = 0; k < n; k++)
		deliver(c, &am, perm[k]);
	t1 = now_s();
	r->w2_rate = n / (t1 - t0);
	r->t_w2 = t1 - t0;
	r->w2_eq = crdt_doc_buffered(c) == 0 && same(b, c);
	crdt_doc_free(c);
	c = replica(3, false);
	t0 = now_s();
	for (size_t k = n; k-- > 0;)
		deliver(c, &am, k);
	t1 = now_s();
	r->w2_rev_rate = n / (t1 - t0);
	r->w2_rev_eq = crdt_doc_buffered(c) == 0 && same(b, c);
	crdt_doc_free(c);
	free(perm);
	if (!quiet) {
		snprintf(extra, sizeof extra, "C==B %s",
		    r->w2_eq ? "yes" : "NO");
		line("W2 random order", n, n / r->w2_rate, n, extra);
		snprintf(extra, sizeof extra, "C==B %s",
		    r->w2_rev_eq ? "yes" : "NO");
		line("W2 reversed", n, n / r->w2_rev_rate, n, extra);
	}

	/* W5: save B, load into a fresh replica, read newest, +1000. */
	crdt_buf snap;
	crdt_buf_init(&snap, NULL);
	t0 = now_s();
	CK(crdt_doc_save(b, &snap));
	t1 = now_s();
	r->w5_save_ms = (t1 - t0) * 1e3;
	r->w5_bytes = (double)snap.len;
	for (size_t i = n; i < n + 1000; i++)
		append(a, &am, i);
	crdt_doc *l = replica(4, false);
	t0 = now_s();
	CK(crdt_doc_load(l, snap.data, snap.len, NULL));
	read_newest(l);
	t1 = now_s();
	r->w5_load_ms = (t1 - t0) * 1e3;
	r->t_w5load = t1 - t0;
	t0 = now_s();
	for (size_t i = n; i < n + 1000; i++)
		deliver(l, &am, i);
	t1 = now_s();
	r->w5_more_ms = (t1 - t0) * 1e3;
	r->w5_ok = same(a, l);
	crdt_doc_free(l);
	crdt_buf_fini(&snap);
	if (!quiet) {
		snprintf(extra, sizeof extra, "%.0f bytes, %.1f B/msg, %.1f ms",
		    r->w5_bytes, r->w5_bytes / n, r->w5_save_ms);
		line("W5 save", n, r->w5_save_ms / 1e3, n, extra);
		snprintf(extra, sizeof extra, "%.1f ms", r->w5_load_ms);
		line("W5 load+read newest", n, r->w5_load_ms / 1e3, n, extra);
		snprintf(extra, sizeof extra, "%.2f ms, equals A %s",
		    r->w5_more_ms, r->w5_ok ? "yes" : "NO");
		line("W5 +1000 messages", 1000, r->w5_more_ms / 1e3, 1000,
		    extra);
	}
	crdt_doc_free(b);
	crdt_doc_free(a);
	msgs_fini(&am);

	/* W3: three writers append N/3 offline, then merge pairwise. */
	size_t third = n / 3 ? n / 3 : 1;
	crdt_doc *w[3];
	msgs wm[3];
	rng_state = seed + 200;
	for (int k = 0; k < 3; k++) {
		w[k] = replica((uint8_t)(10 + k), false);
		msgs_init(&wm[k], third);
		for (size_t i = 0; i < third; i++)
			append(w[k], &wm[k], i * 3 + (size_t)k);
	}
	t0 = now_s();
	for (int k = 0; k < 3; k++)
		for (int j = 0; j < 3; j++)
			if (j != k)
				for (size_t i = 0; i < third; i++)
					deliver(w[k], &wm[j], i);
	t1 = now_s();
	r->w3_rate = 6.0 * third / (t1 - t0);
	r->w3_eq = same(w[0], w[1]) && same(w[1], w[2]);
	for (int k = 0; k < 3; k++) {
		crdt_doc_free(w[k]);
		msgs_fini(&wm[k]);
	}
	if (!quiet) {
		snprintf(extra, sizeof extra, "all equal %s",
		    r->w3_eq ? "yes" : "NO");
		line("W3 3-writer merge", 6 * third, t1 - t0, 6 * third, extra);
	}

	/* W4: one register, rounds of three concurrent sets. */
	size_t rounds = (n + 2) / 3;
	crdt_doc *x[3];
	crdt_buf sb[3];
	for (int k = 0; k < 3; k++) {
		x[k] = replica((uint8_t)(20 + k), false);
		crdt_buf_init(&sb[k], NULL);
	}
	double set_t = 0, app_t = 0;
	bool agree = true;
	for (size_t i = 0; i < rounds; i++) {
		clock_ms = UINT64_C(1700000000000) + (uint64_t)i;
		double s0 = now_s();
		for (int k = 0; k < 3; k++) {
			uint64_t v = i * 3 + (uint64_t)k;
			crdt_buf_clear(&sb[k]);
			CK(crdt_doc_lww_set(x[k], 1, &v, sizeof v, &sb[k]));
		}
		double s1 = now_s();
		for (int k = 0; k < 3; k++)
			for (int j = 0; j < 3; j++)
				if (j != k)
					CK(crdt_doc_receive(x[k], sb[j].data,
					    sb[j].len, NULL));
		double s2 = now_s();
		set_t += s1 - s0;
		app_t += s2 - s1;
		const crdt_lww *g[3];
		const uint8_t *val[3];
		size_t vl[3];
		for (int k = 0; k < 3; k++) {
			CK(crdt_doc_lww(x[k], 1, &g[k]));
			CK(crdt_lww_get(g[k], &val[k], &vl[k]));
		}
		agree = agree && vl[0] == vl[1] && vl[1] == vl[2] &&
		    memcmp(val[0], val[1], vl[0]) == 0 &&
		    memcmp(val[1], val[2], vl[0]) == 0;
	}
	r->w4_set = 3.0 * rounds / set_t;
	r->w4_apply = 6.0 * rounds / app_t;
	r->w4_sets = 3 * rounds;
	r->w4_agree = agree;
	for (int k = 0; k < 3; k++) {
		crdt_doc_free(x[k]);
		crdt_buf_fini(&sb[k]);
	}
	if (!quiet) {
		line("W4 local sets", 3 * rounds, set_t, 3 * rounds, NULL);
		snprintf(extra, sizeof extra, "agree every round %s",
		    agree ? "yes" : "NO");
		line("W4 remote sets applied", 6 * rounds, app_t, 6 * rounds,
		    extra);
	}

	/* Sync: P and Q each hold N/2 messages the other lacks. */
	crdt_doc *p = replica(30, false), *q = replica(31, false);
	msgs pm, qm;
	msgs_init(&pm, n / 2 + 1);
	msgs_init(&qm, n / 2 + 1);
	rng_state = seed + 300;
	for (size_t i = 0; i < n / 2; i++) {
		append(p, &pm, 2 * i);
		append(q, &qm, 2 * i + 1);
	}
	crdt_buf f[4];
	for (int k = 0; k < 4; k++)
		crdt_buf_init(&f[k], NULL);
	t0 = now_s();
	CK(crdt_doc_sync_start(p, &f[0]));
	CK(crdt_doc_sync_handle(q, f[0].data, f[0].len, NULL, &f[1]));
	CK(crdt_doc_sync_handle(p, f[1].data, f[1].len, NULL, &f[2]));
	CK(crdt_doc_sync_handle(q, f[2].data, f[2].len, NULL, &f[3]));
	t1 = now_s();
	r->sync_ms = (t1 - t0) * 1e3;
	r->sync_bytes = (double)(f[0].len + f[1].len + f[2].len + f[3].len);
	r->sync_ok = same(p, q);
	for (int k = 0; k < 4; k++)
		crdt_buf_fini(&f[k]);
	crdt_doc_free(p);
	crdt_doc_free(q);
	msgs_fini(&pm);
	msgs_fini(&qm);
	if (!quiet) {
		snprintf(extra, sizeof extra, "%.1f ms, %.0f bytes, equal %s",
		    r->sync_ms, r->sync_bytes, r->sync_ok ? "yes" : "NO");
		line("Sync one round", n, t1 - t0, n, extra);
	}
}

static int
dcmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

/* Median of the runs, field by field (doubles only; flags are ANDed). */
static void
median(result *rs, int runs, result *out)
{
	*out = rs[0];
#define MED(field)                                                      \
	do {                                                            \
		double v[16];                                           \
		for (int i = 0; i < runs; i++)                          \
			v[i] = rs[i].field;                             \
		qsort(v, (size_t)runs, sizeof *v, dcmp);                \
		out->field = v[runs / 2];                               \
	} while (0)
	MED(w1_append);
	MED(w1_apply);
	MED(w2_rate);
	MED(w2_rev_rate);
	MED(w3_rate);
	MED(w4_set);
	MED(w4_apply);
	MED(w5_save_ms);
	MED(w5_load_ms);
	MED(w5_more_ms);
	/* RSS grows only in the first run: later runs reuse freed heap. */
	out->w6_rss = rs[0].w6_rss;
	MED(w6_live);
	MED(w6_nolog);
	MED(sync_ms);
#undef MED
	for (int i = 1; i < runs; i++) {
		out->w1_eq &= rs[i].w1_eq;
		out->w2_eq &= rs[i].w2_eq;
		out->w2_rev_eq &= rs[i].w2_rev_eq;
		out->w3_eq &= rs[i].w3_eq;
		out->w4_agree &= rs[i].w4_agree;
		out->w5_ok &= rs[i].w5_ok;
		out->sync_ok &= rs[i].sync_ok;
	}
}

static const char *
yn(bool b)
{
	return b ? "yes" : "NO";
}

static void
table(size_t n, int runs, const result *r)
{
	char b[64];
	printf("\n| metric (median of %d run%s) | libcrdt |\n|---|---:|\n", runs,
	    runs > 1 ? "s" : "");
#define ROW(name, fmt, val)                                             \
	do {                                                            \
		snprintf(b, sizeof b, fmt, val);                        \
		printf("| %s | %s |\n", name, b);                       \
		put(name, 0, b);                                        \
	} while (0)
	ROW("N (messages / sets)", "%zu", n);
	ROW("package version", "%s", crdt_version_string());
	ROW("W1 local append+encode at A, updates/s", "%.0f", r->w1_append);
	ROW("W1 apply in order at B, updates/s", "%.0f", r->w1_apply);
	ROW("W1 mean update size, bytes", "%.1f", r->w1_size);
	ROW("W1 (extra) same N updates in one batch call, updates/s", "%s",
	    "n/a (no batch API: per-message path is the fast path)");
	ROW("W1 B equals A", "%s", yn(r->w1_eq));
	ROW("W2 shuffled delivery to C, updates/s", "%.0f", r->w2_rate);
	ROW("W2 (extra) fully reversed delivery, updates/s", "%.0f",
	    r->w2_rev_rate);
	ROW("W2 C equals B (largest completed size)", "%s",
	    yn(r->w2_eq && r->w2_rev_eq));
	ROW("W3 3-writer merge, one update per call, updates/s", "%.0f",
	    r->w3_rate);
	ROW("W3 all 3 converge to same ordered list", "%s", yn(r->w3_eq));
	ROW("W4 local sets, sets/s", "%.0f", r->w4_set);
	ROW("W4 remote sets applied, updates/s", "%.0f", r->w4_apply);
	ROW("W4 sets completed (of N)", "%zu", r->w4_sets);
	ROW("W4 replicas agree on winner (every round)", "%s", yn(r->w4_agree));
	ROW("W5 snapshot size, bytes", "%.0f", r->w5_bytes);
	ROW("W5 snapshot bytes per message", "%.1f", r->w5_bytes / n);
	ROW("W5 save, ms", "%.1f", r->w5_save_ms);
	ROW("W5 load into fresh replica (+read last msg), ms", "%.1f",
	    r->w5_load_ms);
	ROW("W5 then apply 1000 further updates, ms", "%.2f", r->w5_more_ms);
	ROW("W5 load + 1000 updates, ms", "%.1f",
	    r->w5_load_ms + r->w5_more_ms);
	ROW("W5 loaded replica correct", "%s", yn(r->w5_ok));
	ROW("W6 rss bytes / message", "%.0f", r->w6_rss);
	ROW("W6 allocator live bytes / message", "%.0f", r->w6_live);
	ROW("W6 (extra) live bytes / message, message log bounded to 1", "%.0f",
	    r->w6_nolog);
	ROW("Sync one round (N/2 each way), ms", "%.1f", r->sync_ms);
	ROW("Sync one round, bytes on the wire", "%.0f", r->sync_bytes);
	ROW("Sync replicas equal", "%s", yn(r->sync_ok));
#undef ROW
}

static void
write_json(const char *path)
{
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		exit(1);
	}
	fprintf(f, "{\n");
	for (size_t i = 0; i < nfigs; i++) {
		fprintf(f, "  \"%s\": ", figs[i].key);
		if (figs[i].txt[0] != '\0')
			fprintf(f, "\"%s\"", figs[i].txt);
		else
			fprintf(f, "%.6g", figs[i].v);
		fprintf(f, "%s\n", i + 1 < nfigs ? "," : "");
	}
	fprintf(f, "}\n");
	fclose(f);
}

/* ---- security modes: signed / encrypted apply, size overhead ---- */

static crdt_doc *
sec_replica(uint8_t seed, bool sign, bool enc, crdt_identity **idp)
{
	static const uint8_t key[32] = { 7, 7, 7 };
	uint8_t s[32] = { 0 };
	crdt_replica_id id;
	crdt_doc *d;
	s[0] = seed;
	CK(crdt_identity_from_seed(NULL, s, idp));
	crdt_identity_replica_id(*idp, &id);
	CK(crdt_doc_new(&cfg_plain, &id, &d));
	crdt_doc_security sec = { sign, sign ? *idp : NULL, enc,
		enc ? key : NULL, 1, NULL, false };
	CK(crdt_doc_set_security(d, &sec));
	CK(crdt_doc_register_chat(d, "messages", NULL, NULL));
	CK(crdt_doc_register(d, "register", CRDT_OBJ_LWW, NULL));
	return d;
}

static void
run_secure(size_t n, uint64_t seed)
{
	static const char *names[4] = { "plain", "signed", "encrypted",
		"signed+encrypted" };
	double rate[4], size[4];
	char extra[96];
	msgs keep;
	for (int mode = 0; mode < 4; mode++) {
		bool sign = mode & 1, enc = mode & 2;
		crdt_identity *ia, *ib;
		crdt_doc *a = sec_replica(1, sign, enc, &ia);
		crdt_doc *b = sec_replica(2, sign, enc, &ib);
		msgs m;
		rng_state = seed;
		msgs_init(&m, n);
		for (size_t i = 0; i < n; i++)
			append(a, &m, i);
		size[mode] = (double)m.all.len / (double)n;
		double t0 = now_s();
		for (size_t i = 0; i < n; i++)
			deliver(b, &m, i);
		double t1 = now_s();
		rate[mode] = n / (t1 - t0);
		if (!same(a, b))
			exit(1);
		snprintf(extra, sizeof extra, "%.1f B/msg", size[mode]);
		char name[40];
		snprintf(name, sizeof name, "apply %s", names[mode]);
		line(name, n, t1 - t0, n, extra);
		crdt_doc_free(a);
		crdt_doc_free(b);
		crdt_identity_free(ia);
		crdt_identity_free(ib);
		if (mode == 1)
			keep = m;
		else
			msgs_fini(&m);
	}
	/* Raw baseline: Ed25519 verification of the same signed hashes. */
	uint8_t (*h)[32] = malloc(n * sizeof *h);
	/* Signed bytes are keyed by the document ID (all zero here). */
	uint8_t pers[16] = "crdt.msg.v2";
	static const uint8_t salt[16], docid[32];
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const uint8_t *p = msg_at(&keep, i, &len);
		crypto_generichash_blake2b_salt_personal(h[i], 32, p, len - 101,
		    docid, sizeof docid, salt, pers);
	}
	double t0 = now_s();
	size_t ok = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const uint8_t *p = msg_at(&keep, i, &len);
		ok += crypto_sign_verify_detached(p + len - 64, h[i], 32,
			  p + len - 64 - 2 - 32) == 0;
	}
	double t1 = now_s();
	if (ok != n)
		exit(1);
	double raw = n / (t1 - t0);
	line("raw crypto_sign_verify", n, t1 - t0, n, NULL);
	free(h);
	msgs_fini(&keep);
	printf("\n| security mode | apply, msgs/s | bytes/msg | overhead |\n"
	       "|---|---:|---:|---:|\n");
	for (int mode = 0; mode < 4; mode++)
		printf("| %s | %.0f | %.1f | +%.1f B |\n", names[mode], rate[mode],
		    size[mode], size[mode] - size[0]);
	printf("| raw Ed25519 verify of the same messages | %.0f | | |\n", raw);
	printf("| signed apply / raw verify | %.2f | | |\n", rate[1] / raw);
	put("signed apply / raw verify", rate[1] / raw, NULL);
}

/* ---- the compact-storage targets (docs/performance.md, "Targets") ---- */

/*
 * The floor (../shared/peers/floor.c: the least work any implementation
 * must do per chat update), run by this process so that every ratio
 * below comes from one run on one (noisy, 2-core) machine. Median of
 * three. NAN when the bench was built without the peers' folder.
 */
static double
floor_ns(const char *path, size_t n)
{
	double v[3];
	int k = 0;
	if (path == NULL)
		return NAN;
	for (int i = 0; i < 3; i++) {
		char cmd[4200];
		size_t got;
		double bpu, ns;
		snprintf(cmd, sizeof cmd, "'%s' %zu", path, n);
		FILE *p = popen(cmd, "r");
		if (p == NULL)
			return NAN;
		if (fscanf(p, "floor: %zu updates, %lf bytes/update, "
			      "%lf ns/update", &got, &bpu, &ns) == 3)
			v[k++] = ns;
		if (pclose(p) != 0)
			return NAN;
	}
	if (k != 3)
		return NAN;
	qsort(v, 3, sizeof *v, dcmp);
	return v[1];
}

typedef struct ilv {
	size_t n;
	double t_in, t_sh, live_in, live_sh;
	bool eq;
} ilv;

/*
 * Three writers posting in rounds (one post each, then each hears the
 * other two), so every message depends on the two other writers, as in
 * a live group chat. A fresh replica gets all of it in creation order,
 * another in a seeded shuffle (most messages wait in the causal buffer);
 * both timed, and their allocator-live bytes compared once the shuffled
 * one has drained its buffer.
 */
static void
run_interleaved(size_t n, uint64_t seed, ilv *r)
{
	crdt_doc *w[3];
	msgs m;
	msgs_init(&m, n);
	rng_state = seed + 300;
	for (int k = 0; k < 3; k++)
		w[k] = replica((uint8_t)(30 + k), false);
	for (size_t i = 0; i < n; i++) {
		append(w[i % 3], &m, i);
		if (i % 3 == 2 || i + 1 == n)
			for (size_t j = i - i % 3; j <= i; j++)
				for (size_t k = 0; k < 3; k++)
					if (k != j % 3)
						deliver(w[k], &m, j);
	}
	size_t *perm = malloc(n * sizeof *perm);
	for (size_t i = 0; i < n; i++)
		perm[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rng() % (i + 1)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	long long l0 = live_bytes;
	crdt_doc *x = replica(40, true);
	double t0 = now_s();
	for (size_t i = 0; i < n; i++)
		deliver(x, &m, i);
	double t1 = now_s();
	r->live_in = (double)(live_bytes - l0) / (double)n;
	r->t_in = t1 - t0;
	long long l1 = live_bytes;
	crdt_doc *y = replica(41, true);
	t0 = now_s();
	for (size_t i = 0; i < n; i++)
		deliver(y, &m, perm[i]);
	t1 = now_s();
	r->live_sh = (double)(live_bytes - l1) / (double)n;
	r->t_sh = t1 - t0;
	r->n = n;
	r->eq = crdt_doc_buffered(y) == 0 && same(x, y) && same(x, w[0]);
	free(perm);
	crdt_doc_free(x);
	crdt_doc_free(y);
	for (int k = 0; k < 3; k++)
		crdt_doc_free(w[k]);
	msgs_fini(&m);
}

/* One row of the targets table: value, target, met or MISS. */
static void
target_row(const char *name, double v, const char *fmt, bool le,
    double goal)
{
	char b[64], t[80];
	snprintf(b, sizeof b, fmt, v);
	const char *verdict = isnan(v)	     ? "n/a (no floor in this build)" :
	    (le ? v <= goal : v >= goal) ? "met" :
					   "MISS";
	printf("| %s | %s | %s %g | %s |\n", name, b, le ? "<=" : ">=", goal,
	    verdict);
	snprintf(t, sizeof t, "%s (target %s %g)", name, le ? "<=" : ">=",
	    goal);
	put(t, v, NULL);
}

static void
targets(size_t n, const result *r, const ilv *iv, double fl)
{
	printf("\n| target (N = %zu; interleaved N = %zu) | libcrdt | target "
	       "| |\n|---|---:|---:|---|\n", n, iv->n);
	printf("| floor (../shared/peers/floor.c, same run), ns/update | "
	       "%.0f | | |\n", fl);
	put("floor ns/update", fl, NULL);
	target_row("W5 snapshot bytes / message", r->w5_bytes / (double)n,
	    "%.1f", true, 50);
	target_row("W6 allocator-live bytes / message", r->w6_live, "%.0f",
	    true, 120);
	target_row("W1 apply rate / floor rate", fl * r->w1_apply / 1e9,
	    "%.3f", false, 0.33);
	target_row("W5 load ns/message / floor ns/message",
	    r->w5_load_ms * 1e6 / (double)n / fl, "%.2f", true, 1.0);
	target_row("3 interleaved writers: shuffled / in-order time",
	    iv->t_sh / iv->t_in, "%.2f", true, 3);
	target_row("memory after out-of-order delivery drains / in-order",
	    iv->live_sh / iv->live_in, "%.2f", true, 1.1);
}

static double
fit_exponent(const double *ns, const double *ts, int k)
{
	double sx = 0, sy = 0, sxx = 0, sxy = 0;
	for (int i = 0; i < k; i++) {
		double x = log(ns[i]), y = log(ts[i]);
		sx += x;
		sy += y;
		sxx += x * x;
		sxy += x * y;
	}
	return (k * sxy - sx * sy) / (k * sxx - sx * sx);
}

int
main(int argc, char **argv)
{
	size_t n = 100000;
	uint64_t seed = 42;
	int runs = 1;
	const char *json_path = NULL, *floor_path = NULL;
	size_t ilv_n = 0;
	bool scaling = false, secure = false;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
			n = (size_t)strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
			json_path = argv[++i];
		else if (strcmp(argv[i], "--floor") == 0 && i + 1 < argc)
			floor_path = argv[++i];
		else if (strcmp(argv[i], "--interleaved") == 0 && i + 1 < argc)
			ilv_n = (size_t)strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--scaling") == 0)
			scaling = true;
		else if (strcmp(argv[i], "--secure") == 0)
			secure = true;
		else {
			fprintf(stderr, "usage: %s [--n N] [--seed S] "
					"[--runs R] [--json FILE] [--scaling] "
					"[--secure] [--floor PATH] "
					"[--interleaved N]\n",
			    argv[0]);
			return 2;
		}
	}
	if (n < 3 || runs < 1 || runs > 15)
		return 2;
	if (ilv_n == 0)
		ilv_n = n;
	if (ilv_n < 3)
		return 2;
	crdt_config_default(&cfg_plain);
	cfg_plain.clock = fake_clock;
	cfg_plain.max_buffered_msgs = (size_t)4 << 20;
	cfg_plain.max_buffered_bytes = (size_t)1 << 31;
	cfg_plain.max_sender_buffered = (size_t)1 << 31;
	cfg_plain.log_max_msgs = (size_t)4 << 20;
	cfg_plain.log_max_bytes = (size_t)1 << 31;
	cfg_plain.limits.max_bytes = (size_t)1 << 31;
	cfg_plain.limits.max_elems = (size_t)1 << 28;
	cfg_count = cfg_plain;
	cfg_count.alloc = (crdt_allocator){ a_alloc, a_realloc, a_free, NULL };

	printf("libcrdt %s bench: seed %" PRIu64 ", %d run%s\n",
	    crdt_version_string(), seed, runs, runs > 1 ? "s" : "");
	printf("%-28s %9s %10s %12s  %s\n", "name", "n", "ns/op", "ops/s",
	    "extra");
	if (secure) {
		run_secure(n, seed);
	} else if (scaling) {
		double ns[3] = { 10000, 100000, 1000000 }, t1[3], t2[3], t5[3];
		for (int k = 0; k < 3; k++) {
			result r;
			char key[64];
			size_t sz = (size_t)ns[k];
			run_all(sz, seed, &r, true);
			t1[k] = r.t_w1;
			t2[k] = r.t_w2;
			t5[k] = r.t_w5load;
			line("scale W1 apply", sz, t1[k], sz, NULL);
			line("scale W2 random", sz, t2[k], sz, NULL);
			line("scale W5 load", sz, t5[k], sz, NULL);
			/* Per size, for tools/plot.sh: ns per message of each
			 * delivery order and of load, bytes per message of the
			 * snapshot and of memory, and the floor. */
			const struct {
				const char *what;
				double v;
			} f[] = {
				{ "in-order ns", t1[k] * 1e9 / ns[k] },
				{ "shuffled ns", 1e9 / r.w2_rate },
				{ "reversed ns", 1e9 / r.w2_rev_rate },
				{ "load ns", t5[k] * 1e9 / ns[k] },
				{ "snapshot B", r.w5_bytes / ns[k] },
				{ "live B", r.w6_live },
				{ "floor ns", floor_ns(floor_path, sz) },
			};
			for (size_t j = 0; j < sizeof f / sizeof f[0]; j++) {
				snprintf(key, sizeof key, "scale %zu %s", sz,
				    f[j].what);
				put(key, f[j].v, NULL);
			}
		}
		printf("\n| exponent (10k..1M, least squares) | libcrdt |\n"
		       "|---|---:|\n| W1 apply | %.3f |\n| W2 random order "
		       "| %.3f |\n| W5 load | %.3f |\n",
		    fit_exponent(ns, t1, 3), fit_exponent(ns, t2, 3),
		    fit_exponent(ns, t5, 3));
		put("scaling W1 exponent", fit_exponent(ns, t1, 3), NULL);
		put("scaling W2 exponent", fit_exponent(ns, t2, 3), NULL);
		put("scaling W5 load exponent", fit_exponent(ns, t5, 3), NULL);
	} else {
		result rs[15], med;
		for (int i = 0; i < runs; i++)
			run_all(n, seed, &rs[i], i + 1 < runs);
		median(rs, runs, &med);
		table(n, runs, &med);
		ilv iv;
		run_interleaved(ilv_n, seed, &iv);
		targets(n, &med, &iv, floor_ns(floor_path, n));
		if (!(iv.eq && med.w1_eq && med.w2_eq && med.w2_rev_eq && med.w3_eq &&
			med.w4_agree && med.w5_ok && med.sync_ok)) {
			fprintf(stderr, "a correctness check failed\n");
			return 1;
		}
	}
	if (json_path != NULL)
		write_json(json_path);
	(void)get;
	(void)json;
	return 0;
}
