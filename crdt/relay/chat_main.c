/*
 * crdt-chat: a terminal chat client for crdt-relay (docs/relay.md,
 * "crdt-chat"). Commands come from stdin, one per line, and run in
 * order; `sync` (and the end of input, and `quit`) waits until the relay
 * answered everything and, with a chat server, acknowledged every
 * message of ours. The replica's state lives in its SQLite store, its
 * identity seed beside it (FILE.db.key), so a restart goes on with the
 * same replica and counter.
 */

#include "chat.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
chat_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "crdt-chat: %s\n", line);
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: crdt-chat --connect HOST:PORT --doc HEX --user NAME "
	    "--data FILE.db [options]\n"
	    "A chat client for crdt-relay (docs/relay.md). Commands on stdin:\n"
	    "  post TEXT          post a message\n"
	    "  react MSGID EMOJI  react (MSGID: REPLICAHEX:COUNTER or #POS)\n"
	    "  unreact MSGID EMOJI\n"
	    "  read               mark everything read and print the thread\n"
	    "  show               print the thread (changes nothing)\n"
	    "  offline | online   drop / restore the connection\n"
	    "  sync               wait until the relay holds (and, with a\n"
	    "                     server, acknowledged) everything of ours\n"
	    "  quit               sync if online, then exit (also at end of input)\n"
	    "\n"
	    "  --doc HEX          the 32-byte document ID\n"
	    "  --server-id HEX    the chat server's 16-byte replica ID (as the relay's)\n"
	    "  --signed           sign messages (the relay runs --signed)\n"
	    "  --key HEX          32-byte document key: encrypted mode\n"
	    "  --offline          start offline\n"
	    "  --dump FILE        write the canonical snapshot at exit\n"
	    "  --timeout MS       bound on every wait [30000]\n"
	    "  --max-frame BYTES  as the relay's --max-frame [1048576]\n");
}

/* ---- identity and document ---- */

static int
load_seed(const char *data, uint8_t seed[CRDT_SEED_BYTES])
{
	char path[4096], hex[2 * CRDT_SEED_BYTES + 2];
	if ((size_t)snprintf(path, sizeof path, "%s.key", data) >= sizeof path)
		return -1;
	FILE *f = fopen(path, "r");
	if (f != NULL) {
		size_t n = fread(hex, 1, sizeof hex - 1, f);
		fclose(f);
		hex[n] = '\0';
		if (n > 0 && hex[n - 1] == '\n')
			hex[n - 1] = '\0';
		if (tool_unhex(hex, seed, CRDT_SEED_BYTES) != 0) {
			chat_log("%s: not a 64-digit hex seed", path);
			return -1;
		}
		return 0;
	}
	if (crdt_doc_key_generate(seed) != 0)
		return -1;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		chat_log("cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	tool_hex(seed, CRDT_SEED_BYTES, hex);
	size_t len = strlen(hex);
	hex[len++] = '\n';
	bool ok = write(fd, hex, len) == (ssize_t)len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok)
		chat_log("cannot write %s", path);
	return ok ? 0 : -1;
}

static void
on_change(void *ud, const crdt_change *ch);

static int
open_doc(chat *c)
{
	uint8_t seed[CRDT_SEED_BYTES];
	crdt_replica_id self;
	int rc;
	if (load_seed(c->data, seed) != 0)
		return CRDT_EIO;
	crdt_config_default(&c->cfg);
	c->cfg.doc_id = c->doc_id;
	c->cfg.limits.max_bytes = c->max_frame - NET_ENV_BYTES;
	c->cfg.sync_max_bytes = c->cfg.limits.max_bytes;
	rc = crdt_identity_from_seed(&c->cfg, seed, &c->ident);
	memset(seed, 0, sizeof seed);
	if (rc != 0)
		return rc;
	crdt_identity_replica_id(c->ident, &self);
	if ((rc = crdt_doc_new(&c->cfg, &self, &c->doc)) != 0)
		return rc;
	if (c->signed_mode || c->has_key) {
		crdt_doc_security sec;
		memset(&sec, 0, sizeof sec);
		sec.signed_mode = c->signed_mode;
		sec.identity = c->signed_mode ? c->ident : NULL;
		sec.encrypted = c->has_key;
		sec.key = c->has_key ? c->key : NULL;
		sec.epoch = 1;
		if ((rc = crdt_doc_set_security(c->doc, &sec)) != 0)
			return rc;
	}
	rc = crdt_doc_register_chat(c->doc, "chat",
	    c->has_server ? &c->server_id : NULL, &c->thread);
	if (rc == 0)
		rc = crdt_store_open_sqlite(&c->cfg, c->data, NULL, &c->store);
	if (rc == 0)
		rc = crdt_doc_open_store(c->doc, c->store,
		    CRDT_DOC_STORE_GROUP);
	if (rc == 0 && c->interactive) {
		crdt_doc_listener l;
		memset(&l, 0, sizeof l);
		l.on_change = on_change;
		l.ud = c;
		crdt_doc_set_listener(c->doc, &l);
	}
	return rc;
}

/* ---- printing ---- */

static void
print_id(FILE *f, crdt_dot id)
{
	char hex[2 * CRDT_REPLICA_ID_BYTES + 1];
	tool_hex(id.replica.bytes, sizeof id.replica.bytes, hex);
	fprintf(f, "%s:%llu", hex, (unsigned long long)id.counter);
}

/* Peer bytes go to a terminal: control characters are shown as '?'. */
static void
print_text(FILE *f, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fputc(p[i] < 0x20 || p[i] == 0x7f ? '?' : p[i], f);
}

static int
print_reaction(void *ud, const uint8_t *user, size_t ulen,
    const uint8_t *emoji, size_t elen)
{
	FILE *f = ud;
	fputc(' ', f);
	print_text(f, emoji, elen);
	fputc('/', f);
	print_text(f, user, ulen);
	return 0;
}

static const char *
status_name(crdt_chat_status s)
{
	switch (s) {
	case CRDT_CHAT_DELIVERED: return "delivered";
	case CRDT_CHAT_READ: return "read";
	case CRDT_CHAT_REJECTED: return "rejected";
	default: return "pending";
	}
}

static void
print_msg(const crdt_chat *t, size_t pos, const crdt_chat_msg *m)
{
	crdt_chat_status st = CRDT_CHAT_PENDING;
	if (crdt_chat_status_of(t, m->id, &st) != 0)
		st = CRDT_CHAT_PENDING;
	printf("%zu ", pos);
	print_id(stdout, m->id);
	printf(" %s ", status_name(st));
	print_text(stdout, m->user, m->user_len);
	fputs(": ", stdout);
	print_text(stdout, m->body, m->body_len);
	if (crdt_chat_reaction_count(t, m->id) > 0) {
		fputs(" |", stdout);
		if (crdt_chat_reactions(t, m->id, print_reaction,
		    stdout) != 0)
			fputs(" ?", stdout);
	}
	fputc('\n', stdout);
}

static void
print_thread(chat *c)
{
	const crdt_chat *t;
	if (crdt_doc_chat(c->doc, c->thread, &t) != 0)
		return;
	size_t n = crdt_chat_count(t);
	printf("thread %zu\n", n);
	for (size_t i = 0; i < n; i++) {
		crdt_chat_msg m;
		if (crdt_chat_at(t, i, &m) == 0)
			print_msg(t, i, &m);
	}
	printf("end\n");
	fflush(stdout);
}

static void
on_change(void *ud, const crdt_change *ch)
{
	chat *c = ud;
	const crdt_chat *t;
	crdt_chat_msg m;
	if (ch->kind != CRDT_CHANGE_CHAT_INSERT ||
	    crdt_doc_chat(c->doc, c->thread, &t) != 0 ||
	    crdt_chat_get(t, ch->msg, &m) != 0)
		return;
	print_msg(t, ch->position, &m);
	fflush(stdout);
}

/* ---- commands ---- */

static int
outbox_one(void *ud, crdt_dot id)
{
	(void)id;
	(*(size_t *)ud)++;
	return 0;
}

static size_t
outbox_size(chat *c)
{
	const crdt_chat *t;
	size_t n = 0;
	if (crdt_doc_chat(c->doc, c->thread, &t) == 0)
		if (crdt_chat_outbox(t, crdt_doc_self(c->doc), outbox_one,
		    &n) != 0)
			n = SIZE_MAX; /* unknown: not empty */
	return n;
}

static void
on_step(uv_timer_t *t);

void
chat_progress(chat *c)
{
	if (!c->done)
		(void)uv_timer_start(&c->step, on_step, 0, 0);
}

static void
on_deadline(uv_timer_t *t)
{
	chat *c = t->data;
	if (!c->waiting)
		return;
	chat_log("sync timed out after %zu ms (%s, %zu messages not "
	    "acknowledged)", c->timeout_ms,
	    chat_net_quiet(c) ? "relay quiet" : "relay not answering",
	    outbox_size(c));
	c->exit_code = 3;
	c->waiting = false;
	chat_progress(c);
}

static void
wait_sync(chat *c)
{
	if (!c->online) {
		chat_log("offline: nothing to sync");
		return;
	}
	c->waiting = true;
	(void)uv_timer_start(&c->deadline, on_deadline, c->timeout_ms, 0);
}

static void
report(const char *what, int rc)
{
	chat_log("%s failed: %s (%s)", what, crdt_strerror(rc),
	    crdt_err_name(rc));
}

/* "REPLICAHEX:COUNTER" or "#POS" (a position in the thread). */
static int
parse_msgid(chat *c, const char *s, crdt_dot *out)
{
	const crdt_chat *t;
	if (crdt_doc_chat(c->doc, c->thread, &t) != 0)
		return -1;
	if (s[0] == '#') {
		size_t pos;
		crdt_chat_msg m;
		if (net_parse_size(s + 1, 0, SIZE_MAX, &pos) != 0 ||
		    crdt_chat_at(t, pos, &m) != 0)
			return -1;
		*out = m.id;
		return 0;
	}
	char hex[2 * CRDT_REPLICA_ID_BYTES + 1];
	const char *colon = strchr(s, ':');
	size_t ctr;
	if (colon == NULL || colon - s != 2 * CRDT_REPLICA_ID_BYTES)
		return -1;
	memcpy(hex, s, sizeof hex - 1);
	hex[sizeof hex - 1] = '\0';
	if (tool_unhex(hex, out->replica.bytes, CRDT_REPLICA_ID_BYTES) != 0 ||
	    net_parse_size(colon + 1, 1, SIZE_MAX, &ctr) != 0)
		return -1;
	out->counter = ctr;
	return 0;
}

static void
cmd_react(chat *c, char *args, bool on)
{
	char *sp = strchr(args, ' ');
	crdt_dot id;
	if (sp == NULL || sp[1] == '\0') {
		chat_log("usage: react MSGID EMOJI");
		c->exit_code = 2;
		return;
	}
	*sp = '\0';
	if (parse_msgid(c, args, &id) != 0) {
		chat_log("react: no message %s", args);
		c->exit_code = 2;
		return;
	}
	crdt_buf msg;
	crdt_buf_init(&msg, NULL);
	int rc = crdt_doc_chat_react(c->doc, c->thread, id, c->user,
	    strlen(c->user), sp + 1, strlen(sp + 1), on, &msg);
	crdt_buf_fini(&msg);
	if (rc != 0) {
		report("react", rc);
		c->exit_code = 2;
		return;
	}
	chat_net_kick(c);
}

static void
cmd_post(chat *c, const char *text)
{
	crdt_chat_post p;
	crdt_dot id;
	crdt_buf msg;
	memset(&p, 0, sizeof p);
	p.user = c->user;
	p.user_len = strlen(c->user);
	p.body = text;
	p.body_len = strlen(text);
	crdt_buf_init(&msg, NULL);
	/* Stored (group commit, flushed) before it is shown: the sync
	 * round that follows, now or after a reconnect, carries it. */
	int rc = crdt_doc_chat_post(c->doc, c->thread, &p, &id, &msg);
	crdt_buf_fini(&msg);
	if (rc == 0)
		rc = crdt_doc_store_flush(c->doc);
	if (rc != 0) {
		report("post", rc);
		c->exit_code = 2;
		return;
	}
	fputs("posted ", stdout);
	print_id(stdout, id);
	fputc('\n', stdout);
	fflush(stdout);
	chat_net_kick(c);
}

static void
exec_line(chat *c, char *line)
{
	char *args = strchr(line, ' ');
	if (args != NULL)
		*args++ = '\0';
	else
		args = line + strlen(line);
	if (line[0] == '\0' || line[0] == '#')
		return;
	if (strcmp(line, "post") == 0 && *args != '\0') {
		cmd_post(c, args);
	} else if (strcmp(line, "react") == 0) {
		cmd_react(c, args, true);
	} else if (strcmp(line, "unreact") == 0) {
		cmd_react(c, args, false);
	} else if (strcmp(line, "read") == 0) {
		crdt_buf msg;
		crdt_buf_init(&msg, NULL);
		int rc = crdt_doc_chat_mark_read(c->doc, c->thread, c->user,
		    strlen(c->user), &msg);
		crdt_buf_fini(&msg);
		if (rc != 0)
			report("read", rc);
		else
			chat_net_kick(c);
		print_thread(c);
	} else if (strcmp(line, "show") == 0) {
		print_thread(c);
	} else if (strcmp(line, "offline") == 0) {
		chat_net_offline(c);
	} else if (strcmp(line, "online") == 0) {
		chat_net_online(c);
	} else if (strcmp(line, "sync") == 0) {
		wait_sync(c);
	} else if (strcmp(line, "quit") == 0) {
		c->exit_after = true;
		wait_sync(c);
	} else {
		chat_log("unknown command: %s", line);
		c->exit_code = 2;
	}
}

static void
on_input_close(uv_handle_t *h)
{
	(void)h;
}

static void
finish(chat *c)
{
	c->done = true;
	int rc = crdt_doc_checkpoint(c->doc);
	if (rc != 0 && rc != CRDT_ESTATE) {
		report("checkpoint", rc);
		c->exit_code = 1;
	}
	if (c->dump != NULL) {
		crdt_buf snap;
		crdt_buf_init(&snap, NULL);
		rc = crdt_doc_save(c->doc, &snap);
		FILE *f = rc == 0 ? fopen(c->dump, "wb") : NULL;
		bool ok = f != NULL &&
		    fwrite(snap.data, 1, snap.len, f) == snap.len;
		if (f != NULL)
			ok = fclose(f) == 0 && ok;
		if (!ok) {
			chat_log("cannot write the dump %s", c->dump);
			c->exit_code = 1;
		}
		crdt_buf_fini(&snap);
	}
	chat_net_close(c);
	uv_close((uv_handle_t *)&c->retry, on_input_close);
	uv_close((uv_handle_t *)&c->deadline, on_input_close);
	uv_close((uv_handle_t *)&c->step, on_input_close);
	if (c->in != NULL && !uv_is_closing((uv_handle_t *)c->in))
		uv_close((uv_handle_t *)c->in, on_input_close);
}

/* Run queued commands until one waits or the queue is empty. */
static void
on_step(uv_timer_t *t)
{
	chat *c = t->data;
	while (!c->done) {
		if (c->waiting) {
			if (!chat_net_quiet(c) || outbox_size(c) != 0)
				return;
			c->waiting = false;
			(void)uv_timer_stop(&c->deadline);
			if (!c->exit_after) {
				printf("synced\n");
				fflush(stdout);
			}
		}
		if (c->exit_after) {
			finish(c);
			return;
		}
		if (c->head < c->nlines) {
			char *line = c->lines[c->head];
			c->lines[c->head++] = NULL;
			exec_line(c, line);
			free(line);
		} else if (c->eof) {
			c->exit_after = true;
			wait_sync(c);
		} else {
			return;
		}
	}
}

static int
queue_line(chat *c, const char *s, size_t n)
{
	if (c->nlines == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		char **l = realloc(c->lines, cap * sizeof *l);
		if (l == NULL)
			return -1;
		c->lines = l;
		c->cap = cap;
	}
	char *line = malloc(n + 1);
	if (line == NULL)
		return -1;
	memcpy(line, s, n);
	line[n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[n - 1] = '\0';
	c->lines[c->nlines++] = line;
	return 0;
}

/* Lines are cut at '\n'; one longer than the buffer is refused whole. */
static void
take_input(chat *c, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			if (c->line_too_long) {
				chat_log("input line too long, ignored");
				c->exit_code = 2;
			} else if (queue_line(c, c->line, c->linelen) != 0) {
				chat_log("out of memory");
				c->exit_code = 1;
			}
			c->linelen = 0;
			c->line_too_long = false;
		} else if (c->linelen < sizeof c->line) {
			c->line[c->linelen++] = p[i];
		} else {
			c->line_too_long = true;
		}
	}
}

static void
input_eof(chat *c)
{
	if (c->linelen > 0)
		take_input(c, "\n", 1);
	c->eof = true;
}

static void
on_in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char buf[4096];
	(void)h;
	(void)suggested;
	*b = uv_buf_init(buf, sizeof buf);
}

static void
on_in_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	chat *c = s->data;
	if (nread < 0) {
		input_eof(c);
		uv_close((uv_handle_t *)s, on_input_close);
	} else {
		take_input(c, b->base, (size_t)nread);
	}
	chat_progress(c);
}

static int
open_input(chat *c)
{
	uv_handle_type t = uv_guess_handle(0);
	if (t == UV_TTY || t == UV_NAMED_PIPE) {
		int rc;
		if (t == UV_TTY) {
			c->interactive = true;
			rc = uv_tty_init(&c->loop, &c->inh.tty, 0, 1);
		} else {
			rc = uv_pipe_init(&c->loop, &c->inh.pipe, 0);
			if (rc == 0)
				rc = uv_pipe_open(&c->inh.pipe, 0);
		}
		if (rc != 0)
			return rc;
		c->in = (uv_stream_t *)&c->inh;
		c->in->data = c;
		return uv_read_start(c->in, on_in_alloc, on_in_read);
	}
	/* A file or /dev/null: libuv streams do not take those, and a file
	 * holds the whole script already. */
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
		take_input(c, buf, n);
	input_eof(c);
	return 0;
}

/* ---- options ---- */

enum {
	OPT_CONNECT = 256, OPT_DOC, OPT_USER, OPT_DATA, OPT_DUMP, OPT_SERVER,
	OPT_SIGNED, OPT_KEY, OPT_OFFLINE, OPT_TIMEOUT, OPT_FRAME, OPT_HELP
};

static int
parse_opts(chat *c, int argc, char **argv, bool *offline)
{
	static const struct option longs[] = {
		{ "connect", required_argument, NULL, OPT_CONNECT },
		{ "doc", required_argument, NULL, OPT_DOC },
		{ "user", required_argument, NULL, OPT_USER },
		{ "data", required_argument, NULL, OPT_DATA },
		{ "dump", required_argument, NULL, OPT_DUMP },
		{ "server-id", required_argument, NULL, OPT_SERVER },
		{ "signed", no_argument, NULL, OPT_SIGNED },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "offline", no_argument, NULL, OPT_OFFLINE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "max-frame", required_argument, NULL, OPT_FRAME },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 }
	};
	bool have_addr = false, have_doc = false;
	int ch, bad = 0;
	c->timeout_ms = 30000;
	c->max_frame = NET_DEFAULT_MAX_FRAME;
	while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		const char *a = optarg;
		switch (ch) {
		case OPT_CONNECT:
			bad = net_parse_addr(a, &c->addr);
			have_addr = true;
			break;
		case OPT_DOC:
			bad = tool_unhex(a, c->doc_id.bytes, CRDT_DOC_ID_BYTES);
			have_doc = true;
			break;
		case OPT_USER:
			c->user = a;
			bad = strlen(a) < 1 || strlen(a) > 255 ? -1 : 0;
			break;
		case OPT_DATA: c->data = a; break;
		case OPT_DUMP: c->dump = a; break;
		case OPT_SERVER:
			c->has_server = true;
			bad = tool_unhex(a, c->server_id.bytes,
			    CRDT_REPLICA_ID_BYTES);
			break;
		case OPT_SIGNED: c->signed_mode = true; break;
		case OPT_KEY:
			c->has_key = true;
			bad = tool_unhex(a, c->key, sizeof c->key);
			break;
		case OPT_OFFLINE: *offline = true; break;
		case OPT_TIMEOUT:
			bad = net_parse_size(a, 1, 3600000, &c->timeout_ms);
			break;
		case OPT_FRAME:
			bad = net_parse_size(a, 1024, 64u << 20,
			    &c->max_frame);
			break;
		case OPT_HELP: usage(stdout); exit(0);
		default: bad = -1; break;
		}
		if (bad) {
			if (ch != '?')
				chat_log("bad value for --%s",
				    longs[ch - OPT_CONNECT].name);
			return -1;
		}
	}
	if (optind < argc || !have_addr || !have_doc || c->user == NULL ||
	    c->data == NULL) {
		chat_log("--connect, --doc, --user and --data are required");
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static chat c;
	bool offline = false;
	if (parse_opts(&c, argc, argv, &offline) != 0) {
		usage(stderr);
		return 2;
	}
	if (uv_loop_init(&c.loop) != 0)
		return 1;
	(void)uv_timer_init(&c.loop, &c.retry);
	(void)uv_timer_init(&c.loop, &c.deadline);
	(void)uv_timer_init(&c.loop, &c.step);
	c.retry.data = c.deadline.data = c.step.data = &c;
	int rc = open_input(&c);
	if (rc != 0) {
		chat_log("cannot read stdin: %s", uv_strerror(rc));
		c.exit_code = 1;
		finish(&c);
	} else if ((rc = open_doc(&c)) != 0) {
		report("opening the document", rc);
		c.done = true;
		c.exit_code = 1;
		chat_net_close(&c);
		uv_close((uv_handle_t *)&c.retry, on_input_close);
		uv_close((uv_handle_t *)&c.deadline, on_input_close);
		uv_close((uv_handle_t *)&c.step, on_input_close);
		if (c.in != NULL && !uv_is_closing((uv_handle_t *)c.in))
			uv_close((uv_handle_t *)c.in, on_input_close);
	} else {
		if (c.interactive)
			print_thread(&c);
		if (!offline)
			chat_net_online(&c);
		chat_progress(&c);
	}
	uv_run(&c.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&c.loop);
	if (rc != 0) {
		chat_log("loop close: %s", uv_strerror(rc));
		c.exit_code = 1;
	}
	if (c.interactive)
		uv_tty_reset_mode();
	for (size_t i = c.head; i < c.nlines; i++)
		free(c.lines[i]);
	free(c.lines);
	crdt_doc_free(c.doc);
	crdt_store_close(c.store);
	crdt_identity_free(c.ident);
	return c.exit_code;
}
