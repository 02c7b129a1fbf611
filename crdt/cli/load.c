/*
 * Documents rebuilt from snapshots (merge, diff, verify, store export and
 * compact). A snapshot carries every object's name and type in schema
 * order (docs/document.md, Snapshot), so the schema is read from it;
 * --schema gives it where there is no snapshot (a store without a
 * checkpoint). Chat objects need their server's ID (--chat-server) and
 * documents with an allowlist the admin's key (--admin-key); both are
 * settings every replica shares but no snapshot holds.
 */
#include <string.h>

#include "cli.h"

int
cli_docopts_parse(const char *cmd, const cli_opt *opts, cli_docopts *o,
    uint8_t keybuf[32])
{
	int rc;

	memset(o, 0, sizeof *o);
	for (size_t i = 0; i < CLI_DOC_NOPTS; i++) {
		const char *n = opts[i].name, *v = opts[i].value;
		if (v == NULL)
			continue;
		if (strcmp(n, "schema") == 0) {
			o->schema = v;
		} else if (strcmp(n, "key") == 0) {
			if ((rc = cli_read_key(cmd, v, keybuf)) != 0)
				return rc;
			o->key = keybuf;
		} else if (strcmp(n, "epoch") == 0) {
			uint64_t e;
			if ((rc = cli_uint_opt(cmd, n, v, 0, UINT32_MAX, &e)) != 0)
				return rc;
			o->epoch = (uint32_t)e;
		} else if (strcmp(n, "doc-id") == 0) {
			if (tool_unhex(v, o->doc_id.bytes, CRDT_DOC_ID_BYTES) != 0) {
				cli_err(cmd, "--doc-id: 64 hex digits");
				return EXIT_USAGE;
			}
			o->have_doc_id = true;
		} else if (strcmp(n, "admin-key") == 0) {
			if (tool_unhex(v, o->admin, 32) != 0) {
				cli_err(cmd, "--admin-key: 64 hex digits");
				return EXIT_USAGE;
			}
			o->have_admin = true;
		} else if (strcmp(n, "chat-server") == 0) {
			if (tool_unhex(v, o->server.bytes, 16) != 0) {
				cli_err(cmd, "--chat-server: 32 hex digits");
				return EXIT_USAGE;
			}
			o->have_server = true;
		}
	}
	return 0;
}

int
cli_plain_snapshot(const cli_docopts *o, const uint8_t *b, size_t len,
    crdt_buf *out)
{
	if (cli_kind(b, len, NULL) != 10)
		return crdt_buf_append(out, b, len);
	if (o->key == NULL)
		return CRDT_ENOKEY;
	return crdt_snapshot_unseal(b, len, o->have_doc_id ? &o->doc_id : NULL,
	    o->key, out, NULL);
}

static int
type_of(const char *s, size_t n, crdt_obj_type *t)
{
	static const struct {
		const char *name;
		crdt_obj_type t;
	} k[] = { { "gset", CRDT_OBJ_GSET }, { "lww", CRDT_OBJ_LWW },
		{ "map", CRDT_OBJ_MAP }, { "chat", CRDT_OBJ_CHAT } };
	for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
		if (strlen(k[i].name) == n && memcmp(k[i].name, s, n) == 0) {
			*t = k[i].t;
			return 0;
		}
	return CRDT_EINVAL;
}

static int
reg(crdt_doc *d, const cli_docopts *o, const char *name, crdt_obj_type t)
{
	if (strcmp(name, "__acl") == 0)
		return 0; /* registered by crdt_doc_set_security (admin) */
	if (t == CRDT_OBJ_CHAT)
		return crdt_doc_register_chat(d, name,
		    o->have_server ? &o->server : NULL, NULL);
	return crdt_doc_register(d, name, t, NULL);
}

/* Register "name:type,name:type". */
static int
reg_spec(crdt_doc *d, const cli_docopts *o, const char *spec,
    const char **why)
{
	const char *p = spec;
	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *colon = memchr(p, ':', n);
		char name[CRDT_OBJ_NAME_MAX + 1];
		crdt_obj_type t;
		if (colon == NULL || colon == p ||
		    (size_t)(colon - p) > CRDT_OBJ_NAME_MAX ||
		    type_of(colon + 1, n - (size_t)(colon + 1 - p), &t) != 0) {
			*why = "--schema: name:type[,name:type...] with type "
			       "gset, lww, map or chat";
			return CRDT_EINVAL;
		}
		memcpy(name, p, (size_t)(colon - p));
		name[colon - p] = '\0';
		int rc = reg(d, o, name, t);
		if (rc != 0) {
			*why = "--schema: cannot register an object";
			return rc;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

int
cli_snap_fields(const msgpack_object *root, cli_snap *f)
{
	const msgpack_object_array *a = cli_mp_array(root);
	uint64_t ver, kind;

	memset(f, 0, sizeof *f);
	if (a == NULL || a->size < 7 || !cli_mp_uint(&a->ptr[0], &ver) ||
	    !cli_mp_uint(&a->ptr[1], &kind) || kind != 6 || ver < 1 ||
	    ver > 2)
		return CRDT_EMALFORMED;
	/* Version 1: [1, 6, clock, hlc_max, objects, buffered, (admin_seen,)
	 * evidence]; version 2 adds doc_id and stamps (document.md). */
	size_t base = ver == 1 ? 7 : 9, i = 2;
	if (a->size != base && a->size != base + 1)
		return CRDT_EMALFORMED;
	f->version = (unsigned)ver;
	if (ver == 2) {
		const uint8_t *p;
		size_t n;
		if (!cli_mp_bin(&a->ptr[i++], &p, &n) || n != 32)
			return CRDT_EMALFORMED;
		memcpy(f->doc_id.bytes, p, 32);
	}
	f->clock = cli_mp_array(&a->ptr[i++]);
	if (ver == 2 && (f->stamps = cli_mp_array(&a->ptr[i++])) == NULL)
		return CRDT_EMALFORMED;
	if (!cli_mp_uint(&a->ptr[i++], &f->hlc_max))
		return CRDT_EMALFORMED;
	f->objects = cli_mp_array(&a->ptr[i++]);
	f->buffered = cli_mp_array(&a->ptr[i++]);
	if (a->size == base + 1 &&
	    (f->admin_seen = cli_mp_array(&a->ptr[i++])) == NULL)
		return CRDT_EMALFORMED;
	f->evidence = cli_mp_array(&a->ptr[i++]);
	if (f->clock == NULL || f->clock->size % 2 != 0 ||
	    f->objects == NULL || f->buffered == NULL || f->evidence == NULL)
		return CRDT_EMALFORMED;
	for (uint32_t k = 0; k < f->objects->size; k++) {
		const msgpack_object_array *e = cli_mp_array(&f->objects->ptr[k]);
		const uint8_t *p;
		size_t n;
		uint64_t t;
		if (e == NULL || e->size != 3 || !cli_mp_bin(&e->ptr[0], &p, &n) ||
		    n == 0 || n > CRDT_OBJ_NAME_MAX ||
		    !cli_mp_uint(&e->ptr[1], &t) || t < 1 || t > 4 ||
		    !cli_mp_bin(&e->ptr[2], &p, &n))
			return CRDT_EMALFORMED;
	}
	return 0;
}

/* Register the objects a plain snapshot lists (d NULL: only read its doc
 * ID into *doc and whether it has an allowlist). */
static int
snapshot_schema(const uint8_t *snap, size_t len, crdt_doc_id *doc,
    bool *acl, crdt_doc *d, const cli_docopts *o, const char **why)
{
	msgpack_zone z;
	msgpack_object root;
	cli_snap f;
	int rc;

	msgpack_zone_init(&z, 4096);
	*why = "the snapshot does not decode";
	rc = cli_mp_parse(snap, len, &z, &root);
	if (rc == 0)
		rc = cli_snap_fields(&root, &f);
	if (rc == 0 && d == NULL)
		*doc = f.doc_id;
	for (uint32_t i = 0; rc == 0 && i < f.objects->size; i++) {
		const msgpack_object_array *e = cli_mp_array(&f.objects->ptr[i]);
		const uint8_t *name;
		size_t nl;
		uint64_t t;
		char nm[CRDT_OBJ_NAME_MAX + 1];
		(void)cli_mp_bin(&e->ptr[0], &name, &nl);
		(void)cli_mp_uint(&e->ptr[1], &t);
		memcpy(nm, name, nl);
		nm[nl] = '\0';
		if (d == NULL) {
			if (strcmp(nm, "__acl") == 0)
				*acl = true;
			continue;
		}
		if ((rc = reg(d, o, nm, (crdt_obj_type)t)) != 0) {
			/* A duplicate or unusable name: the snapshot is at
			 * fault, not the command line. */
			*why = "cannot register the snapshot's objects";
			if (rc == CRDT_EINVAL)
				rc = CRDT_EMALFORMED;
		}
	}
	msgpack_zone_destroy(&z);
	return rc;
}

int
cli_doc_for(const cli_docopts *o, const uint8_t *snap, size_t len,
    crdt_doc **out, const char **why)
{
	crdt_config cfg;
	crdt_replica_id self;
	crdt_doc *d = NULL;
	bool acl = false;
	int rc;

	crdt_config_default(&cfg);
	if (snap != NULL &&
	    (rc = snapshot_schema(snap, len, &cfg.doc_id, &acl, NULL, o,
		 why)) != 0)
		return rc;
	if (o->have_doc_id)
		cfg.doc_id = o->doc_id;
	if (acl && !o->have_admin) {
		*why = "the document has an allowlist: give --admin-key";
		return CRDT_EINVAL;
	}
	*why = "cannot create a document";
	if ((rc = crdt_replica_id_random(&self)) != 0 ||
	    (rc = crdt_doc_new(&cfg, &self, &d)) != 0)
		return rc;
	/* Signed mode only with an allowlist (it needs it); without, a
	 * signed message's signature is checked all the same. */
	crdt_doc_security sec = { o->have_admin, NULL, o->key != NULL, o->key,
		o->epoch, o->have_admin ? o->admin : NULL, true };
	if (o->have_admin || o->key != NULL) {
		*why = "cannot set the security settings";
		rc = crdt_doc_set_security(d, &sec);
	}
	if (rc == 0 && snap != NULL)
		rc = snapshot_schema(snap, len, NULL, &acl, d, o, why);
	else if (rc == 0 && o->schema != NULL)
		rc = reg_spec(d, o, o->schema, why);
	else if (rc == 0) {
		*why = "no snapshot to read the schema from: give --schema";
		rc = CRDT_EINVAL;
	}
	if (rc != 0) {
		crdt_doc_free(d);
		return rc;
	}
	*out = d;
	return 0;
}
