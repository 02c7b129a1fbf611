/*
 * crdt verify: strict checks of files, one line per fault on stderr.
 * Each check is the library's own where it has one (crdt_msg_peek, the
 * object decoders, crdt_doc_load, crdt_msg_verify), then canonical form
 * by re-encoding: a snapshot is loaded into a fresh document and saved
 * again (crdt_doc_save is canonical), an object state or clock is decoded
 * and encoded, and every input is re-packed by msgpack-c, whose smallest
 * forms are the only ones libcrdt accepts.
 */
#include <string.h>

#include "cli.h"

static const char verify_help[] =
    "usage: crdt verify [--doc-id HEX] [--key FILE] [--epoch N] [--signed]\n"
    "                   [--schema S] [--admin-key HEX] [--chat-server HEX]\n"
    "                   FILE...\n\n"
    "Strict checks of each FILE (message, snapshot, sealed snapshot, HELLO,\n"
    "DATA, vector clock, object state): decoding within the default\n"
    "limits, canonical form, and signatures of messages (alone, in frames\n"
    "and in snapshots) when --doc-id is given. Prints 'FILE: ok' on stdout\n"
    "for each file that passes, one line per fault on stderr.\n"
    "  --doc-id HEX  check signatures for this document (64 hex digits)\n"
    "  --signed      every message must carry a signature\n"
    "  --key FILE    open sealed payloads and snapshots (and --epoch N)\n"
    "Exit: 0 all pass, 1 a fault (bad signature, sealed without key...),\n"
    "2 usage, 3 I/O, 4 malformed or not canonical.\n";

typedef struct vctx {
	const char *file;
	const cli_docopts *o;
	bool require_signed;
	int status; /* worst so far: EXIT_IO > EXIT_MALFORMED > EXIT_FAULT */
} vctx;

static int
rank(int st)
{
	return st == EXIT_IO ? 3 : st == EXIT_MALFORMED ? 2 : st != 0 ? 1 : 0;
}

static void
fault(vctx *v, int st, const char *what, int rc)
{
	if (rc != 0)
		fprintf(stderr, "%s: %s: %s\n", v->file, what, crdt_err_name(rc));
	else
		fprintf(stderr, "%s: %s\n", v->file, what);
	if (rank(st) > rank(v->status))
		v->status = st;
}

static bool
canonical(vctx *v, const uint8_t *b, size_t len, const char *what)
{
	msgpack_zone z;
	msgpack_object root;

	msgpack_zone_init(&z, 4096);
	int rc = cli_mp_parse(b, len, &z, &root);
	if (rc != 0)
		fault(v, EXIT_MALFORMED, what, rc);
	else if (!cli_mp_canonical(&root, b, len))
		fault(v, EXIT_MALFORMED, "not canonical (a non-minimal form)", 0);
	msgpack_zone_destroy(&z);
	return rc == 0;
}

/* Whether the auth slot (the last field) holds a signature. */
static bool
msg_signed(const uint8_t *b, size_t len)
{
	msgpack_zone z;
	msgpack_object root;
	bool s = false;

	msgpack_zone_init(&z, 1024);
	if (cli_mp_parse(b, len, &z, &root) == 0) {
		const msgpack_object_array *a = cli_mp_array(&root);
		s = a != NULL && a->size == 8 &&
		    a->ptr[7].type == MSGPACK_OBJECT_ARRAY;
	}
	msgpack_zone_destroy(&z);
	return s;
}

static void
check_message(vctx *v, const uint8_t *b, size_t len, const char *where)
{
	char what[96];
	int rc = crdt_msg_peek(b, len, NULL, NULL);

	snprintf(what, sizeof what, "%smessage envelope", where);
	if (rc != 0) {
		fault(v, cli_exit_of(rc), what, rc);
		return;
	}
	if (!canonical(v, b, len, what))
		return;
	snprintf(what, sizeof what, "%ssignature", where);
	if (!msg_signed(b, len)) {
		if (v->require_signed)
			fault(v, EXIT_FAULT, what, CRDT_EBADSIG);
	} else if (v->o->have_doc_id) {
		/* A signature binds the document ID: it can only be
		 * checked for a document we are told. */
		rc = crdt_msg_verify(b, len, &v->o->doc_id, NULL);
		if (rc != 0)
			fault(v, rc == CRDT_ENOMEM ? EXIT_IO : EXIT_FAULT, what, rc);
	}
	crdt_buf plain;
	uint32_t ep;
	crdt_buf_init(&plain, NULL);
	rc = crdt_msg_payload(b, len, v->o->have_doc_id ? &v->o->doc_id : NULL,
	    v->o->key, &plain, &ep);
	snprintf(what, sizeof what, "%spayload", where);
	if (rc == CRDT_ENOKEY)
		; /* sealed, no key: the ops cannot be read, not a fault */
	else if (rc != 0)
		fault(v, cli_exit_of(rc), what, rc);
	else {
		/* [op, ...], each op [obj, field...] */
		msgpack_zone z;
		msgpack_object root;
		msgpack_zone_init(&z, 4096);
		int prc = cli_mp_parse(plain.data, plain.len, &z, &root);
		const msgpack_object_array *a = prc == 0 ? cli_mp_array(&root) :
							   NULL;
		bool ok = a != NULL && cli_mp_canonical(&root, plain.data,
		    plain.len);
		for (uint32_t i = 0; ok && a != NULL && i < a->size; i++) {
			const msgpack_object_array *op = cli_mp_array(&a->ptr[i]);
			uint64_t obj;
			ok = op != NULL && op->size >= 2 &&
			    cli_mp_uint(&op->ptr[0], &obj);
		}
		if (!ok)
			fault(v, EXIT_MALFORMED, what, CRDT_EMALFORMED);
		msgpack_zone_destroy(&z);
	}
	cli_wipe(&plain);
	crdt_buf_fini(&plain);
}

static void
check_snapshot(vctx *v, const uint8_t *b, size_t len)
{
	crdt_buf plain, again;
	crdt_doc *d = NULL;
	const char *why = NULL;
	int rc;

	crdt_buf_init(&plain, NULL);
	crdt_buf_init(&again, NULL);
	if (cli_kind(b, len, NULL) == 10 && !canonical(v, b, len, "sealed snapshot"))
		goto out;
	rc = cli_plain_snapshot(v->o, b, len, &plain);
	if (rc == CRDT_ENOKEY) {
		fault(v, EXIT_FAULT, "sealed snapshot: give --key to check it", 0);
		goto out;
	}
	if (rc != 0) {
		fault(v, cli_exit_of(rc), "sealed snapshot", rc);
		goto out;
	}
	if (!canonical(v, plain.data, plain.len, "snapshot"))
		goto out;
	if ((rc = cli_doc_for(v->o, plain.data, plain.len, &d, &why)) != 0) {
		fault(v, rc == CRDT_EINVAL ? EXIT_FAULT : cli_exit_of(rc), why, rc);
		goto out;
	}
	/* Buffered and evidence messages pass what receive checks,
	 * signatures included (docs/document.md). */
	if ((rc = crdt_doc_load(d, plain.data, plain.len, NULL)) != 0) {
		fault(v, cli_exit_of(rc), "snapshot load", rc);
		goto out;
	}
	if ((rc = crdt_doc_save(d, &again)) != 0) {
		fault(v, EXIT_IO, "snapshot save", rc);
		goto out;
	}
	if (again.len != plain.len || memcmp(again.data, plain.data, plain.len))
		fault(v, EXIT_MALFORMED,
		    "snapshot: not canonical (saving it again gives other bytes)",
		    0);
	if (v->require_signed) {
		msgpack_zone z;
		msgpack_object root;
		cli_snap f;
		msgpack_zone_init(&z, 4096);
		if (cli_mp_parse(plain.data, plain.len, &z, &root) == 0 &&
		    cli_snap_fields(&root, &f) == 0) {
			for (uint32_t i = 0; i < f.buffered->size; i++) {
				const uint8_t *p;
				size_t n;
				if (cli_mp_bin(&f.buffered->ptr[i], &p, &n))
					check_message(v, p, n, "buffered ");
			}
		}
		msgpack_zone_destroy(&z);
	}
out:
	crdt_doc_free(d);
	cli_wipe(&plain);
	crdt_buf_fini(&plain);
	crdt_buf_fini(&again);
}

/* [id, c, ...]: IDs strictly ascending, counters >= 1. */
static bool
clock_ok(const msgpack_object_array *c)
{
	crdt_replica_id prev, id;
	uint64_t n;
	if (c == NULL || c->size % 2 != 0)
		return false;
	for (uint32_t i = 0; i < c->size; i += 2) {
		if (!cli_mp_id(&c->ptr[i], &id) || !cli_mp_uint(&c->ptr[i + 1], &n) ||
		    n == 0 || (i > 0 && crdt_replica_id_cmp(&prev, &id) >= 0))
			return false;
		prev = id;
	}
	return true;
}

/* The counter `id` has in clock c (clock_ok), or 0. */
static uint64_t
clock_entry(const msgpack_object_array *c, const crdt_replica_id *id)
{
	crdt_replica_id x;
	uint64_t n;
	for (uint32_t i = 0; i + 1 < c->size; i += 2)
		if (cli_mp_id(&c->ptr[i], &x) && crdt_replica_id_cmp(&x, id) == 0)
			return cli_mp_uint(&c->ptr[i + 1], &n) ? n : 0;
	return 0;
}

/* Version 4's digests [id, lo, digest, ...] against the frame's clock:
 * IDs strictly ascending, each in the clock, 1 <= lo <= its entry, a
 * 16-byte digest (wire-format.md, "Sync"). */
static bool
digests_ok(const msgpack_object_array *d, const msgpack_object_array *clk)
{
	crdt_replica_id prev, id;
	uint64_t lo;
	const uint8_t *p;
	size_t n;
	if (d == NULL || clk == NULL || d->size % 3 != 0)
		return false;
	for (uint32_t i = 0; i < d->size; i += 3) {
		if (!cli_mp_id(&d->ptr[i], &id) ||
		    !cli_mp_uint(&d->ptr[i + 1], &lo) ||
		    !cli_mp_bin(&d->ptr[i + 2], &p, &n) || n != 16 || lo == 0 ||
		    lo > clock_entry(clk, &id) ||
		    (i > 0 && crdt_replica_id_cmp(&prev, &id) >= 0))
			return false;
		prev = id;
	}
	return true;
}

static void
check_frame(vctx *v, unsigned kind, unsigned ver, const uint8_t *b,
    size_t len)
{
	msgpack_zone z;
	msgpack_object root;

	if (!canonical(v, b, len, cli_kind_name(kind)))
		return;
	msgpack_zone_init(&z, 4096);
	(void)cli_mp_parse(b, len, &z, &root);
	const msgpack_object_array *a = cli_mp_array(&root);
	/* Version 3 names the document after the kind (a 32-byte bin),
	 * and every field after it moves one on; version 4 ends with the
	 * digests. */
	uint32_t at = ver >= 3 ? 3 : 2;
	uint32_t dg = ver >= 4;
	const uint8_t *idp;
	size_t idn;
	if (ver < 1 || ver > 4) {
		fault(v, EXIT_MALFORMED, cli_kind_name(kind), CRDT_EVERSION);
	} else if (ver >= 3 && (a->size < 3 ||
		       !cli_mp_bin(&a->ptr[2], &idp, &idn) ||
		       idn != CRDT_DOC_ID_BYTES)) {
		fault(v, EXIT_MALFORMED, cli_kind_name(kind), CRDT_EMALFORMED);
	} else if (kind == 7) {
		if (a->size != at + 1 + dg ||
		    !clock_ok(cli_mp_array(&a->ptr[at])) ||
		    (dg && !digests_ok(cli_mp_array(&a->ptr[at + 1]),
			cli_mp_array(&a->ptr[at]))))
			fault(v, EXIT_MALFORMED, "hello", CRDT_EMALFORMED);
	} else {
		const msgpack_object_array *msgs, *ev;
		uint64_t flags = 0;
		const uint8_t *p;
		size_t n;
		bool has_flags = ver >= 2;
		if (a->size != at + (has_flags ? 5u : 4u) + dg ||
		    !clock_ok(cli_mp_array(&a->ptr[at])) ||
		    (dg && !digests_ok(cli_mp_array(&a->ptr[at + 5]),
			cli_mp_array(&a->ptr[at]))) ||
		    (msgs = cli_mp_array(&a->ptr[at + 1])) == NULL ||
		    (ev = cli_mp_array(&a->ptr[at + 3])) == NULL ||
		    (has_flags && (!cli_mp_uint(&a->ptr[at + 4], &flags) ||
			flags > 7)) ||
		    (a->ptr[at + 2].type != MSGPACK_OBJECT_NIL &&
			!cli_mp_bin(&a->ptr[at + 2], &p, &n))) {
			fault(v, EXIT_MALFORMED, "data", CRDT_EMALFORMED);
			goto out;
		}
		for (uint32_t i = 0; i < msgs->size; i++) {
			if (cli_mp_bin(&msgs->ptr[i], &p, &n))
				check_message(v, p, n, "data message: ");
			else
				fault(v, EXIT_MALFORMED, "data message", CRDT_EMALFORMED);
		}
		for (uint32_t i = 0; i < ev->size; i++) {
			if (cli_mp_bin(&ev->ptr[i], &p, &n))
				check_message(v, p, n, "data evidence: ");
			else
				fault(v, EXIT_MALFORMED, "data evidence", CRDT_EMALFORMED);
		}
		if (cli_mp_bin(&a->ptr[at + 2], &p, &n))
			check_snapshot(v, p, n);
	}
out:
	msgpack_zone_destroy(&z);
}

/* Object states and clocks: the library's decoder, then encode again. */
static void
check_state(vctx *v, unsigned kind, const uint8_t *b, size_t len)
{
	static const crdt_replica_id self = { { 1 } };
	crdt_buf re;
	int rc = 0;

	if (!canonical(v, b, len, cli_kind_name(kind)))
		return;
	crdt_buf_init(&re, NULL);
	if (kind == 1) {
		crdt_gset *s;
		if ((rc = crdt_gset_decode(NULL, &self, b, len, &s)) == 0) {
			rc = crdt_gset_encode(s, &re);
			crdt_gset_free(s);
		}
	} else if (kind == 2) {
		crdt_lww *r;
		if ((rc = crdt_lww_decode(NULL, &self, b, len, &r)) == 0) {
			rc = crdt_lww_encode(r, &re);
			crdt_lww_free(r);
		}
	} else if (kind == 3) {
		crdt_lww_map *m;
		if ((rc = crdt_lww_map_decode(NULL, &self, b, len, &m)) == 0) {
			rc = crdt_lww_map_encode(m, &re);
			crdt_lww_map_free(m);
		}
	} else if (kind == 4) {
		crdt_vclock *c;
		if ((rc = crdt_vclock_decode(NULL, b, len, &c)) == 0) {
			rc = crdt_vclock_encode(c, &re);
			crdt_vclock_free(c);
		}
	} else {
		/* A chat state has no decoder of its own outside a document:
		 * the msgpack checks above are what it gets. */
		crdt_buf_fini(&re);
		return;
	}
	if (rc != 0)
		fault(v, cli_exit_of(rc), cli_kind_name(kind), rc);
	else if (re.len != len || memcmp(re.data, b, len) != 0)
		fault(v, EXIT_MALFORMED, "not canonical (encodes to other bytes)", 0);
	crdt_buf_fini(&re);
}

int
cmd_verify(int argc, char **argv)
{
	cli_opt opts[] = { CLI_DOC_OPTS, { "signed", false, NULL } };
	cli_args a;
	cli_docopts o;
	uint8_t key[32];
	int rc, worst = 0;

	if ((rc = cli_parse("verify", argc, argv, opts,
		 sizeof opts / sizeof opts[0], &a)) != 0)
		return rc;
	if (a.help) {
		fputs(verify_help, stdout);
		return EXIT_OK;
	}
	if (a.npos == 0) {
		cli_err("verify", "at least one FILE is needed (try --help)");
		return EXIT_USAGE;
	}
	if ((rc = cli_docopts_parse("verify", opts, &o, key)) != 0)
		return rc;
	for (size_t i = 0; i < a.npos; i++) {
		vctx v = { a.pos[i], &o, opts[CLI_DOC_NOPTS].value != NULL, 0 };
		crdt_buf b;
		unsigned ver = 0;
		crdt_buf_init(&b, NULL);
		if ((rc = cli_read_file("verify", a.pos[i], &b)) != 0) {
			v.status = rc;
		} else {
			unsigned kind = cli_kind(b.data, b.len, &ver);
			if (kind == 0)
				fault(&v, EXIT_MALFORMED,
				    "not a libcrdt encoding", CRDT_EMALFORMED);
			else if (kind == 5)
				check_message(&v, b.data, b.len, "");
			else if (kind == 6 || kind == 10)
				check_snapshot(&v, b.data, b.len);
			else if (kind == 7 || kind == 8)
				check_frame(&v, kind, ver, b.data, b.len);
			else
				check_state(&v, kind, b.data, b.len);
		}
		if (v.status == 0)
			printf("%s: ok\n", a.pos[i]);
		if (rank(v.status) > rank(worst))
			worst = v.status;
		crdt_buf_fini(&b);
	}
	memset(key, 0, sizeof key);
	return worst;
}
