/*
 * crdt-chat's connection: connect (and reconnect while online), sync
 * rounds, and PING/PONG to learn when the relay has answered everything
 * sent so far (the relay handles a connection's frames in order, so a
 * PONG follows the replies to every earlier frame).
 */

#include "chat.h"

#include <stdlib.h>
#include <string.h>

#define RETRY_MS 100

static void on_conn_close(uv_handle_t *h)
{
	chat_conn *k = h->data;
	net_rbuf_fini(&k->rbuf);
	free(k);
}

static void
on_retry(uv_timer_t *t)
{
	chat *c = t->data;
	if (c->online && c->cur == NULL && !c->done)
		chat_net_online(c);
}

static void
drop(chat_conn *k, const char *why)
{
	chat *c = k->c;
	if (k->closing)
		return;
	k->closing = true;
	if (k->up || why != NULL)
		chat_log("disconnected: %s", why ? why : "closed");
	if (c->cur == k)
		c->cur = NULL;
	uv_close((uv_handle_t *)&k->tcp, on_conn_close);
	if (c->online && !c->done)
		(void)uv_timer_start(&c->retry, on_retry, RETRY_MS, 0);
	chat_progress(c);
}

static void
on_write(uv_write_t *req, int status)
{
	net_write *w = (net_write *)req;
	chat_conn *k = req->data;
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		drop(k, uv_strerror(status));
}

static void
send_frame(chat_conn *k, uint8_t type, const void *p, size_t n)
{
	if (k->closing || !k->up)
		return;
	net_write *w = net_write_new(type, &k->c->doc_id, p, n);
	if (w == NULL) {
		drop(k, "out of memory");
		return;
	}
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
	w->req.data = k;
	int rc = uv_write(&w->req, (uv_stream_t *)&k->tcp, &b, 1, on_write);
	if (rc < 0) {
		free(w);
		drop(k, uv_strerror(rc));
	}
}

static void
send_ping(chat_conn *k)
{
	uint8_t t[NET_TOKEN_BYTES];
	uint64_t v = ++k->c->next_token;
	for (int i = 0; i < NET_TOKEN_BYTES; i++)
		t[i] = (uint8_t)(v >> (56 - 8 * i));
	k->last_ping = v;
	send_frame(k, NET_TYPE_PING, t, sizeof t);
}

/* Group commit: nothing of ours leaves before the store holds it. */
static bool
flushed(chat *c)
{
	int rc = crdt_doc_store_flush(c->doc);
	if (rc != 0)
		chat_log("store flush failed: %s (%s)", crdt_strerror(rc),
		    crdt_err_name(rc));
	return rc == 0;
}

static void
send_hello(chat_conn *k)
{
	crdt_buf b;
	if (!flushed(k->c))
		return;
	crdt_buf_init(&b, NULL);
	int rc = crdt_doc_sync_start(k->c->doc, &b);
	if (rc == 0)
		send_frame(k, NET_TYPE_SYNC, b.data, b.len);
	else
		chat_log("sync start failed: %s", crdt_strerror(rc));
	crdt_buf_fini(&b);
	send_ping(k);
}

static void
handle(chat_conn *k, const uint8_t *f, size_t n)
{
	chat *c = k->c;
	if (memcmp(f + 1, c->doc_id.bytes, CRDT_DOC_ID_BYTES) != 0) {
		drop(k, "the relay named another document");
		return;
	}
	const uint8_t *p = f + NET_ENV_BYTES;
	size_t plen = n - NET_ENV_BYTES;
	if (f[0] == NET_TYPE_PONG && plen == NET_TOKEN_BYTES) {
		uint64_t v = 0;
		for (int i = 0; i < NET_TOKEN_BYTES; i++)
			v = v << 8 | p[i];
		k->last_pong = v;
		chat_progress(c);
	} else if (f[0] == NET_TYPE_SYNC) {
		crdt_buf reply;
		crdt_buf_init(&reply, NULL);
		int rc = crdt_doc_sync_handle(c->doc, p, plen, NULL, &reply);
		if (rc != 0)
			chat_log("sync frame refused: %s (%s)",
			    crdt_strerror(rc), crdt_err_name(rc));
		if (reply.len > 0 && flushed(c)) {
			send_frame(k, NET_TYPE_SYNC, reply.data, reply.len);
			send_ping(k);
		}
		crdt_buf_fini(&reply);
		chat_progress(c);
	} else {
		drop(k, "unexpected frame from the relay");
	}
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char buf[65536];
	(void)h;
	(void)suggested;
	*b = uv_buf_init(buf, sizeof buf);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	chat_conn *k = s->data;
	if (nread < 0) {
		drop(k, nread == UV_EOF ? "closed by the relay" :
		    uv_strerror((int)nread));
		return;
	}
	size_t off = 0, total = (size_t)nread;
	while (off < total && !k->closing) {
		size_t room = k->rbuf.max_frame + NET_LEN_BYTES - k->rbuf.len;
		size_t m = total - off < room ? total - off : room;
		if (net_rbuf_take(&k->rbuf, b->base + off, m) != 0) {
			drop(k, "out of memory");
			return;
		}
		off += m;
		for (;;) {
			const uint8_t *f;
			size_t n;
			uint32_t claimed;
			net_cut cut = net_rbuf_cut(&k->rbuf, &f, &n, &claimed);
			if (cut == NET_CUT_NONE)
				break;
			if (cut != NET_CUT_FRAME) {
				drop(k, "bad frame length from the relay");
				return;
			}
			handle(k, f, n);
			if (k->closing)
				return;
			net_rbuf_drop(&k->rbuf);
		}
	}
}

static void
on_connect(uv_connect_t *req, int status)
{
	chat_conn *k = req->data;
	if (k->closing)
		return;
	if (status < 0) {
		drop(k, NULL);
		return;
	}
	k->up = true;
	(void)uv_tcp_nodelay(&k->tcp, 1); /* small frames, answered at once */
	chat_log("connected");
	int rc = uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
	if (rc < 0) {
		drop(k, uv_strerror(rc));
		return;
	}
	send_hello(k);
}

void
chat_net_online(chat *c)
{
	c->online = true;
	if (c->cur != NULL || c->done)
		return;
	chat_conn *k = calloc(1, sizeof *k);
	if (k == NULL) {
		(void)uv_timer_start(&c->retry, on_retry, RETRY_MS, 0);
		return;
	}
	k->c = c;
	net_rbuf_init(&k->rbuf, c->max_frame);
	(void)uv_tcp_init(&c->loop, &k->tcp);
	k->tcp.data = k;
	k->req.data = k;
	c->cur = k;
	int rc = uv_tcp_connect(&k->req, &k->tcp,
	    (const struct sockaddr *)&c->addr, on_connect);
	if (rc < 0)
		drop(k, uv_strerror(rc));
}

void
chat_net_close(chat *c)
{
	c->online = false;
	(void)uv_timer_stop(&c->retry);
	if (c->cur != NULL)
		drop(c->cur, "offline");
}

void
chat_net_offline(chat *c)
{
	chat_net_close(c);
}

void
chat_net_kick(chat *c)
{
	if (c->cur != NULL && c->cur->up && !c->cur->closing)
		send_hello(c->cur);
}

bool
chat_net_quiet(const chat *c)
{
	const chat_conn *k = c->cur;
	return k != NULL && k->up && !k->closing && k->last_ping != 0 &&
	    k->last_pong == k->last_ping;
}
