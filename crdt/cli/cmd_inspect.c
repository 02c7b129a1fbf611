/*
 * crdt inspect: any libcrdt encoding as JSON. The structure is walked
 * with msgpack-c (after mp.c's bounded pre-scan); what only the library
 * can judge (the strict envelope, signatures, sealed payloads) comes from
 * its public calls, so what is shown is what a replica would see.
 */
#include <string.h>

#include "cli.h"

static const char inspect_help[] =
    "usage: crdt inspect [--key FILE] [--doc-id HEX] FILE|-\n\n"
    "Show a libcrdt message, snapshot (plain or sealed), sync frame (HELLO,\n"
    "DATA), vector clock or object state as JSON on stdout.\n"
    "  --key FILE    document key (32 bytes or 64 hex digits): open sealed\n"
    "                payloads and sealed snapshots\n"
    "  --doc-id HEX  document ID (64 hex digits): check signatures and open\n"
    "                sealed data of a bound document (default: the ID a\n"
    "                snapshot carries, else zero)\n"
    "Exit: 0 shown, 2 usage, 3 I/O, 4 not a libcrdt encoding.\n";

typedef struct ictx {
	const cli_docopts *o;
	crdt_doc_id doc;   /* for signatures: --doc-id, else a snapshot's */
	bool have_doc;
} ictx;

static json_t *snapshot_json(ictx *c, const uint8_t *b, size_t len, int *rc);

static json_t *
err_json(int rc)
{
	return json_string(crdt_err_name(rc));
}

static json_t *
clock_json(const msgpack_object_array *clk, const msgpack_object_array *st)
{
	json_t *a = json_array();
	for (uint32_t i = 0; clk != NULL && i + 1 < clk->size; i += 2) {
		crdt_dot d;
		json_t *e = json_object();
		if (cli_mp_id(&clk->ptr[i], &d.replica))
			json_object_set_new(e, "replica",
			    cli_json_replica(&d.replica));
		else
			json_object_set_new(e, "replica",
			    cli_mp_json(&clk->ptr[i]));
		json_object_set_new(e, "counter", cli_mp_json(&clk->ptr[i + 1]));
		if (st != NULL && i / 2 < st->size) {
			uint64_t s;
			if (cli_mp_uint(&st->ptr[i / 2], &s))
				json_object_set_new(e, "stamp", cli_json_hlc(s));
		}
		json_array_append_new(a, e);
	}
	return a;
}

/* The ops of a plaintext payload: [[obj, field...], ...]. */
static json_t *
ops_json(const uint8_t *p, size_t n)
{
	msgpack_zone z;
	msgpack_object root;
	json_t *out;

	msgpack_zone_init(&z, 4096);
	const msgpack_object_array *a = NULL;
	if (cli_mp_parse(p, n, &z, &root) == 0)
		a = cli_mp_array(&root);
	if (a == NULL) {
		msgpack_zone_destroy(&z);
		return json_string("malformed");
	}
	out = json_array();
	for (uint32_t i = 0; i < a->size; i++) {
		const msgpack_object_array *op = cli_mp_array(&a->ptr[i]);
		json_t *j = json_object();
		uint64_t obj;
		if (op == NULL || op->size < 1 || !cli_mp_uint(&op->ptr[0], &obj)) {
			json_object_set_new(j, "malformed", cli_mp_json(&a->ptr[i]));
		} else {
			json_t *f = json_array();
			json_object_set_new(j, "obj", cli_json_u64(obj));
			for (uint32_t k = 1; k < op->size; k++)
				json_array_append_new(f, cli_mp_json(&op->ptr[k]));
			json_object_set_new(j, "fields", f);
		}
		json_array_append_new(out, j);
	}
	msgpack_zone_destroy(&z);
	return out;
}

static json_t *
message_json(ictx *c, const uint8_t *b, size_t len, int *rc)
{
	msgpack_zone z;
	msgpack_object root;
	json_t *j = NULL;

	msgpack_zone_init(&z, 4096);
	*rc = cli_mp_parse(b, len, &z, &root);
	const msgpack_object_array *a = *rc == 0 ? cli_mp_array(&root) : NULL;
	crdt_dot dot;
	uint64_t ver, hlc, cnt;
	const msgpack_object_array *deps;
	if (a == NULL || a->size != 8 || !cli_mp_uint(&a->ptr[0], &ver) ||
	    !cli_mp_id(&a->ptr[2], &dot.replica) ||
	    !cli_mp_uint(&a->ptr[3], &cnt) || !cli_mp_uint(&a->ptr[4], &hlc) ||
	    (deps = cli_mp_array(&a->ptr[5])) == NULL) {
		*rc = CRDT_EMALFORMED;
		goto out;
	}
	dot.counter = cnt;
	j = json_object();
	json_object_set_new(j, "kind", json_string("message"));
	json_object_set_new(j, "version", cli_json_u64(ver));
	json_object_set_new(j, "bytes", cli_json_u64(len));
	int prc = crdt_msg_peek(b, len, NULL, NULL);
	json_object_set_new(j, "envelope", prc == 0 ? json_string("ok") :
						      err_json(prc));
	json_object_set_new(j, "dot", cli_json_dot(dot));
	json_object_set_new(j, "hlc", cli_json_hlc(hlc));
	json_object_set_new(j, "deps", clock_json(deps, NULL));

	json_t *pl = json_object();
	const msgpack_object *pay = &a->ptr[6];
	const msgpack_object_array *sealed = cli_mp_array(pay);
	const uint8_t *p;
	size_t n;
	json_object_set_new(pl, "sealed", json_boolean(sealed != NULL));
	if (sealed != NULL) {
		if (sealed->size == 3) {
			json_object_set_new(pl, "epoch", cli_mp_json(&sealed->ptr[0]));
			if (cli_mp_bin(&sealed->ptr[1], &p, &n))
				json_object_set_new(pl, "nonce", cli_json_hex(p, n));
			if (cli_mp_bin(&sealed->ptr[2], &p, &n))
				json_object_set_new(pl, "ciphertext_bytes",
				    cli_json_u64(n));
		}
		if (c->o->key != NULL) {
			crdt_buf plain;
			crdt_buf_init(&plain, NULL);
			int orc = crdt_msg_payload(b, len,
			    c->have_doc ? &c->doc : NULL, c->o->key, &plain,
			    NULL);
			if (orc == 0)
				json_object_set_new(pl, "ops",
				    ops_json(plain.data, plain.len));
			else
				json_object_set_new(pl, "open", err_json(orc));
			cli_wipe(&plain);
			crdt_buf_fini(&plain);
		}
	} else if (cli_mp_bin(pay, &p, &n)) {
		json_object_set_new(pl, "bytes", cli_json_u64(n));
		json_object_set_new(pl, "ops", ops_json(p, n));
	}
	json_object_set_new(j, "payload", pl);

	const msgpack_object_array *auth = cli_mp_array(&a->ptr[7]);
	json_object_set_new(j, "signed", json_boolean(auth != NULL));
	if (auth != NULL && auth->size == 2 && cli_mp_bin(&auth->ptr[0], &p, &n) &&
	    n == CRDT_PUBLIC_KEY_BYTES) {
		json_t *s = json_object();
		crdt_replica_id id;
		json_object_set_new(s, "public_key", cli_json_hex(p, n));
		if (crdt_replica_id_from_public_key(p, &id) == 0) {
			json_object_set_new(s, "replica", cli_json_replica(&id));
			json_object_set_new(s, "matches_sender", json_boolean(
			    crdt_replica_id_cmp(&id, &dot.replica) == 0));
		}
		if (c->have_doc) {
			int vrc = crdt_msg_verify(b, len, &c->doc, NULL);
			json_object_set_new(s, "signature", vrc == 0 ?
			    json_string("valid") : err_json(vrc));
		} else {
			json_object_set_new(s, "signature",
			    json_string("not checked (give --doc-id)"));
		}
		json_object_set_new(j, "signer", s);
	}
	*rc = 0;
out:
	msgpack_zone_destroy(&z);
	return j;
}

/* A list of messages (bins) as their headers. */
static json_t *
msg_list_json(ictx *c, const msgpack_object_array *l)
{
	json_t *a = json_array();
	for (uint32_t i = 0; l != NULL && i < l->size; i++) {
		const uint8_t *p;
		size_t n;
		int rc = CRDT_EMALFORMED;
		json_t *m = cli_mp_bin(&l->ptr[i], &p, &n) ?
		    message_json(c, p, n, &rc) : NULL;
		json_array_append_new(a, m != NULL ? m : err_json(rc));
	}
	return a;
}

static uint64_t
state_entries(const uint8_t *p, size_t n, unsigned type)
{
	msgpack_zone z;
	msgpack_object root;
	uint64_t e = 0;

	msgpack_zone_init(&z, 1024);
	const msgpack_object_array *a = cli_mp_parse(p, n, &z, &root) == 0 ?
	    cli_mp_array(&root) : NULL;
	if (a != NULL) {
		if ((type == 1 || type == 3) && a->size == 3) {
			const msgpack_object_array *l = cli_mp_array(&a->ptr[2]);
			e = l == NULL ? 0 : l->size / (type == 1 ? 3 : 4);
		} else if (type == 2) {
			e = a->size > 2 ? 1 : 0;
		} else if (type == 4 && a->size == 5) {
			/* Chat: the messages come first, as a G-Set state
			 * (version 1) or in columns led by the record count,
			 * a LEB128 varint (version 2, chat.md). */
			const uint8_t *q;
			size_t qn;
			uint64_t ver = 0;
			bool ok = cli_mp_bin(&a->ptr[2], &q, &qn) &&
			    cli_mp_uint(&a->ptr[0], &ver);
			if (ok && ver == 1)
				e = state_entries(q, qn, 1);
			for (size_t i = 0; ok && ver == 2 && i < qn && i < 10;
			     i++) {
				e |= (uint64_t)(q[i] & 0x7f) << (7 * i);
				if ((q[i] & 0x80) == 0)
					break;
			}
		}
	}
	msgpack_zone_destroy(&z);
	return e;
}

static json_t *
snapshot_json(ictx *c, const uint8_t *b, size_t len, int *rc)
{
	static const char *tn[] = { "?", "gset", "lww", "map", "chat" };
	msgpack_zone z;
	msgpack_object root;
	cli_snap f;
	json_t *j = NULL;

	msgpack_zone_init(&z, 4096);
	*rc = cli_mp_parse(b, len, &z, &root);
	if (*rc == 0)
		*rc = cli_snap_fields(&root, &f);
	if (*rc != 0)
		goto out;
	if (!c->have_doc) {
		c->doc = f.doc_id;
		c->have_doc = true;
	}
	j = json_object();
	json_object_set_new(j, "kind", json_string("snapshot"));
	json_object_set_new(j, "version", json_integer(f.version));
	json_object_set_new(j, "bytes", cli_json_u64(len));
	json_object_set_new(j, "doc_id", cli_json_hex(f.doc_id.bytes, 32));
	json_object_set_new(j, "clock", clock_json(f.clock, f.stamps));
	json_object_set_new(j, "hlc_max", cli_json_hlc(f.hlc_max));
	json_t *objs = json_array();
	for (uint32_t i = 0; i < f.objects->size; i++) {
		const msgpack_object_array *e = cli_mp_array(&f.objects->ptr[i]);
		const uint8_t *name, *st;
		size_t nl, sl;
		uint64_t t;
		(void)cli_mp_bin(&e->ptr[0], &name, &nl);
		(void)cli_mp_uint(&e->ptr[1], &t);
		(void)cli_mp_bin(&e->ptr[2], &st, &sl);
		json_t *o = json_object();
		json_object_set_new(o, "name", cli_json_bytes(name, nl));
		json_object_set_new(o, "type", json_string(tn[t]));
		json_object_set_new(o, "state_bytes", cli_json_u64(sl));
		json_object_set_new(o, "entries",
		    cli_json_u64(state_entries(st, sl, (unsigned)t)));
		json_array_append_new(objs, o);
	}
	json_object_set_new(j, "objects", objs);
	json_object_set_new(j, "buffered_count", cli_json_u64(f.buffered->size));
	json_object_set_new(j, "buffered", msg_list_json(c, f.buffered));
	if (f.admin_seen != NULL)
		json_object_set_new(j, "admin_seen",
		    clock_json(f.admin_seen, NULL));
	json_object_set_new(j, "evidence_count", cli_json_u64(f.evidence->size));
	json_object_set_new(j, "evidence", msg_list_json(c, f.evidence));
out:
	msgpack_zone_destroy(&z);
	return j;
}

static json_t *
sealed_json(ictx *c, const uint8_t *b, size_t len, int *rc)
{
	msgpack_zone z;
	msgpack_object root;
	json_t *j = NULL;

	msgpack_zone_init(&z, 1024);
	*rc = cli_mp_parse(b, len, &z, &root);
	const msgpack_object_array *a = *rc == 0 ? cli_mp_array(&root) : NULL;
	const msgpack_object_array *s = a != NULL && a->size == 3 ?
	    cli_mp_array(&a->ptr[2]) : NULL;
	const uint8_t *p;
	size_t n;
	if (s == NULL || s->size != 3) {
		*rc = CRDT_EMALFORMED;
		goto out;
	}
	j = json_object();
	json_object_set_new(j, "kind", json_string("sealed_snapshot"));
	json_object_set_new(j, "version", cli_mp_json(&a->ptr[0]));
	json_object_set_new(j, "bytes", cli_json_u64(len));
	json_object_set_new(j, "epoch", cli_mp_json(&s->ptr[0]));
	if (cli_mp_bin(&s->ptr[1], &p, &n))
		json_object_set_new(j, "nonce", cli_json_hex(p, n));
	if (cli_mp_bin(&s->ptr[2], &p, &n))
		json_object_set_new(j, "ciphertext_bytes", cli_json_u64(n));
	if (c->o->key != NULL) {
		crdt_buf plain;
		crdt_buf_init(&plain, NULL);
		int orc = crdt_snapshot_unseal(b, len,
		    c->have_doc ? &c->doc : NULL, c->o->key, &plain, NULL);
		if (orc == 0) {
			int src;
			json_t *in = snapshot_json(c, plain.data, plain.len, &src);
			json_object_set_new(j, "snapshot", in != NULL ? in :
							       err_json(src));
		} else {
			json_object_set_new(j, "open", err_json(orc));
		}
		cli_wipe(&plain);
		crdt_buf_fini(&plain);
	}
	*rc = 0;
out:
	msgpack_zone_destroy(&z);
	return j;
}

/* Version 4's variant digests [id, lo, digest, ...] as
 * [{replica, lo, digest}, ...]; NULL when they are not that shape. */
static json_t *
digests_json(const msgpack_object_array *d)
{
	if (d == NULL || d->size % 3 != 0)
		return NULL;
	json_t *a = json_array();
	for (uint32_t i = 0; i < d->size; i += 3) {
		const uint8_t *id, *dg;
		size_t idn, dgn;
		uint64_t lo;
		if (!cli_mp_bin(&d->ptr[i], &id, &idn) ||
		    !cli_mp_uint(&d->ptr[i + 1], &lo) ||
		    !cli_mp_bin(&d->ptr[i + 2], &dg, &dgn)) {
			json_decref(a);
			return NULL;
		}
		json_t *e = json_object();
		json_object_set_new(e, "replica", cli_json_hex(id, idn));
		json_object_set_new(e, "lo", cli_json_u64(lo));
		json_object_set_new(e, "digest", cli_json_hex(dg, dgn));
		json_array_append_new(a, e);
	}
	return a;
}

/* HELLO [v, 7, clock] and DATA [v, 8, clock, messages, snapshot,
 * evidence, (flags)]; from version 3 both name their document after the
 * kind ([3, 7, doc_id, clock], [3, 8, doc_id, clock, ...]); from version
 * 4 both end with the variant digests; vector clocks [1, 4, clock];
 * object states. */
static json_t *
frame_json(ictx *c, unsigned kind, const uint8_t *b, size_t len, int *rc)
{
	msgpack_zone z;
	msgpack_object root;
	json_t *j = NULL;

	msgpack_zone_init(&z, 4096);
	*rc = cli_mp_parse(b, len, &z, &root);
	const msgpack_object_array *a = *rc == 0 ? cli_mp_array(&root) : NULL;
	if (a == NULL || a->size < 2) {
		*rc = CRDT_EMALFORMED;
		goto out;
	}
	j = json_object();
	json_object_set_new(j, "kind", json_string(cli_kind_name(kind)));
	json_object_set_new(j, "version", cli_mp_json(&a->ptr[0]));
	json_object_set_new(j, "bytes", cli_json_u64(len));
	/* The fields after the head: one further on once a doc_id is there. */
	uint64_t ver = 0;
	const uint8_t *idp;
	size_t idn;
	uint32_t at = 2;
	if ((kind == 7 || kind == 8) && cli_mp_uint(&a->ptr[0], &ver) &&
	    ver >= 3) {
		if (a->size < 3 || !cli_mp_bin(&a->ptr[2], &idp, &idn) ||
		    idn != CRDT_DOC_ID_BYTES) {
			*rc = CRDT_EMALFORMED;
			goto bad;
		}
		json_object_set_new(j, "doc_id", cli_json_hex(idp, idn));
		at = 3;
	}
	/* Version 4 adds the digests, the last field. */
	uint32_t dg = (kind == 7 || kind == 8) && ver >= 4;
	json_t *dgj = NULL;
	if (dg && (a->size < at + 1 ||
	    (dgj = digests_json(cli_mp_array(&a->ptr[a->size - 1]))) ==
		NULL)) {
		*rc = CRDT_EMALFORMED;
		goto bad;
	}
	if (dgj != NULL)
		json_object_set_new(j, "digests", dgj);
	if (kind == 4 || kind == 7) {
		const msgpack_object_array *clk = a->size == at + 1 + dg ?
		    cli_mp_array(&a->ptr[at]) : NULL;
		if (clk == NULL || clk->size % 2 != 0) {
			*rc = CRDT_EMALFORMED;
			goto bad;
		}
		json_object_set_new(j, "clock", clock_json(clk, NULL));
	} else if (kind == 8) {
		const msgpack_object_array *clk, *msgs, *ev;
		uint64_t flags = 0;
		if ((a->size != at + 4 + dg && a->size != at + 5 + dg) ||
		    (clk = cli_mp_array(&a->ptr[at])) == NULL ||
		    (msgs = cli_mp_array(&a->ptr[at + 1])) == NULL ||
		    (ev = cli_mp_array(&a->ptr[at + 3])) == NULL ||
		    (a->size == at + 5 + dg &&
			!cli_mp_uint(&a->ptr[at + 4], &flags))) {
			*rc = CRDT_EMALFORMED;
			goto bad;
		}
		json_object_set_new(j, "clock", clock_json(clk, NULL));
		json_t *fl = json_object();
		json_object_set_new(fl, "value", cli_json_u64(flags));
		json_object_set_new(fl, "more", json_boolean(flags & 1));
		json_object_set_new(fl, "reply", json_boolean(flags & 2));
		json_object_set_new(fl, "partial", json_boolean(flags & 4));
		json_object_set_new(j, "flags", fl);
		json_object_set_new(j, "message_count", cli_json_u64(msgs->size));
		json_object_set_new(j, "messages", msg_list_json(c, msgs));
		const uint8_t *p;
		size_t n;
		if (cli_mp_bin(&a->ptr[at + 2], &p, &n)) {
			int src;
			unsigned k = cli_kind(p, n, NULL);
			json_t *s = k == 10 ? sealed_json(c, p, n, &src) :
						   snapshot_json(c, p, n, &src);
			json_object_set_new(j, "snapshot", s != NULL ? s :
							       err_json(src));
		} else {
			json_object_set_new(j, "snapshot", json_null());
		}
		json_object_set_new(j, "evidence_count", cli_json_u64(ev->size));
		json_object_set_new(j, "evidence", msg_list_json(c, ev));
	} else {
		json_t *st = json_array();
		for (uint32_t i = 2; i < a->size; i++)
			json_array_append_new(st, cli_mp_json(&a->ptr[i]));
		json_object_set_new(j, "state", st);
	}
	*rc = 0;
	goto out;
bad:
	json_decref(j);
	j = NULL;
out:
	msgpack_zone_destroy(&z);
	return j;
}

int
cmd_inspect(int argc, char **argv)
{
	cli_opt opts[] = { CLI_DOC_OPTS };
	cli_args a;
	cli_docopts o;
	uint8_t key[32];
	crdt_buf b;
	int rc;

	if ((rc = cli_parse("inspect", argc, argv, opts, CLI_DOC_NOPTS, &a)) != 0)
		return rc;
	if (a.help) {
		fputs(inspect_help, stdout);
		return EXIT_OK;
	}
	if (a.npos != 1) {
		cli_err("inspect", "one FILE (or -) is needed (try --help)");
		return EXIT_USAGE;
	}
	if ((rc = cli_docopts_parse("inspect", opts, &o, key)) != 0)
		return rc;
	crdt_buf_init(&b, NULL);
	if ((rc = cli_read_file("inspect", a.pos[0], &b)) != 0) {
		crdt_buf_fini(&b);
		return rc;
	}
	ictx c = { &o, o.doc_id, o.have_doc_id };
	unsigned kind = cli_kind(b.data, b.len, NULL);
	int drc = CRDT_EMALFORMED;
	json_t *j = NULL;
	if (kind == 5)
		j = message_json(&c, b.data, b.len, &drc);
	else if (kind == 6)
		j = snapshot_json(&c, b.data, b.len, &drc);
	else if (kind == 10)
		j = sealed_json(&c, b.data, b.len, &drc);
	else if (kind != 0)
		j = frame_json(&c, kind, b.data, b.len, &drc);
	crdt_buf_fini(&b);
	memset(key, 0, sizeof key);
	if (j == NULL) {
		cli_err("inspect", "%s: not a libcrdt encoding (%s)", a.pos[0],
		    crdt_err_name(drc));
		return EXIT_MALFORMED;
	}
	json_object_set_new(j, "file", json_string(a.pos[0]));
	return cli_json_print(j);
}
