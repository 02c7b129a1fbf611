/*
 * crdt store: an SQLite store (include/crdt/store.h) seen from outside.
 * Every subcommand opens the store with must_exist, so a missing or empty
 * file is never turned into a new store, and opening runs the store's own
 * integrity checks (quick_check, schema, every digest and dot). The store
 * API has no call that drops messages or vacuums: compact takes a
 * checkpoint (what bounds a restart), nothing else (docs/cli.md).
 */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "cli.h"

static const char store_help[] =
    "usage: crdt store list DB\n"
    "       crdt store export [DOC OPTIONS] DB (-o OUT | --messages DIR)\n"
    "       crdt store compact [DOC OPTIONS] DB\n"
    "       crdt store check DB\n\n"
    "  list     the checkpoint (size, clock), the loaded snapshot records\n"
    "           (count, bytes) and every stored message (dot, stamp, size,\n"
    "           whether the checkpoint covers it) as JSON\n"
    "  export   -o OUT: the snapshot of the checkpoint, the loaded snapshot\n"
    "           records and every message after it; --messages DIR: each\n"
    "           message to DIR/<replica>-<counter>-<n>.msg\n"
    "  compact  restart a document from the store and checkpoint it, so a\n"
    "           restart replays only what follows (the log is kept whole:\n"
    "           the store API drops no message)\n"
    "  check    open with the store's integrity checks, read every message,\n"
    "           loaded snapshot record and the checkpoint, load the\n"
    "           checkpoint into a document\n"
    "DOC OPTIONS (as merge): --schema S (a store without a checkpoint),\n"
    "--key FILE, --epoch N, --doc-id HEX, --admin-key HEX, --chat-server HEX.\n"
    "Exit: 0 ok, 1 corrupt (check) or refused, 2 usage, 3 I/O or missing,\n"
    "4 malformed.\n";

static int
open_store(const char *path, crdt_store **s)
{
	crdt_store_sqlite_opts so;
	memset(&so, 0, sizeof so);
	so.must_exist = true;
	int rc = crdt_store_open_sqlite(NULL, path, &so, s);
	if (rc != 0) {
		cli_err("store", "%s: %s (%s)", path, crdt_strerror(rc),
		    crdt_err_name(rc));
		return rc == CRDT_ECORRUPT || rc == CRDT_EVERSION ? EXIT_FAULT :
									    EXIT_IO;
	}
	return 0;
}

/* Store errors met on a store already open: corruption is a fault. */
static int
store_exit(int rc)
{
	return rc == CRDT_ECORRUPT ? EXIT_FAULT : cli_exit_of(rc);
}

typedef struct lister {
	json_t *msgs;
	const crdt_vclock *covers;
	uint64_t n, bytes;
	const char *dir; /* export --messages */
	int st;
} lister;

static int
on_msg(void *ud, crdt_dot dot, const uint8_t *b, size_t len)
{
	lister *l = ud;
	uint64_t hlc = 0;
	l->n++;
	l->bytes += len;
	if (crdt_msg_peek(b, len, NULL, &hlc) != 0)
		hlc = 0; /* stored bytes the store checked: not expected */
	if (l->msgs != NULL) {
		json_t *m = json_object();
		json_object_set_new(m, "dot", cli_json_dot(dot));
		json_object_set_new(m, "hlc", cli_json_hlc(hlc));
		json_object_set_new(m, "bytes", cli_json_u64(len));
		json_object_set_new(m, "covered_by_checkpoint", json_boolean(
		    l->covers != NULL && crdt_vclock_covers(l->covers, dot)));
		json_array_append_new(l->msgs, m);
	}
	if (l->dir != NULL) {
		char hex[33], path[4096];
		crdt_replica_id_hex(&dot.replica, hex);
		snprintf(path, sizeof path, "%s/%s-%llu-%llu.msg", l->dir, hex,
		    (unsigned long long)dot.counter, (unsigned long long)l->n);
		if ((l->st = cli_write_file("store", path, b, len)) != 0)
			return CRDT_EIO;
	}
	return 0;
}

/* Every message, from cursor 0 with the empty clock. */
static int
walk(crdt_store *s, lister *l)
{
	crdt_vclock *none;
	uint64_t cur = 0;
	bool more = true;
	int rc = crdt_vclock_new(NULL, &none);
	/* Each page moves the cursor; the store refuses a backend that
	 * does not (CRDT_ECORRUPT), so this loop ends. */
	while (rc == 0 && more)
		rc = crdt_store_since(s, none, &cur, 1u << 20, on_msg, l, &more);
	crdt_vclock_free(none);
	return rc;
}

/* Loaded snapshot records (crdt_store_snapshots): how many, how big. */
typedef struct recs_count {
	uint64_t n, bytes;
} recs_count;

static int
count_rec(void *ud, uint64_t id, const uint8_t *b, size_t len)
{
	recs_count *c = ud;
	(void)id;
	(void)b;
	c->n++;
	c->bytes += len;
	return 0;
}

static int
store_list(crdt_store *s, const char *db)
{
	crdt_buf snap;
	crdt_vclock *covers = NULL;
	lister l = { json_array(), NULL, 0, 0, NULL, 0 };
	json_t *j = json_object();

	crdt_buf_init(&snap, NULL);
	int rc = crdt_store_checkpoint(s, &snap, &covers);
	if (rc == 0) {
		json_t *c = json_object();
		json_object_set_new(c, "bytes", cli_json_u64(snap.len));
		json_object_set_new(c, "covers", cli_json_clock(covers));
		json_object_set_new(j, "checkpoint", c);
		l.covers = covers;
	} else if (rc == CRDT_ENOTFOUND) {
		json_object_set_new(j, "checkpoint", json_null());
		rc = 0;
	}
	recs_count rc2 = { 0, 0 };
	if (rc == 0)
		rc = walk(s, &l);
	if (rc == 0)
		rc = crdt_store_snapshots(s, count_rec, &rc2);
	json_object_set_new(j, "db", json_string(db));
	json_object_set_new(j, "loaded_snapshots", cli_json_u64(rc2.n));
	json_object_set_new(j, "loaded_snapshot_bytes",
	    cli_json_u64(rc2.bytes));
	json_object_set_new(j, "message_count", cli_json_u64(l.n));
	json_object_set_new(j, "message_bytes", cli_json_u64(l.bytes));
	json_object_set_new(j, "messages", l.msgs);
	crdt_vclock_free(covers);
	crdt_buf_fini(&snap);
	if (rc != 0) {
		json_decref(j);
		cli_err("store", "%s: %s (%s)", db, crdt_strerror(rc),
		    crdt_err_name(rc));
		return store_exit(rc);
	}
	return cli_json_print(j);
}

/* The loaded snapshot records (crdt_store_snapshots), copied back to
 * back: they are merged after the checkpoint and before the messages,
 * from inside crdt_store_load's callback, where the store cannot be
 * called. */
typedef struct recs {
	crdt_buf bytes;
	size_t end[4096];
	size_t n;
} recs;

static int
on_rec(void *ud, uint64_t id, const uint8_t *b, size_t len)
{
	recs *r = ud;
	(void)id;
	if (r->n == sizeof r->end / sizeof r->end[0])
		return CRDT_ETOOBIG;
	int rc = crdt_buf_append(&r->bytes, b, len);
	if (rc == 0)
		r->end[r->n++] = r->bytes.len;
	return rc;
}

typedef struct feeder {
	crdt_doc *d;
	const crdt_buf *snap;
	const recs *recs;
	bool loaded;
	uint64_t refused;
	int first_rc;
} feeder;

/* crdt_store_load appends the checkpoint before it hands out the first
 * message: the snapshot is loaded then, then the loaded snapshot
 * records, so messages land on them (the restart order, storage.md). */
static int
load_snap(feeder *f)
{
	if (f->loaded)
		return 0;
	f->loaded = true;
	int rc = f->snap->len > 0 ?
	    crdt_doc_load(f->d, f->snap->data, f->snap->len, NULL) : 0;
	for (size_t i = 0; rc == 0 && i < f->recs->n; i++) {
		size_t at = i == 0 ? 0 : f->recs->end[i - 1];
		rc = crdt_doc_load(f->d, f->recs->bytes.data + at,
		    f->recs->end[i] - at, NULL);
	}
	return rc;
}

static int
feed(void *ud, crdt_dot dot, const uint8_t *b, size_t len)
{
	feeder *f = ud;
	(void)dot;
	int rc = load_snap(f);
	if (rc != 0)
		return rc;
	rc = crdt_doc_receive(f->d, b, len, NULL);
	if (rc != 0 && f->refused++ == 0)
		f->first_rc = rc;
	return rc == CRDT_ENOMEM ? rc : 0;
}

static int
first_rec(void *ud, uint64_t id, const uint8_t *b, size_t len)
{
	crdt_buf *out = ud;
	(void)id;
	return out->len == 0 ? crdt_buf_append(out, b, len) : 0;
}

/* A document holding what the store holds: its checkpoint, then every
 * message after it (crdt_store_load). */
static int
store_doc(crdt_store *s, const cli_docopts *o, const char *db, crdt_doc **out)
{
	crdt_buf snap;
	crdt_vclock *covers = NULL;
	const char *why = NULL;
	int rc;

	crdt_buf_init(&snap, NULL);
	rc = crdt_store_checkpoint(s, &snap, &covers);
	crdt_vclock_free(covers);
	/* No checkpoint yet: a loaded snapshot record names the schema as
	 * well (the first one; no record: --schema is needed). */
	if (rc == CRDT_ENOTFOUND) {
		int r2 = crdt_store_snapshots(s, first_rec, &snap);
		rc = r2 != 0 ? r2 : snap.len > 0 ? 0 : CRDT_ENOTFOUND;
	}
	if (rc != 0 && rc != CRDT_ENOTFOUND) {
		cli_err("store", "%s: checkpoint: %s", db, crdt_err_name(rc));
		crdt_buf_fini(&snap);
		return store_exit(rc);
	}
	rc = rc == 0 && o->schema == NULL ?
	    cli_doc_for(o, snap.data, snap.len, out, &why) :
	    cli_doc_for(o, NULL, 0, out, &why);
	crdt_buf_fini(&snap);
	if (rc != 0) {
		cli_err("store", "%s: %s (%s)", db, why, crdt_err_name(rc));
		return rc == CRDT_EINVAL ? EXIT_USAGE : cli_exit_of(rc);
	}
	return 0;
}

static int
store_export(crdt_store *s, const cli_docopts *o, const char *db,
    const char *outp, const char *dir)
{
	if (dir != NULL) {
		lister l = { NULL, NULL, 0, 0, dir, 0 };
		int rc = walk(s, &l);
		if (rc != 0) {
			if (l.st != 0)
				return l.st;
			cli_err("store", "%s: %s", db, crdt_err_name(rc));
			return store_exit(rc);
		}
		if (outp == NULL)
			return 0;
	}
	crdt_doc *d = NULL;
	crdt_buf snap, out;
	bool has;
	int st = store_doc(s, o, db, &d);
	if (st != 0)
		return st;
	crdt_buf_init(&snap, NULL);
	crdt_buf_init(&out, NULL);
	static recs r;
	r.n = 0;
	crdt_buf_init(&r.bytes, NULL);
	feeder f = { d, &snap, &r, false, 0, 0 };
	int rc = crdt_store_snapshots(s, on_rec, &r);
	if (rc == 0)
		rc = crdt_store_load(s, &snap, &has, feed, &f);
	if (rc == 0)
		rc = load_snap(&f);
	if (rc == 0 && f.refused > 0) {
		cli_err("store", "%s: %llu stored messages refused (first: %s)",
		    db, (unsigned long long)f.refused, crdt_err_name(f.first_rc));
		st = EXIT_FAULT;
	} else if (rc != 0) {
		cli_err("store", "%s: %s (%s)", db, crdt_strerror(rc),
		    crdt_err_name(rc));
		st = store_exit(rc);
	} else if ((rc = crdt_doc_save(d, &out)) != 0) {
		cli_err("store", "save: %s", crdt_err_name(rc));
		st = EXIT_IO;
	} else {
		st = cli_write_file("store", outp, out.data, out.len);
	}
	crdt_doc_free(d);
	crdt_buf_fini(&snap);
	crdt_buf_fini(&out);
	crdt_buf_fini(&r.bytes);
	return st;
}

static int
store_compact(crdt_store *s, const cli_docopts *o, const char *db)
{
	crdt_doc *d = NULL;
	int st = store_doc(s, o, db, &d);
	if (st != 0)
		return st;
	int rc = crdt_doc_open_store(d, s, 0);
	if (rc == 0)
		rc = crdt_doc_checkpoint(d);
	if (rc == 0)
		rc = crdt_doc_attach_store(d, NULL, 0);
	if (rc != 0) {
		cli_err("store", "%s: %s (%s)", db, crdt_strerror(rc),
		    crdt_err_name(rc));
		st = store_exit(rc);
	} else {
		json_t *j = json_object();
		crdt_vclock *vc = NULL;
		json_object_set_new(j, "db", json_string(db));
		json_object_set_new(j, "checkpoint", json_true());
		if (crdt_doc_vclock(d, &vc) == 0)
			json_object_set_new(j, "covers", cli_json_clock(vc));
		crdt_vclock_free(vc);
		st = cli_json_print(j);
	}
	crdt_doc_free(d);
	return st;
}

static int
store_check(crdt_store *s, const char *db)
{
	crdt_buf snap;
	crdt_vclock *covers = NULL;
	lister l = { NULL, NULL, 0, 0, NULL, 0 };
	crdt_doc *d = NULL;
	cli_docopts o;
	const char *why = "";

	memset(&o, 0, sizeof o);
	crdt_buf_init(&snap, NULL);
	int rc = crdt_store_checkpoint(s, &snap, &covers);
	bool has = rc == 0;
	if (rc == CRDT_ENOTFOUND)
		rc = 0;
	recs_count rcn = { 0, 0 };
	if (rc == 0)
		rc = walk(s, &l);
	if (rc == 0)
		rc = crdt_store_snapshots(s, count_rec, &rcn);
	int st = rc != 0 ? store_exit(rc) : 0;
	if (rc != 0) {
		cli_err("store", "%s: %s (%s)", db, crdt_strerror(rc),
		    crdt_err_name(rc));
	} else if (has && cli_kind(snap.data, snap.len, NULL) == 6) {
		/* A plain checkpoint must load (sealed ones need the key,
		 * which check does not take). */
		rc = cli_doc_for(&o, snap.data, snap.len, &d, &why);
		if (rc == 0)
			rc = crdt_doc_load(d, snap.data, snap.len, NULL);
		/* Missing settings (an allowlist) are not corruption. */
		if (rc != 0 && rc != CRDT_EINVAL) {
			cli_err("store", "%s: checkpoint does not load: %s", db,
			    crdt_err_name(rc));
			st = EXIT_FAULT;
		}
	}
	if (st == 0) {
		json_t *j = json_object();
		json_object_set_new(j, "db", json_string(db));
		json_object_set_new(j, "ok", json_true());
		json_object_set_new(j, "checkpoint", json_boolean(has));
		json_object_set_new(j, "message_count", cli_json_u64(l.n));
		json_object_set_new(j, "loaded_snapshots", cli_json_u64(rcn.n));
		st = cli_json_print(j);
	}
	crdt_doc_free(d);
	crdt_vclock_free(covers);
	crdt_buf_fini(&snap);
	return st;
}

int
cmd_store(int argc, char **argv)
{
	cli_opt opts[] = { CLI_DOC_OPTS, { "output", true, NULL },
		{ "messages", true, NULL } };
	cli_args a;
	cli_docopts o;
	uint8_t key[32];
	crdt_store *s = NULL;
	int rc;

	if ((rc = cli_parse("store", argc, argv, opts,
		 sizeof opts / sizeof opts[0], &a)) != 0)
		return rc;
	if (a.help) {
		fputs(store_help, stdout);
		return EXIT_OK;
	}
	if (a.npos != 2) {
		cli_err("store", "a subcommand and a DB are needed (try --help)");
		return EXIT_USAGE;
	}
	const char *sub = a.pos[0], *db = a.pos[1];
	const char *outp = opts[CLI_DOC_NOPTS].value;
	const char *dir = opts[CLI_DOC_NOPTS + 1].value;
	bool exp = strcmp(sub, "export") == 0;
	if (!exp && strcmp(sub, "list") != 0 && strcmp(sub, "compact") != 0 &&
	    strcmp(sub, "check") != 0) {
		cli_err("store", "unknown subcommand '%s' (try --help)", sub);
		return EXIT_USAGE;
	}
	if (exp && outp == NULL && dir == NULL) {
		cli_err("store", "export needs -o OUT or --messages DIR");
		return EXIT_USAGE;
	}
	if ((rc = cli_docopts_parse("store", opts, &o, key)) != 0)
		return rc;
	if ((rc = open_store(db, &s)) != 0)
		return rc;
	if (strcmp(sub, "list") == 0)
		rc = store_list(s, db);
	else if (exp)
		rc = store_export(s, &o, db, outp, dir);
	else if (strcmp(sub, "compact") == 0)
		rc = store_compact(s, &o, db);
	else
		rc = store_check(s, db);
	crdt_store_close(s);
	memset(key, 0, sizeof key);
	return rc;
}
