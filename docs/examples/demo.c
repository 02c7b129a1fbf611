/*
 * Demo: a group chat of four people and a server replica over a simulated
 * network that drops, duplicates and reorders messages, takes devices
 * offline and splits the network. Afterwards the network heals and every
 * replica shows the same thread, in the same order, byte for byte.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <crdt/crdt.h>

#define PEOPLE 4
static const char *names[PEOPLE + 1] = { "server", "alice", "bob", "carol",
	"dave" };
static const char *lines[] = { "anyone up for lunch?", "sure", "where?",
	"the usual place", "I'm offline on the train, see you there",
	"running late", "order for me please", "done", "on my way",
	"great", "thanks!", "what about tomorrow?" };

static int
setup(void *ud, crdt_doc *d, size_t i)
{
	crdt_replica_id *server = ud;
	if (i == 0)
		*server = *crdt_doc_self(d);
	return crdt_doc_register_chat(d, "lunch", server, NULL);
}

static int
edit(crdt_sim *sim, crdt_buf *msg, crdt_dot *last, int step)
{
	size_t who = 1 + crdt_sim_rand(sim) % PEOPLE;
	crdt_doc *d = crdt_sim_doc(sim, who);
	const char *user = names[who];
	crdt_buf_clear(msg);
	if (step % 17 == 0)
		return crdt_doc_chat_ack(crdt_sim_doc(sim, 0), 0, msg);
	switch (crdt_sim_rand(sim) % 6) {
	case 0:
		return crdt_doc_chat_mark_read(d, 0, user, strlen(user), msg);
	case 1:
		if (last->counter == 0)
			return 0;
		return crdt_doc_chat_react(d, 0, *last, user, strlen(user),
		    "+1", 2, true, msg);
	default: {
		const char *body = lines[crdt_sim_rand(sim) % 12];
		crdt_chat_post p = { user, strlen(user), body, strlen(body),
			crdt_sim_rand(sim) % 4 == 0 && last->counter ? last :
								       NULL,
			NULL, 0 };
		return crdt_doc_chat_post(d, 0, &p, last, msg);
	}
	}
}

static const char *
status_name(crdt_chat_status s)
{
	static const char *n[] = { "pending", "delivered", "read", "rejected" };
	return n[s];
}

/* The newest `newest` messages of replica r's thread, as that replica
 * sees them now. */
static void
print_thread(crdt_sim *sim, size_t r, size_t newest)
{
	const crdt_chat *c;
	crdt_dot page[6];
	size_t n;
	if (newest > 6)
		newest = 6;
	if (crdt_doc_chat(crdt_sim_doc(sim, r), 0, &c) != 0 ||
	    crdt_chat_page(c, NULL, false, newest, page, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		crdt_chat_msg m;
		crdt_chat_status st;
		size_t pos, reactions;
		if (crdt_chat_get(c, page[i], &m) != 0 ||
		    crdt_chat_status_of(c, page[i], &st) != 0 ||
		    crdt_chat_position(c, page[i], &pos) != 0)
			continue;
		reactions = crdt_chat_reaction_count(c, page[i]);
		printf("    #%-3zu %-6.*s %-40.*s %s%s, %zu reaction%s\n", pos,
		    (int)m.user_len, (const char *)m.user, (int)m.body_len,
		    (const char *)m.body, m.has_reply_to ? "(reply) " : "",
		    status_name(st), reactions, reactions == 1 ? "" : "s");
	}
}

static size_t
message_count(crdt_sim *sim, size_t r)
{
	const crdt_chat *c;
	return crdt_doc_chat(crdt_sim_doc(sim, r), 0, &c) == 0 ?
	    crdt_chat_count(c) : 0;
}

int
main(void)
{
	crdt_sim_config sc;
	crdt_sim *sim;
	crdt_replica_id server;
	crdt_buf msg;
	crdt_dot last = { { { 0 } }, 0 };
	int rc;

	crdt_sim_config_default(&sc);
	sc.replicas = PEOPLE + 1;
	sc.seed = 2026;
	sc.drop_pct = 25;
	sc.offline_pct = 10;
	sc.max_skew_ms = 300;
	if ((rc = crdt_sim_new(NULL, &sc, setup, &server, &sim)) != 0) {
		fprintf(stderr, "sim: %s\n", crdt_strerror(rc));
		return 1;
	}
	crdt_buf_init(&msg, NULL);
	for (int step = 1; step <= 400 && rc == 0; step++) {
		rc = edit(sim, &msg, &last, step);
		if (rc == 0)
			rc = crdt_sim_step(sim);
	}
	crdt_sim_stats st;
	crdt_sim_stats_get(sim, &st);
	printf("libcrdt %s demo: group chat, %d people + server, 400 steps, "
	       "seed %" PRIu64 "\n",
	    crdt_version_string(), PEOPLE, sc.seed);
	printf("network: %" PRIu64 " delivered, %" PRIu64 " dropped, %" PRIu64
	       " duplicated, %" PRIu64 " snapshot exchanges, %" PRIu64
	       " lossy sync rounds\n",
	    st.delivered, st.dropped, st.duplicated, st.snapshots, st.syncs);
	/* Each replica's view now, before the network heals: devices that
	 * were offline or cut off lag behind, pending posts wait for the
	 * server's ack. */
	printf("before healing: %s\n",
	    crdt_sim_check(sim) == 0 ? "converged" : "replicas differ");
	for (size_t r = 0; rc == 0 && r <= PEOPLE; r++) {
		printf("  %s's replica: %zu messages, newest 3:\n", names[r],
		    message_count(sim, r));
		print_thread(sim, r, 3);
	}
	/* Heal: every replica syncs with every other; the server acks what
	 * it has, and the acks travel in a second round. */
	if (rc == 0)
		rc = crdt_doc_chat_ack(crdt_sim_doc(sim, 0), 0, &msg);
	if (rc == 0)
		rc = crdt_sim_heal(sim);
	if (rc == 0)
		rc = crdt_doc_chat_ack(crdt_sim_doc(sim, 0), 0, &msg);
	if (rc == 0)
		rc = crdt_sim_heal(sim);
	if (rc == 0)
		rc = crdt_sim_check(sim);
	if (rc != 0) {
		printf("after healing: %s\n", crdt_strerror(rc));
	} else {
		printf("after healing: all %d replicas byte-identical "
		       "(same thread, same order), %zu messages each\n",
		    PEOPLE + 1, message_count(sim, 0));
		printf("  the thread, newest 6 (every replica shows these):\n");
		print_thread(sim, 0, 6);
	}
	crdt_buf_fini(&msg);
	crdt_sim_free(sim);
	return rc == 0 ? 0 : 1;
}
