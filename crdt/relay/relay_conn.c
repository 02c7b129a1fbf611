/*
 * Connections: accept (bounded), cut the stream into envelopes, hand
 * sync frames to the document they name, queue replies (bounded: a
 * client that does not read is disconnected rather than buffered
 * without end). Every refusal closes only the connection it came on and
 * leaves one line on stderr.
 */

#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One thread: libuv calls alloc_cb and read_cb back to back, so one
 * buffer serves every connection's reads. */
static char read_buf[65536];

static void
on_close(uv_handle_t *h)
{
	rconn *c = h->data;
	net_rbuf_fini(&c->rbuf);
	free(c->docs);
	free(c);
}

void
relay_conn_close(rconn *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	relay_log("disconnect conn=%llu peer=%s: %s",
	    (unsigned long long)c->id, c->peer, reason);
	for (rconn **p = &c->r->conns; *p != NULL; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			c->r->nconns--;
			break;
		}
	}
	(void)uv_read_stop((uv_stream_t *)&c->tcp);
	/* Pending writes get their callbacks (UV_ECANCELED) before
	 * on_close frees the connection. */
	uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void
on_write(uv_write_t *req, int status)
{
	net_write *w = (net_write *)req;
	rconn *c = req->data;
	c->queued -= w->len;
	free(w);
	if (status < 0 && !c->closing) {
		char why[128];
		snprintf(why, sizeof why, "write failed: %s",
		    uv_strerror(status));
		relay_conn_close(c, why);
	}
}

bool
relay_conn_send(rconn *c, uint8_t type, const crdt_doc_id *doc,
    const void *payload, size_t len)
{
	if (c->closing)
		return false;
	net_write *w = net_write_new(type, doc, payload, len);
	if (w == NULL) {
		relay_conn_close(c, "out of memory for a write");
		return false;
	}
	if (w->len > c->r->o.max_write_queue - c->queued) {
		char why[160];
		snprintf(why, sizeof why, "slow client: %zu bytes queued, "
		    "%zu more would pass --max-write-queue %zu", c->queued,
		    w->len, c->r->o.max_write_queue);
		free(w);
		relay_conn_close(c, why);
		return false;
	}
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
	w->req.data = c;
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (rc < 0) {
		char why[128];
		free(w);
		snprintf(why, sizeof why, "write failed: %s", uv_strerror(rc));
		relay_conn_close(c, why);
		return false;
	}
	c->queued += w->len;
	return true;
}

/* Codes that say the frame (the peer's bytes) is at fault, not the
 * relay: the connection that sent it is closed. */
static bool
peer_fault(int rc)
{
	switch (rc) {
	case CRDT_ENOMEM:
	case CRDT_EIO:
	case CRDT_EFULL:
	case CRDT_EBUSY:
	case CRDT_ECORRUPT:
	case CRDT_ENOTFOUND:
		return false;
	default:
		return true;
	}
}

static bool
subscribe(rconn *c, rdoc *rd)
{
	for (size_t i = 0; i < c->ndocs; i++)
		if (c->docs[i] == rd)
			return true;
	if (c->docs == NULL) {
		c->docs = calloc(c->r->o.max_docs_per_conn, sizeof *c->docs);
		if (c->docs == NULL)
			return false;
	}
	c->docs[c->ndocs++] = rd;
	return true;
}

static bool
conn_names(const rconn *c, const crdt_doc_id *id)
{
	for (size_t i = 0; i < c->ndocs; i++)
		if (memcmp(c->docs[i]->id.bytes, id->bytes,
		    CRDT_DOC_ID_BYTES) == 0)
			return true;
	return false;
}

static void
handle_sync(rconn *c, const crdt_doc_id *id, const uint8_t *p, size_t n)
{
	relay *r = c->r;
	char why[256];
	static const crdt_doc_id zero;
	if (memcmp(id->bytes, zero.bytes, CRDT_DOC_ID_BYTES) == 0) {
		relay_conn_close(c, "frame refused: the zero document ID "
		    "names no document");
		return;
	}
	/* The sync frame names its document too (doc.h, crdt_sync_peek):
	 * it must be the envelope's, checked before any document is opened
	 * or created, so a frame replayed under another ID opens nothing. */
	crdt_doc_id fid;
	int kind, prc = crdt_sync_peek(p, n, &fid, &kind);
	if (prc != 0) {
		snprintf(why, sizeof why, "frame refused: not a sync frame: "
		    "%s (%s)", crdt_strerror(prc), crdt_err_name(prc));
		relay_conn_close(c, why);
		return;
	}
	if (memcmp(fid.bytes, id->bytes, CRDT_DOC_ID_BYTES) != 0) {
		relay_conn_close(c, "frame refused: the sync frame names "
		    "another document than its envelope");
		return;
	}
	if (!conn_names(c, id) && c->ndocs >= r->o.max_docs_per_conn) {
		snprintf(why, sizeof why, "frame refused: more than %zu "
		    "documents on one connection (--max-docs-per-conn)",
		    r->o.max_docs_per_conn);
		relay_conn_close(c, why);
		return;
	}
	rdoc *rd = relay_doc_get(r, id, c->peer);
	if (rd == NULL) {
		relay_conn_close(c, "frame refused: document unavailable");
		return;
	}
	if (!subscribe(c, rd)) {
		relay_doc_release_if_empty(r, rd);
		relay_conn_close(c, "out of memory");
		return;
	}
	crdt_buf reply;
	crdt_buf_init(&reply, NULL);
	int rc = crdt_doc_sync_handle(rd->doc, p, n,
	    (void *)(uintptr_t)c->id, &reply);
	if (rc != 0) {
		snprintf(why, sizeof why, "frame refused for document %s: "
		    "%s (%s)", rd->hex, crdt_strerror(rc), crdt_err_name(rc));
		if (peer_fault(rc)) {
			/* Messages before the refusal were accepted. */
			(void)relay_doc_flush(rd);
			crdt_buf_fini(&reply);
			relay_doc_release_if_empty(r, rd);
			relay_conn_close(c, why);
			return;
		}
		relay_log("conn=%llu: %s", (unsigned long long)c->id, why);
	}
	/* Store, then acknowledge: the reply (our clock, which covers what
	 * the frame brought) leaves only once the store holds it. */
	if (!relay_doc_flush(rd))
		reply.len = 0;
	if (reply.len > 0)
		(void)relay_conn_send(c, NET_TYPE_SYNC, id, reply.data,
		    reply.len);
	crdt_buf_fini(&reply);
	relay_doc_release_if_empty(r, rd);
}

static void
dispatch(rconn *c, const uint8_t *f, size_t n)
{
	crdt_doc_id id;
	memcpy(id.bytes, f + 1, CRDT_DOC_ID_BYTES);
	const uint8_t *p = f + NET_ENV_BYTES;
	size_t plen = n - NET_ENV_BYTES;
	switch (f[0]) {
	case NET_TYPE_SYNC:
		handle_sync(c, &id, p, plen);
		break;
	case NET_TYPE_PING:
		/* Frames are handled in order, so the PONG follows the
		 * replies to everything sent before the PING. */
		if (plen != NET_TOKEN_BYTES) {
			relay_conn_close(c, "frame refused: PING without an "
			    "8-byte token");
			break;
		}
		/* A PONG says "handled and stored": not while a store
		 * refuses (the client's wait then times out or retries). */
		for (size_t i = 0; i < c->ndocs; i++)
			if (!relay_doc_flush(c->docs[i]))
				return;
		(void)relay_conn_send(c, NET_TYPE_PONG, &id, p, plen);
		break;
	default: {
		char why[64];
		snprintf(why, sizeof why, "frame refused: unknown type %u",
		    (unsigned)f[0]);
		relay_conn_close(c, why);
	}
	}
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	(void)suggested;
	*b = uv_buf_init(read_buf, sizeof read_buf);
}

/* Cut and handle every complete frame; false once the connection is
 * closing. */
static bool
drain(rconn *c)
{
	for (;;) {
		const uint8_t *f;
		size_t n;
		uint32_t claimed = 0;
		char why[160];
		switch (net_rbuf_cut(&c->rbuf, &f, &n, &claimed)) {
		case NET_CUT_NONE:
			return true;
		case NET_CUT_TOOBIG:
			snprintf(why, sizeof why, "frame refused: length %lu "
			    "over --max-frame %zu", (unsigned long)claimed,
			    c->r->o.max_frame);
			relay_conn_close(c, why);
			return false;
		case NET_CUT_SHORT:
			snprintf(why, sizeof why, "frame refused: length %lu "
			    "shorter than an envelope (%d)",
			    (unsigned long)claimed, NET_ENV_BYTES);
			relay_conn_close(c, why);
			return false;
		case NET_CUT_FRAME:
			dispatch(c, f, n);
			if (c->closing)
				return false;
			net_rbuf_drop(&c->rbuf);
			break;
		}
	}
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	rconn *c = s->data;
	if (nread < 0) {
		char why[160];
		if (nread == UV_EOF && c->rbuf.len == 0)
			snprintf(why, sizeof why, "closed by peer");
		else if (nread == UV_EOF)
			snprintf(why, sizeof why, "closed by peer inside a "
			    "frame (truncated: %zu bytes buffered)",
			    c->rbuf.len);
		else
			snprintf(why, sizeof why, "read failed: %s",
			    uv_strerror((int)nread));
		relay_conn_close(c, why);
		return;
	}
	size_t off = 0, total = (size_t)nread;
	while (off < total && !c->closing) {
		size_t room = c->r->o.max_frame + NET_LEN_BYTES - c->rbuf.len;
		size_t k = total - off < room ? total - off : room;
		if (net_rbuf_take(&c->rbuf, b->base + off, k) != 0) {
			relay_conn_close(c, "out of memory for a read");
			return;
		}
		off += k;
		if (!drain(c))
			return;
	}
}

void
relay_on_connection(uv_stream_t *server, int status)
{
	relay *r = server->data;
	if (status < 0) {
		relay_log("accept failed: %s", uv_strerror(status));
		return;
	}
	rconn *c = calloc(1, sizeof *c);
	if (c == NULL) {
		relay_log("accept failed: out of memory");
		return;
	}
	c->r = r;
	c->id = ++r->next_conn_id;
	snprintf(c->peer, sizeof c->peer, "?");
	net_rbuf_init(&c->rbuf, r->o.max_frame);
	(void)uv_tcp_init(&r->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, on_close);
		return;
	}
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0 &&
	    ss.ss_family == AF_INET) {
		char ip[INET_ADDRSTRLEN];
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		uv_ip4_name(in, ip, sizeof ip);
		snprintf(c->peer, sizeof c->peer, "%s:%u", ip,
		    (unsigned)ntohs(in->sin_port));
	}
	if (r->stopping || r->nconns >= r->o.max_conns) {
		relay_log("connection from %s refused: %zu connections open "
		    "(--max-conns)", c->peer, r->nconns);
		c->closing = true;
		uv_close((uv_handle_t *)&c->tcp, on_close);
		return;
	}
	/* Peers that vanish without a FIN (a dead host, a dropped route)
	 * are found by keepalive instead of holding a slot forever. */
	(void)uv_tcp_keepalive(&c->tcp, 1, 60);
	(void)uv_tcp_nodelay(&c->tcp, 1);
	c->next = r->conns;
	r->conns = c;
	r->nconns++;
	relay_log("connect conn=%llu peer=%s", (unsigned long long)c->id,
	    c->peer);
	int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc != 0) {
		char why[128];
		snprintf(why, sizeof why, "read failed: %s", uv_strerror(rc));
		relay_conn_close(c, why);
	}
}

void
relay_conns_close_all(relay *r)
{
	while (r->conns != NULL)
		relay_conn_close(r->conns, "relay shutting down");
}

void
relay_conns_forget_doc(relay *r, const rdoc *rd)
{
	for (rconn *c = r->conns; c != NULL; c = c->next) {
		for (size_t i = 0; i < c->ndocs; i++) {
			if (c->docs[i] == rd) {
				c->docs[i] = c->docs[--c->ndocs];
				break;
			}
		}
	}
}
