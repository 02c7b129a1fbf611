/*
 * The documents a relay holds. Each is one crdt_doc on its own SQLite
 * file, DIR/<doc id hex>.db, attached in group commit: what a frame
 * brings is queued and flushed in one store transaction (one fsync per
 * 64 messages) before anything leaves the relay, so its reply and its
 * acks, the relay's acknowledgements, never promise what a kill -9
 * could take away (docs/storage.md, group commit). A document is opened on the first frame that
 * names it and stays open until shutdown; a fresh one that a frame left
 * empty is closed and removed again, so frames naming made-up documents
 * leave nothing behind.
 */

#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Every applied update makes the document due for a push to the
 * connections that did not bring it; remote ones make an ack due (server
 * role). Counting here, not in the frame handler, catches every path (a
 * frame's messages, messages released from the buffer, our own acks).
 */
static void
on_update(void *ud, crdt_update_source src, const uint8_t *bytes,
    size_t len, void *caller)
{
	rdoc *rd = ud;
	/* The caller is a connection ID, not a pointer: a message buffered
	 * from a connection may be applied after that connection is gone. */
	uint64_t from = (uint64_t)(uintptr_t)caller;
	(void)bytes;
	(void)len;
	if (!rd->push_due) {
		rd->push_due = true;
		rd->push_skip = from;
	} else if (rd->push_skip != from) {
		rd->push_skip = 0;
	}
	if (src == CRDT_UPDATE_REMOTE)
		rd->ack_due = true;
	rd->since_checkpoint++;
	rd->fresh = false;
}

static void
remove_files(const char *path)
{
	static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };
	char p[4096];
	for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
		if ((size_t)snprintf(p, sizeof p, "%s%s", path, suffix[i]) <
		    sizeof p)
			(void)unlink(p);
	}
}

static void
rdoc_free(rdoc *rd)
{
	crdt_doc_free(rd->doc);
	crdt_store_close(rd->store);
	free(rd->path);
	free(rd);
}

/* Schema and security exactly as every client of this relay sets them
 * (docs/relay.md, "Documents"): one chat thread "chat". */
static int
setup_doc(relay *r, rdoc *rd)
{
	crdt_config cfg = r->cfg;
	crdt_replica_id self;
	int rc;
	cfg.doc_id = rd->id;
	if (r->o.has_server) {
		self = r->o.server_id;
	} else {
		/* Never commits: any ID will do; a random one per open keeps
		 * two relays on one store from looking like one replica. */
		uint8_t k[CRDT_DOC_KEY_BYTES];
		if ((rc = crdt_doc_key_generate(k)) != 0)
			return rc;
		memcpy(self.bytes, k, sizeof self.bytes);
	}
	if ((rc = crdt_doc_new(&cfg, &self, &rd->doc)) != 0)
		return rc;
	if (r->o.signed_mode || r->o.encrypted) {
		crdt_doc_security sec;
		memset(&sec, 0, sizeof sec);
		sec.signed_mode = r->o.signed_mode;
		sec.encrypted = r->o.encrypted; /* key NULL: content-blind */
		/* A verifying relay needs no key pair; a signed server signs
		 * its acks. */
		sec.identity = r->o.server_ident;
		if ((rc = crdt_doc_set_security(rd->doc, &sec)) != 0)
			return rc;
	}
	return crdt_doc_register_chat(rd->doc, "chat",
	    r->o.has_server ? &r->o.server_id : NULL, &rd->chat);
}

rdoc *
relay_doc_get(relay *r, const crdt_doc_id *id, const char *who)
{
	for (rdoc *rd = r->docs; rd != NULL; rd = rd->next)
		if (memcmp(rd->id.bytes, id->bytes, CRDT_DOC_ID_BYTES) == 0)
			return rd;
	char hex[2 * CRDT_DOC_ID_BYTES + 1];
	tool_hex(id->bytes, CRDT_DOC_ID_BYTES, hex);
	if (r->ndocs >= r->o.max_docs) {
		relay_log("document %s refused for %s: %zu documents open "
		    "(--max-docs)", hex, who, r->ndocs);
		return NULL;
	}
	rdoc *rd = calloc(1, sizeof *rd);
	size_t plen = strlen(r->o.data_dir) + 1 + sizeof hex + 4;
	if (rd == NULL || (rd->path = malloc(plen)) == NULL) {
		free(rd);
		relay_log("document %s refused for %s: out of memory", hex,
		    who);
		return NULL;
	}
	rd->r = r;
	rd->id = *id;
	memcpy(rd->hex, hex, sizeof hex);
	snprintf(rd->path, plen, "%s/%s.db", r->o.data_dir, hex);
	struct stat st;
	bool exists = stat(rd->path, &st) == 0;
	crdt_store_sqlite_opts so;
	memset(&so, 0, sizeof so);
	so.synchronous = r->o.sync;
	/* A file we created before must still be a store: an empty or
	 * foreign file is refused, never silently started afresh. */
	so.must_exist = exists;
	int rc = setup_doc(r, rd);
	if (rc == 0)
		rc = crdt_store_open_sqlite(&r->cfg, rd->path, &so,
		    &rd->store);
	if (rc == 0)
		rc = crdt_doc_open_store(rd->doc, rd->store,
		    CRDT_DOC_STORE_GROUP);
	if (rc != 0) {
		relay_log("document %s refused for %s: %s (%s)", hex, who,
		    crdt_strerror(rc), crdt_err_name(rc));
		bool created = !exists && rd->store != NULL;
		char *path = rd->path;
		rd->path = NULL;
		rdoc_free(rd);
		if (created)
			remove_files(path);
		free(path);
		return NULL;
	}
	rd->fresh = !exists;
	crdt_doc_listener l;
	memset(&l, 0, sizeof l);
	l.on_update = on_update;
	l.ud = rd;
	crdt_doc_set_listener(rd->doc, &l);
	rd->next = r->docs;
	r->docs = rd;
	r->ndocs++;
	if (exists)
		relay_log("document %s opened (%zu messages in the log, %zu "
		    "buffered)", hex, crdt_doc_log_size(rd->doc),
		    crdt_doc_buffered(rd->doc));
	else
		relay_log("document %s opened (new, for %s)", hex, who);
	return rd;
}

static void
unlink_doc(relay *r, rdoc *rd)
{
	for (rdoc **p = &r->docs; *p != NULL; p = &(*p)->next) {
		if (*p == rd) {
			*p = rd->next;
			r->ndocs--;
			break;
		}
	}
	relay_conns_forget_doc(r, rd);
}

void
relay_doc_release_if_empty(relay *r, rdoc *rd)
{
	if (!rd->fresh || crdt_doc_log_size(rd->doc) > 0 ||
	    crdt_doc_buffered(rd->doc) > 0)
		return;
	crdt_vclock *vc;
	if (crdt_doc_vclock(rd->doc, &vc) != 0)
		return;
	size_t n = crdt_vclock_size(vc);
	crdt_vclock_free(vc);
	if (n > 0)
		return;
	unlink_doc(r, rd);
	char *path = rd->path;
	rd->path = NULL;
	rdoc_free(rd);
	remove_files(path);
	free(path);
}

bool
relay_doc_flush(rdoc *rd)
{
	int rc = crdt_doc_store_flush(rd->doc);
	if (rc != 0)
		relay_log("document %s: store flush failed: %s (%s); nothing "
		    "sent until it succeeds", rd->hex, crdt_strerror(rc),
		    crdt_err_name(rc));
	return rc == 0;
}

static bool
conn_has_doc(const rconn *c, const rdoc *rd)
{
	for (size_t i = 0; i < c->ndocs; i++)
		if (c->docs[i] == rd)
			return true;
	return false;
}

/*
 * Push: a HELLO to every other connection on the document. Its answer
 * (a DATA frame with what the relay lacks) makes the relay answer with
 * what that client lacks, so the client pulls; one HELLO per document
 * per loop turn however many messages the turn brought.
 */
static void
push(relay *r, rdoc *rd)
{
	crdt_buf hello;
	crdt_buf_init(&hello, NULL);
	int rc = crdt_doc_sync_start(rd->doc, &hello);
	if (rc != 0) {
		relay_log("document %s: push failed: %s", rd->hex,
		    crdt_strerror(rc));
		crdt_buf_fini(&hello);
		return;
	}
	rd->push_due = false;
	rconn *next;
	for (rconn *c = r->conns; c != NULL; c = next) {
		next = c->next; /* a send may close (and unlink) c */
		if (c->id != rd->push_skip && conn_has_doc(c, rd))
			(void)relay_conn_send(c, NET_TYPE_SYNC, &rd->id,
			    hello.data, hello.len);
	}
	crdt_buf_fini(&hello);
}

void
relay_docs_tick(relay *r)
{
	for (rdoc *rd = r->docs; rd != NULL; rd = rd->next) {
		if (rd->ack_due && r->o.has_server) {
			crdt_buf ack;
			crdt_buf_init(&ack, NULL);
			/* The ack covers the relay's clock: only messages the
			 * store accepted (write-ahead), so "delivered" on a
			 * client survives a kill -9 of the relay. */
			int rc = crdt_doc_chat_ack(rd->doc, rd->chat, &ack);
			crdt_buf_fini(&ack);
			if (rc != 0)
				relay_log("document %s: ack failed: %s (%s)",
				    rd->hex, crdt_strerror(rc),
				    crdt_err_name(rc));
			else
				rd->ack_due = false;
		} else {
			rd->ack_due = false;
		}
		/* The ack and what the turn brought are stored before a push
		 * lets anyone pull them; a failed flush retries next turn. */
		if (rd->push_due && relay_doc_flush(rd))
			push(r, rd);
		if (!r->o.encrypted &&
		    rd->since_checkpoint >= r->o.checkpoint_every) {
			int rc = crdt_doc_checkpoint(rd->doc);
			if (rc != 0)
				relay_log("document %s: checkpoint failed: %s",
				    rd->hex, crdt_strerror(rc));
			rd->since_checkpoint = 0;
		}
	}
}

void
relay_docs_close_all(relay *r)
{
	while (r->docs != NULL) {
		rdoc *rd = r->docs;
		/* A keyless relay has no state to checkpoint; it restarts
		 * from its stored log (docs/storage.md). */
		if (!r->o.encrypted && rd->since_checkpoint > 0) {
			int rc = crdt_doc_checkpoint(rd->doc); /* flushes */
			if (rc != 0)
				relay_log("document %s: checkpoint failed: %s",
				    rd->hex, crdt_strerror(rc));
		}
		(void)relay_doc_flush(rd);
		unlink_doc(r, rd);
		rdoc_free(rd);
	}
}
