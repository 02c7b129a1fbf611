/*
 * crdt merge and crdt diff: snapshots compared and joined. Merge loads
 * every input into one document (a snapshot with crdt_doc_load, a message
 * with crdt_doc_receive) and saves it: the result is the canonical
 * snapshot of the union, the bytes a replica that received everything
 * would save. Diff walks both snapshots and reports, per replica and per
 * object, what differs.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char merge_help[] =
    "usage: crdt merge [--schema S] [--key FILE] [--epoch N] [--doc-id HEX]\n"
    "                  [--admin-key HEX] [--chat-server HEX] [--seal]\n"
    "                  -o OUT INPUT...\n\n"
    "Merge snapshots (plain or sealed) and messages into one snapshot\n"
    "written to OUT (- = stdout). The schema (object names and types, in\n"
    "order) is read from the first snapshot among the inputs; --schema\n"
    "name:type[,name:type...] (types gset, lww, map, chat) gives it when\n"
    "only messages are merged. Every snapshot must have that schema.\n"
    "  --key FILE     document key: sealed inputs (and encrypted documents)\n"
    "  --seal         write a sealed snapshot (needs --key)\n"
    "  --admin-key    the admin's public key (documents with an allowlist)\n"
    "  --chat-server  the chat objects' server replica ID\n"
    "Exit: 0 written, 1 refused (signature, key), 2 usage, 3 I/O,\n"
    "4 malformed input or another schema or document.\n";

static const char diff_help[] =
    "usage: crdt diff [--key FILE] [--doc-id HEX] A B\n\n"
    "Compare two snapshots (plain or sealed) and print as JSON what one\n"
    "holds that the other lacks: the clock per replica (and how the two\n"
    "clocks are ordered), each object's state, the buffered messages and\n"
    "the evidence.\n"
    "Exit: 0 the same (byte-identical canonical snapshots), 1 different,\n"
    "2 usage, 3 I/O, 4 malformed.\n";

int
cmd_merge(int argc, char **argv)
{
	cli_opt opts[] = { CLI_DOC_OPTS, { "output", true, NULL },
		{ "seal", false, NULL } };
	cli_args a;
	cli_docopts o;
	uint8_t key[32];
	crdt_buf *in = NULL;
	crdt_buf out;
	crdt_doc *d = NULL;
	const char *why = NULL, *outp;
	int rc, st = 0;

	if ((rc = cli_parse("merge", argc, argv, opts,
		 sizeof opts / sizeof opts[0], &a)) != 0)
		return rc;
	if (a.help) {
		fputs(merge_help, stdout);
		return EXIT_OK;
	}
	outp = opts[CLI_DOC_NOPTS].value;
	if (a.npos == 0 || outp == NULL) {
		cli_err("merge", "-o OUT and at least one INPUT are needed "
				 "(try --help)");
		return EXIT_USAGE;
	}
	if ((rc = cli_docopts_parse("merge", opts, &o, key)) != 0)
		return rc;
	bool seal = opts[CLI_DOC_NOPTS + 1].value != NULL;
	if (seal && o.key == NULL) {
		cli_err("merge", "--seal needs --key");
		return EXIT_USAGE;
	}
	in = calloc(a.npos, sizeof *in);
	crdt_buf_init(&out, NULL);
	if (in == NULL) {
		cli_err("merge", "out of memory");
		return EXIT_IO;
	}
	/* Read everything first: schema from the first snapshot. */
	size_t first = a.npos;
	for (size_t i = 0; i < a.npos && st == 0; i++) {
		crdt_buf raw;
		crdt_buf_init(&raw, NULL);
		crdt_buf_init(&in[i], NULL);
		st = cli_read_file("merge", a.pos[i], &raw);
		unsigned k = st == 0 ? cli_kind(raw.data, raw.len, NULL) : 0;
		if (st == 0 && k != 5 && k != 6 && k != 10) {
			cli_err("merge", "%s: neither a snapshot nor a message",
			    a.pos[i]);
			st = EXIT_MALFORMED;
		} else if (st == 0) {
			rc = k == 5 ? crdt_buf_append(&in[i], raw.data, raw.len) :
				      cli_plain_snapshot(&o, raw.data, raw.len,
					  &in[i]);
			if (rc != 0) {
				cli_err("merge", "%s: %s", a.pos[i],
				    rc == CRDT_ENOKEY ? "sealed: give --key" :
							crdt_strerror(rc));
				st = rc == CRDT_ENOKEY ? EXIT_USAGE : cli_exit_of(rc);
			} else if (k != 5 && first == a.npos) {
				first = i;
			}
		}
		crdt_buf_fini(&raw);
	}
	if (st == 0) {
		rc = first < a.npos ?
		    cli_doc_for(&o, in[first].data, in[first].len, &d, &why) :
		    cli_doc_for(&o, NULL, 0, &d, &why);
		if (rc != 0) {
			cli_err("merge", "%s (%s)", why, crdt_err_name(rc));
			st = rc == CRDT_EINVAL ? EXIT_USAGE : cli_exit_of(rc);
		}
	}
	for (size_t i = 0; i < a.npos && st == 0; i++) {
		bool msg = cli_kind(in[i].data, in[i].len, NULL) == 5;
		rc = msg ? crdt_doc_receive(d, in[i].data, in[i].len, NULL) :
			   crdt_doc_load(d, in[i].data, in[i].len, NULL);
		if (rc != 0) {
			cli_err("merge", "%s: %s (%s)", a.pos[i],
			    crdt_strerror(rc), crdt_err_name(rc));
			st = cli_exit_of(rc);
		}
	}
	if (st == 0) {
		rc = seal ? crdt_doc_save_sealed(d, &out) : crdt_doc_save(d, &out);
		if (rc != 0) {
			cli_err("merge", "save: %s", crdt_strerror(rc));
			st = EXIT_IO;
		} else {
			st = cli_write_file("merge", outp, out.data, out.len);
		}
	}
	crdt_doc_free(d);
	for (size_t i = 0; i < a.npos; i++)
		crdt_buf_fini(&in[i]);
	free(in);
	crdt_buf_fini(&out);
	memset(key, 0, sizeof key);
	return st;
}

/* ---- diff ---- */

typedef struct side {
	crdt_buf plain;
	msgpack_zone z;
	msgpack_object root;
	cli_snap f;
	crdt_vclock *vc;
} side;

static int
side_load(const char *path, const cli_docopts *o, side *s)
{
	crdt_buf raw;
	int rc;

	crdt_buf_init(&raw, NULL);
	crdt_buf_init(&s->plain, NULL);
	msgpack_zone_init(&s->z, 4096);
	s->vc = NULL;
	if ((rc = cli_read_file("diff", path, &raw)) != 0)
		goto out;
	unsigned k = cli_kind(raw.data, raw.len, NULL);
	int lrc = k == 6 || k == 10 ?
	    cli_plain_snapshot(o, raw.data, raw.len, &s->plain) :
	    CRDT_EMALFORMED;
	if (lrc == 0)
		lrc = cli_mp_parse(s->plain.data, s->plain.len, &s->z, &s->root);
	if (lrc == 0)
		lrc = cli_snap_fields(&s->root, &s->f);
	if (lrc == 0)
		lrc = crdt_vclock_new(NULL, &s->vc);
	for (uint32_t i = 0; lrc == 0 && i < s->f.clock->size; i += 2) {
		crdt_replica_id id;
		uint64_t c;
		if (!cli_mp_id(&s->f.clock->ptr[i], &id) ||
		    !cli_mp_uint(&s->f.clock->ptr[i + 1], &c))
			lrc = CRDT_EMALFORMED;
		else
			lrc = crdt_vclock_set(s->vc, &id, c);
	}
	if (lrc != 0) {
		cli_err("diff", "%s: %s", path, lrc == CRDT_ENOKEY ?
		    "sealed: give --key" : "not a snapshot");
		rc = lrc == CRDT_ENOKEY ? EXIT_USAGE : EXIT_MALFORMED;
	}
out:
	crdt_buf_fini(&raw);
	return rc;
}

static void
side_free(side *s)
{
	crdt_vclock_free(s->vc);
	msgpack_zone_destroy(&s->z);
	cli_wipe(&s->plain);
	crdt_buf_fini(&s->plain);
}

/* Replicas where the clocks differ, with both counters. */
static json_t *
clock_diff(const crdt_vclock *a, const crdt_vclock *b)
{
	json_t *out = json_array();
	for (int pass = 0; pass < 2; pass++) {
		const crdt_vclock *x = pass == 0 ? a : b, *y = pass == 0 ? b : a;
		for (size_t i = 0; i < crdt_vclock_size(x); i++) {
			crdt_replica_id id;
			uint64_t cx;
			if (crdt_vclock_entry(x, i, &id, &cx) != 0)
				continue;
			uint64_t cy = crdt_vclock_get(y, &id);
			/* Second pass: only the replicas a lacks entirely. */
			if (cx == cy || (pass == 1 && cy != 0))
				continue;
			json_t *e = json_object();
			json_object_set_new(e, "replica", cli_json_replica(&id));
			json_object_set_new(e, "a", cli_json_u64(pass ? cy : cx));
			json_object_set_new(e, "b", cli_json_u64(pass ? cx : cy));
			json_array_append_new(out, e);
		}
	}
	return out;
}

static const msgpack_object_array *
find_obj(const cli_snap *f, const uint8_t *name, size_t nl)
{
	for (uint32_t i = 0; i < f->objects->size; i++) {
		const msgpack_object_array *e = cli_mp_array(&f->objects->ptr[i]);
		const uint8_t *p;
		size_t n;
		if (cli_mp_bin(&e->ptr[0], &p, &n) && n == nl &&
		    memcmp(p, name, n) == 0)
			return e;
	}
	return NULL;
}

static json_t *
objects_diff(const cli_snap *a, const cli_snap *b)
{
	json_t *out = json_array();
	for (int pass = 0; pass < 2; pass++) {
		const cli_snap *x = pass == 0 ? a : b, *y = pass == 0 ? b : a;
		for (uint32_t i = 0; i < x->objects->size; i++) {
			const msgpack_object_array *e = cli_mp_array(&x->objects->ptr[i]);
			const uint8_t *name, *sx, *sy = NULL;
			size_t nl, lx, ly = 0;
			(void)cli_mp_bin(&e->ptr[0], &name, &nl);
			(void)cli_mp_bin(&e->ptr[2], &sx, &lx);
			const msgpack_object_array *o = find_obj(y, name, nl);
			if (pass == 1 && o != NULL)
				continue; /* reported in the first pass */
			if (o != NULL)
				(void)cli_mp_bin(&o->ptr[2], &sy, &ly);
			json_t *j = json_object();
			json_object_set_new(j, "name", cli_json_bytes(name, nl));
			bool same = o != NULL && lx == ly &&
			    memcmp(sx, sy, lx) == 0 &&
			    e->ptr[1].via.u64 == o->ptr[1].via.u64;
			json_object_set_new(j, "same", json_boolean(same));
			if (o == NULL)
				json_object_set_new(j, "only_in",
				    json_string(pass == 0 ? "a" : "b"));
			json_object_set_new(j, "a_state_bytes", o == NULL && pass ?
			    json_null() : cli_json_u64(pass ? ly : lx));
			json_object_set_new(j, "b_state_bytes", o == NULL && !pass ?
			    json_null() : cli_json_u64(pass ? lx : ly));
			json_array_append_new(out, j);
		}
	}
	return out;
}

static int
bin_cmp(const void *x, const void *y)
{
	const msgpack_object *a = *(const msgpack_object *const *)x;
	const msgpack_object *b = *(const msgpack_object *const *)y;
	if (a->via.bin.size != b->via.bin.size)
		return a->via.bin.size < b->via.bin.size ? -1 : 1;
	return memcmp(a->via.bin.ptr, b->via.bin.ptr, a->via.bin.size);
}

/* How many bins of x are not in y, and of y not in x: both sorted, then
 * one merge pass, O((n + m) log(n + m)). */
static int
missing(const msgpack_object_array *x, const msgpack_object_array *y,
    uint64_t *nx, uint64_t *ny)
{
	const msgpack_object **px = malloc((x->size + 1) * sizeof *px);
	const msgpack_object **py = malloc((y->size + 1) * sizeof *py);
	if (px == NULL || py == NULL) {
		free(px);
		free(py);
		return CRDT_ENOMEM;
	}
	for (uint32_t i = 0; i < x->size; i++)
		px[i] = &x->ptr[i];
	for (uint32_t i = 0; i < y->size; i++)
		py[i] = &y->ptr[i];
	qsort(px, x->size, sizeof *px, bin_cmp);
	qsort(py, y->size, sizeof *py, bin_cmp);
	uint32_t i = 0, k = 0;
	*nx = *ny = 0;
	while (i < x->size || k < y->size) {
		int c = i == x->size ? 1 : k == y->size ? -1 :
		    bin_cmp(&px[i], &py[k]);
		if (c < 0)
			++*nx, i++;
		else if (c > 0)
			++*ny, k++;
		else
			i++, k++;
	}
	free(px);
	free(py);
	return 0;
}

static json_t *
list_diff(const msgpack_object_array *a, const msgpack_object_array *b)
{
	json_t *j = json_object();
	json_object_set_new(j, "a", cli_json_u64(a->size));
	json_object_set_new(j, "b", cli_json_u64(b->size));
	uint64_t na, nb;
	if (missing(a, b, &na, &nb) == 0) {
		json_object_set_new(j, "only_in_a", cli_json_u64(na));
		json_object_set_new(j, "only_in_b", cli_json_u64(nb));
	}
	return j;
}

static bool
all_bins(const msgpack_object_array *l)
{
	for (uint32_t i = 0; i < l->size; i++)
		if (l->ptr[i].type != MSGPACK_OBJECT_BIN)
			return false;
	return true;
}

int
cmd_diff(int argc, char **argv)
{
	static const char *order[] = { "equal", "a_before_b", "a_after_b",
		"concurrent" };
	cli_opt opts[] = { CLI_DOC_OPTS };
	cli_args a;
	cli_docopts o;
	uint8_t key[32];
	side s[2];
	int rc;

	if ((rc = cli_parse("diff", argc, argv, opts, CLI_DOC_NOPTS, &a)) != 0)
		return rc;
	if (a.help) {
		fputs(diff_help, stdout);
		return EXIT_OK;
	}
	if (a.npos != 2) {
		cli_err("diff", "two snapshots A and B are needed (try --help)");
		return EXIT_USAGE;
	}
	if ((rc = cli_docopts_parse("diff", opts, &o, key)) != 0)
		return rc;
	rc = side_load(a.pos[0], &o, &s[0]);
	int rc2 = side_load(a.pos[1], &o, &s[1]);
	memset(key, 0, sizeof key);
	if (rc == 0)
		rc = rc2;
	if (rc == 0 && (!all_bins(s[0].f.buffered) || !all_bins(s[1].f.buffered) ||
	    !all_bins(s[0].f.evidence) || !all_bins(s[1].f.evidence))) {
		cli_err("diff", "a buffered or evidence entry is not bytes");
		rc = EXIT_MALFORMED;
	}
	if (rc != 0) {
		side_free(&s[0]);
		side_free(&s[1]);
		return rc;
	}
	bool same = s[0].plain.len == s[1].plain.len &&
	    memcmp(s[0].plain.data, s[1].plain.data, s[0].plain.len) == 0;
	json_t *j = json_object();
	json_object_set_new(j, "same", json_boolean(same));
	json_object_set_new(j, "a", json_string(a.pos[0]));
	json_object_set_new(j, "b", json_string(a.pos[1]));
	json_object_set_new(j, "same_document", json_boolean(memcmp(
	    s[0].f.doc_id.bytes, s[1].f.doc_id.bytes, CRDT_DOC_ID_BYTES) == 0));
	json_t *clk = json_object();
	json_object_set_new(clk, "order", json_string(
	    order[crdt_vclock_compare(s[0].vc, s[1].vc)]));
	json_object_set_new(clk, "replicas", clock_diff(s[0].vc, s[1].vc));
	json_object_set_new(j, "clock", clk);
	json_object_set_new(j, "objects", objects_diff(&s[0].f, &s[1].f));
	json_object_set_new(j, "buffered",
	    list_diff(s[0].f.buffered, s[1].f.buffered));
	json_object_set_new(j, "evidence",
	    list_diff(s[0].f.evidence, s[1].f.evidence));
	side_free(&s[0]);
	side_free(&s[1]);
	rc = cli_json_print(j);
	return rc != 0 ? rc : same ? EXIT_OK : EXIT_FAULT;
}
