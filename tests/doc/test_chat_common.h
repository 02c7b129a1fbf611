/*
 * What the chat test files share (test_chat.c, test_chat_rivals.c): peers
 * with a thread and the helpers that post, deliver and read. Each file is
 * its own executable, so the statics here are per file.
 */
#ifndef CRDT_TEST_CHAT_COMMON_H
#define CRDT_TEST_CHAT_COMMON_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "test_alloc.h"
#include "test_rng.h"
#include "test_util.h"

#define HOUR UINT64_C(3600000)
#define MIN2(a, b) ((a) < (b) ? (a) : (b))

typedef struct peer {
	crdt_doc *d;
	test_clock clk;
	crdt_config cfg;
} peer;

static inline void
peer_new(peer *p, uint8_t idn, uint64_t now, const crdt_replica_id *server)
{
	crdt_replica_id id = test_id(idn);
	p->clk.ms = now;
	test_config(&p->cfg, &p->clk);
	cr_assert_eq(crdt_doc_new(&p->cfg, &id, &p->d), 0);
	cr_assert_eq(crdt_doc_register_chat(p->d, "thread", server, NULL), 0);
}

static inline const crdt_chat *
thread(const peer *p)
{
	const crdt_chat *c;
	cr_assert_eq(crdt_doc_chat(p->d, 0, &c), 0);
	return c;
}

static inline crdt_dot
post(peer *p, const char *user, const char *body, const crdt_dot *reply,
    crdt_buf *out)
{
	crdt_chat_post m = { user, strlen(user), body, strlen(body), reply,
		NULL, 0 };
	crdt_dot id;
	crdt_buf_clear(out);
	cr_assert_eq(crdt_doc_chat_post(p->d, 0, &m, &id, out), 0);
	return id;
}

static inline void
deliver(peer *to, const crdt_buf *m)
{
	cr_assert_eq(crdt_doc_receive(to->d, m->data, m->len, NULL), 0);
}

static inline void
sync_pair(peer *a, peer *b)
{
	crdt_buf f[4];
	for (int i = 0; i < 4; i++)
		tb_init(&f[i]);
	cr_assert_eq(crdt_doc_sync_start(a->d, &f[0]), 0);
	cr_assert_eq(crdt_doc_sync_handle(b->d, f[0].data, f[0].len, NULL,
			 &f[1]), 0);
	cr_assert_eq(crdt_doc_sync_handle(a->d, f[1].data, f[1].len, NULL,
			 &f[2]), 0);
	if (f[2].len > 0)
		cr_assert_eq(crdt_doc_sync_handle(b->d, f[2].data, f[2].len,
				 NULL, &f[3]), 0);
	cr_assert_eq(f[3].len, 0, "a sync round ends after three frames");
	for (int i = 0; i < 4; i++)
		crdt_buf_fini(&f[i]);
}

static inline void
same_bytes(peer *a, peer *b)
{
	crdt_buf x, y;
	tb_init(&x);
	tb_init(&y);
	cr_assert_eq(crdt_doc_save(a->d, &x), 0);
	cr_assert_eq(crdt_doc_save(b->d, &y), 0);
	cr_assert(bytes_eq(x.data, x.len, y.data, y.len),
	    "snapshots differ (%zu vs %zu bytes)", x.len, y.len);
	crdt_buf_fini(&x);
	crdt_buf_fini(&y);
}

static inline void
body_at(const crdt_chat *c, size_t pos, const char *want)
{
	crdt_chat_msg m;
	cr_assert_eq(crdt_chat_at(c, pos, &m), 0);
	cr_assert(m.body_len == strlen(want) &&
		memcmp(m.body, want, m.body_len) == 0,
	    "position %zu holds '%.*s', want '%s'", pos, (int)m.body_len,
	    (const char *)m.body, want);
}

static inline crdt_chat_status
status(const peer *p, crdt_dot id)
{
	crdt_chat_status st;
	cr_assert_eq(crdt_chat_status_of(thread(p), id, &st), 0);
	return st;
}

static inline int
collect_outbox(void *ud, crdt_dot id)
{
	crdt_dot *out = ud;
	size_t i = 0;
	while (out[i].counter != 0)
		i++;
	out[i] = id;
	return 0;
}

#endif /* CRDT_TEST_CHAT_COMMON_H */
