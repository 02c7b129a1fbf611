/*
 * The document's chat mutations (crdt_doc_chat_*, doc.h): each stages one
 * chat op in the open transaction, or runs as a one-op transaction, like
 * every other mutation (doc.c). The thread itself, its validation and its
 * index are chat.c; this file only writes ops.
 */
#include "doc_impl.h"

static int
chat_check(crdt_doc *d, uint32_t on, crdt_chat **c)
{
	if (d == NULL)
		return CRDT_EINVAL;
	if (on >= d->nobjs || d->objs[on].type != CRDT_OBJ_CHAT)
		return CRDT_ESCHEMA;
	*c = d->objs[on].o;
	return 0;
}

/* Open the stage (a one-op transaction unless one is open) and write the
 * op header [obj, kind, ...] of a chat op with `n_more` fields. A failure
 * to open is returned (nothing to close); the header's own status goes to
 * *rc, for crdt__stage_close() to settle with the rest of the op. */
static int
chat_begin(crdt_doc *d, uint32_t on, unsigned kind, size_t n_more,
    crdt_buf *msg_out, bool *one, size_t *mark, int *rc)
{
	CRDT_TRY(crdt__stage_open(d, msg_out, one, mark));
	*rc = crdt__w_array(&d->stage, 2 + n_more);
	if (*rc == 0)
		*rc = crdt__w_uint(&d->stage, on);
	if (*rc == 0)
		*rc = crdt__w_uint(&d->stage, kind);
	return 0;
}

static bool
user_ok(const void *u, size_t n)
{
	return u != NULL && n > 0 && n <= 255;
}

static int
w_dot_(crdt_buf *b, crdt_dot x)
{
	CRDT_TRY(crdt__w_id(b, &x.replica));
	return crdt__w_uint(b, x.counter);
}

int
crdt_doc_chat_post(crdt_doc *d, uint32_t on, const crdt_chat_post *p,
    crdt_dot *id, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (p == NULL || !user_ok(p->user, p->user_len) ||
	    (p->body == NULL && p->body_len != 0) ||
	    (p->meta == NULL && p->meta_len != 0) ||
	    (p->reply_to != NULL && p->reply_to->counter == 0))
		return CRDT_EINVAL;
	if (p->body_len > d->cfg.limits.max_value_bytes ||
	    p->meta_len > d->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	if (d->in_txn && d->objs[on].post_txn == d->txn_serial)
		return CRDT_EINVAL; /* the message ID is the transaction dot */
	uint64_t seen = crdt__chat_seen(c);
	int rc;
	CRDT_TRY(chat_begin(d, on, CRDT__CHAT_OP_POST, 5, msg_out, &one, &mark,
	    &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = crdt__w_uint(s, seen);
	if (rc == 0)
		rc = crdt__w_bin(s, p->user, p->user_len);
	if (rc == 0)
		rc = crdt__w_bin(s, p->body, p->body_len);
	if (rc == 0 && p->reply_to != NULL) {
		rc = crdt__w_array(s, 2);
		if (rc == 0)
			rc = w_dot_(s, *p->reply_to);
	} else if (rc == 0) {
		rc = crdt__w_nil(s);
	}
	if (rc == 0)
		rc = p->meta != NULL ? crdt__w_bin(s, p->meta, p->meta_len) :
				       crdt__w_nil(s);
	crdt_dot next = { d->self, d->rs[d->self_idx].vc + 1 };
	if (rc == 0)
		d->objs[on].post_txn = d->txn_serial;
	rc = crdt__stage_close(d, one, mark, rc, msg_out);
	if (rc == 0 && id != NULL)
		*id = next;
	return rc;
}

int
crdt_doc_chat_react(crdt_doc *d, uint32_t on, crdt_dot msg, const void *user,
    size_t user_len, const void *emoji, size_t emoji_len, bool react_on,
    crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (!user_ok(user, user_len) || (emoji == NULL && emoji_len != 0) ||
	    msg.counter == 0)
		return CRDT_EINVAL;
	if (emoji_len > d->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	int rc;
	CRDT_TRY(chat_begin(d, on, CRDT__CHAT_OP_REACT, 5, msg_out, &one, &mark,
	    &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = w_dot_(s, msg);
	if (rc == 0)
		rc = crdt__w_bin(s, user, user_len);
	if (rc == 0)
		rc = crdt__w_bin(s, emoji, emoji_len);
	if (rc == 0)
		rc = crdt__w_uint(s, react_on ? 1 : 0);
	return crdt__stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_chat_mark_read(crdt_doc *d, uint32_t on, const void *user,
    size_t user_len, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (!user_ok(user, user_len))
		return CRDT_EINVAL;
	int rc;
	CRDT_TRY(chat_begin(d, on, CRDT__CHAT_OP_READ, 2, msg_out, &one, &mark,
	    &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = crdt__w_bin(s, user, user_len);
	if (rc == 0)
		rc = crdt__w_vc_pairs(d, s);
	return crdt__stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_chat_member(crdt_doc *d, uint32_t on, const void *user,
    size_t user_len, bool joined, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (!user_ok(user, user_len))
		return CRDT_EINVAL;
	int rc;
	CRDT_TRY(chat_begin(d, on, CRDT__CHAT_OP_MEMBER, 2, msg_out, &one,
	    &mark, &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = crdt__w_bin(s, user, user_len);
	if (rc == 0)
		rc = crdt__w_uint(s, joined ? 1 : 0);
	return crdt__stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_chat_ack(crdt_doc *d, uint32_t on, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if (!crdt__chat_is_server(c, &d->self))
		return CRDT_EPERM;
	int rc;
	CRDT_TRY(chat_begin(d, on, CRDT__CHAT_OP_ACK, 1, msg_out, &one, &mark,
	    &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = crdt__w_vc_pairs(d, s);
	return crdt__stage_close(d, one, mark, rc, msg_out);
}

int
crdt_doc_chat_reject(crdt_doc *d, uint32_t on, crdt_dot msg,
    const void *reason, size_t reason_len, crdt_buf *msg_out)
{
	crdt_chat *c;
	bool one;
	size_t mark;

	CRDT_TRY(chat_check(d, on, &c));
	if ((reason == NULL && reason_len != 0) || msg.counter == 0)
		return CRDT_EINVAL;
	if (reason_len > d->cfg.limits.max_value_bytes)
		return CRDT_ETOOBIG;
	if (!crdt__chat_is_server(c, &d->self))
		return CRDT_EPERM;
	int rc;
	CRDT_TRY(chat_begin(d, on, CRDT__CHAT_OP_REJECT, 3, msg_out, &one,
	    &mark, &rc));
	crdt_buf *s = &d->stage;
	if (rc == 0)
		rc = w_dot_(s, msg);
	if (rc == 0)
		rc = crdt__w_bin(s, reason, reason_len);
	return crdt__stage_close(d, one, mark, rc, msg_out);
}
