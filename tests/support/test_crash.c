#define _POSIX_C_SOURCE 200809L
#include "test_crash.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

void
test_ack_drain(int fd, uint32_t *own, uint32_t *peer, size_t max)
{
	for (size_t k = 0; k < max; k++) {
		test_ack a;
		if (read(fd, &a, sizeof a) != (ssize_t)sizeof a)
			return;
		cr_assert(a.who == 1 || a.who == 2);
		uint32_t *t = a.who == 1 ? own : peer;
		if (a.counter > *t)
			*t = a.counter;
	}
}

bool
test_crash_once(void (*child)(void *ud, uint64_t seed, int wfd), void *ud,
    uint64_t seed, size_t before, long delay_us, uint32_t *own,
    uint32_t *peer, size_t max_acks)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		child(ud, seed, p[1]);
		_exit(0);
	}
	close(p[1]);
	test_ack_drain(p[0], own, peer, before);
	struct timespec ts = { delay_us / 1000000L,
		(delay_us % 1000000L) * 1000L };
	nanosleep(&ts, NULL);
	kill(pid, SIGKILL);
	int status = 0;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	test_ack_drain(p[0], own, peer, max_acks);
	close(p[0]);
	cr_assert(WIFSIGNALED(status) ||
		(WIFEXITED(status) && WEXITSTATUS(status) == 0),
	    "child failed: status %d (seed %llu)", status,
	    (unsigned long long)seed);
	return WIFSIGNALED(status);
}

typedef struct own_scan {
	crdt_replica_id id;
	uint64_t *c;
	size_t n, cap;
} own_scan;

static int
own_one(void *ud, crdt_dot dot, const uint8_t *bytes, size_t len)
{
	(void)bytes;
	(void)len;
	own_scan *sc = ud;
	if (crdt_replica_id_cmp(&dot.replica, &sc->id) != 0)
		return 0;
	if (sc->n == sc->cap) {
		sc->cap = sc->cap ? 2 * sc->cap : 256;
		sc->c = realloc(sc->c, sc->cap * sizeof *sc->c);
		cr_assert_not_null(sc->c);
	}
	sc->c[sc->n++] = dot.counter;
	return 0;
}

static int
u64_cmp(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return (a > b) - (a < b);
}

uint64_t
test_own_dots(crdt_store *s, const crdt_replica_id *id)
{
	own_scan sc = { *id, NULL, 0, 0 };
	crdt_vclock *none;
	cr_assert_eq(crdt_vclock_new(NULL, &none), 0);
	uint64_t cursor = 0;
	bool more = false;
	cr_assert_eq(crdt_store_since(s, none, &cursor, SIZE_MAX, own_one,
			 &sc, &more), 0);
	cr_assert(!more);
	crdt_vclock_free(none);
	if (sc.n > 1)
		qsort(sc.c, sc.n, sizeof *sc.c, u64_cmp);
	for (size_t i = 0; i < sc.n; i++) {
		cr_assert_neq(i > 0 ? sc.c[i - 1] : 0, sc.c[i],
		    "a dot was reused: counter %llu stored twice",
		    (unsigned long long)sc.c[i]);
		cr_assert_eq(sc.c[i], i + 1, "a gap in our own counters");
	}
	uint64_t n = sc.n;
	free(sc.c);
	return n;
}

void
test_heal(crdt_doc *a, crdt_doc *b)
{
	crdt_buf f, r;
	tb_init(&f);
	tb_init(&r);
	for (int round = 0; round < 2; round++) {
		crdt_buf_clear(&f);
		cr_assert_eq(crdt_doc_sync_start(round ? b : a, &f), 0);
		crdt_doc *to = round ? a : b, *from = round ? b : a;
		for (size_t k = 0; f.len > 0; k++) {
			cr_assert_lt(k, 1024, "a sync round never ends");
			crdt_buf_clear(&r);
			int rc = crdt_doc_sync_handle(to, f.data, f.len, NULL,
			    &r);
			cr_assert_eq(rc, 0, "sync: %s", crdt_err_name(rc));
			crdt_buf t = f;
			f = r;
			r = t;
			crdt_doc *x = from;
			from = to;
			to = x;
		}
	}
	crdt_buf_fini(&f);
	crdt_buf_fini(&r);
}
