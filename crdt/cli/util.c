/*
 * Shared helpers of the crdt command: errors, files, hex, keys, options.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void
cli_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "crdt: %s%s", cmd != NULL ? cmd : "",
	    cmd != NULL ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int
cli_exit_of(int rc)
{
	switch (rc) {
	case 0:
		return EXIT_OK;
	case CRDT_EIO:
	case CRDT_EFULL:
	case CRDT_EBUSY:
	case CRDT_ENOTFOUND:
		return EXIT_IO;
	case CRDT_EMALFORMED:
	case CRDT_ETOOBIG:
	case CRDT_EVERSION:
	case CRDT_ESCHEMA:
	case CRDT_EWRONGDOC:
		return EXIT_MALFORMED;
	default:
		/* Signatures, keys, corruption, divergence: a fault found in
		 * input that decoded. */
		return EXIT_FAULT;
	}
}

int
cli_read_file(const char *cmd, const char *path, crdt_buf *out)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	uint8_t chunk[65536];
	size_t n;
	int rc = 0;

	if (f == NULL) {
		cli_err(cmd, "%s: %s", path, strerror(errno));
		return EXIT_IO;
	}
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		/* Bounded: nothing the library would accept is larger. */
		if (out->len + n > CLI_MAX_FILE) {
			cli_err(cmd, "%s: larger than %u bytes", path,
			    CLI_MAX_FILE);
			rc = EXIT_MALFORMED;
			break;
		}
		if (crdt_buf_append(out, chunk, n) != 0) {
			cli_err(cmd, "%s: out of memory", path);
			rc = EXIT_IO;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		cli_err(cmd, "%s: read error", path);
		rc = EXIT_IO;
	}
	if (f != stdin)
		fclose(f);
	return rc;
}

int
cli_write_file(const char *cmd, const char *path, const void *p, size_t len)
{
	if (strcmp(path, "-") == 0) {
		if (fwrite(p, 1, len, stdout) != len || fflush(stdout) != 0) {
			cli_err(cmd, "stdout: write error");
			return EXIT_IO;
		}
		return 0;
	}
	/* Written beside the target and renamed over it, so a failed
	 * write never leaves a half file under the name asked for. */
	size_t pl = strlen(path);
	char *tmp = malloc(pl + 16);
	if (tmp == NULL) {
		cli_err(cmd, "out of memory");
		return EXIT_IO;
	}
	snprintf(tmp, pl + 16, "%s.tmp%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "wb");
	int ok = f != NULL;
	if (ok)
		ok = fwrite(p, 1, len, f) == len;
	if (f != NULL && fclose(f) != 0)
		ok = 0;
	if (ok && rename(tmp, path) != 0)
		ok = 0;
	if (!ok) {
		cli_err(cmd, "%s: %s", path, strerror(errno));
		remove(tmp);
	}
	free(tmp);
	return ok ? 0 : EXIT_IO;
}

void
cli_wipe(crdt_buf *b)
{
	if (b->data != NULL)
		memset(b->data, 0, b->cap);
}




int
cli_read_key(const char *cmd, const char *path, uint8_t key[32])
{
	crdt_buf b;
	int rc;

	crdt_buf_init(&b, NULL);
	if ((rc = cli_read_file(cmd, path, &b)) != 0) {
		crdt_buf_fini(&b);
		return rc;
	}
	rc = EXIT_USAGE;
	if (b.len == 32) {
		memcpy(key, b.data, 32);
		rc = 0;
	} else {
		size_t n = b.len;
		while (n > 0 && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r'))
			n--;
		char hex[65];
		if (n == 64) {
			memcpy(hex, b.data, 64);
			hex[64] = '\0';
			if (tool_unhex(hex, key, 32) == 0)
				rc = 0;
		}
	}
	if (rc != 0)
		cli_err(cmd, "%s: a key is 32 bytes or 64 hex digits", path);
	cli_wipe(&b);
	crdt_buf_fini(&b);
	return rc;
}

int
cli_parse(const char *cmd, int argc, char **argv, cli_opt *opts,
    size_t nopts, cli_args *a)
{
	bool dashdash = false;

	memset(a, 0, sizeof *a);
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		if (dashdash || s[0] != '-' || strcmp(s, "-") == 0) {
			if (a->npos == sizeof a->pos / sizeof a->pos[0]) {
				cli_err(cmd, "too many arguments");
				return EXIT_USAGE;
			}
			a->pos[a->npos++] = s;
			continue;
		}
		if (strcmp(s, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
			a->help = true;
			continue;
		}
		const char *name = s + (s[1] == '-' ? 2 : 1);
		const char *eq = strchr(name, '=');
		size_t nl = eq != NULL ? (size_t)(eq - name) : strlen(name);
		cli_opt *o = NULL;
		for (size_t k = 0; k < nopts; k++) {
			if (strlen(opts[k].name) == nl &&
			    strncmp(opts[k].name, name, nl) == 0)
				o = &opts[k];
		}
		/* One-letter aliases: -o is --output. */
		if (o == NULL && nl == 1 && name[0] == 'o') {
			for (size_t k = 0; k < nopts; k++)
				if (strcmp(opts[k].name, "output") == 0)
					o = &opts[k];
		}
		if (o == NULL) {
			cli_err(cmd, "unknown option %s (try --help)", s);
			return EXIT_USAGE;
		}
		if (!o->has_arg) {
			if (eq != NULL) {
				cli_err(cmd, "--%s takes no value", o->name);
				return EXIT_USAGE;
			}
			o->value = "1";
		} else if (eq != NULL) {
			o->value = eq + 1;
		} else if (i + 1 < argc) {
			o->value = argv[++i];
		} else {
			cli_err(cmd, "--%s needs a value", o->name);
			return EXIT_USAGE;
		}
	}
	return 0;
}

int
cli_uint_opt(const char *cmd, const char *name, const char *v, uint64_t lo,
    uint64_t hi, uint64_t *out)
{
	char *end;
	if (v == NULL || v[0] < '0' || v[0] > '9') {
		cli_err(cmd, "--%s: a number is needed", name);
		return EXIT_USAGE;
	}
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || x < lo || x > hi) {
		cli_err(cmd, "--%s: %s is not in %llu..%llu", name, v,
		    (unsigned long long)lo, (unsigned long long)hi);
		return EXIT_USAGE;
	}
	*out = x;
	return 0;
}
