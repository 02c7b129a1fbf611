/*
 * Hex for the tools (crdt, crdt-relay, crdt-chat): IDs and keys on
 * command lines, in file names and in logs. Not part of the library.
 */
#ifndef CRDT_TOOLS_HEX_H
#define CRDT_TOOLS_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Lower-case hex of p[0..n) into out (2n + 1 bytes, NUL-terminated). */
void tool_hex(const uint8_t *p, size_t n, char *out);
/* Exactly 2n hex digits (either case) into out[0..n): 0, or -1 for any
 * other length or a non-hex character (out may be partly written). */
int tool_unhex(const char *s, uint8_t *out, size_t n);

#endif
