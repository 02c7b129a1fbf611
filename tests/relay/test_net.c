/*
 * The relay's stream framing and parsers (crdt/relay/net.c): lengths at
 * and past each bound, frames fed one byte at a time, the reader's
 * memory bound, and every parser's refusals.
 */

#include <criterion/criterion.h>
#include <string.h>

#include "net.h"

static size_t
put_frame(uint8_t *out, uint32_t n)
{
	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	for (uint32_t i = 0; i < n; i++)
		out[4 + i] = (uint8_t)(i * 7 + 1);
	return 4 + (size_t)n;
}

Test(net, a_frame_of_exactly_the_limit_is_cut_and_one_byte_more_is_refused_at_once)
{
	static uint8_t buf[4 + 2048];
	net_rbuf b;
	const uint8_t *f;
	size_t n;
	uint32_t claimed;
	net_rbuf_init(&b, 2048);
	size_t len = put_frame(buf, 2048);
	cr_assert_eq(net_rbuf_take(&b, buf, len), 0);
	cr_assert_eq(net_rbuf_cut(&b, &f, &n, &claimed), NET_CUT_FRAME);
	cr_assert_eq(n, 2048);
	cr_assert_eq(memcmp(f, buf + 4, n), 0);
	net_rbuf_drop(&b);
	cr_assert_eq(b.len, 0);
	/* 2049: refused from the four length bytes alone */
	buf[2] = 0x08;
	buf[3] = 0x01;
	cr_assert_eq(net_rbuf_take(&b, buf, 4), 0);
	cr_assert_eq(net_rbuf_cut(&b, &f, &n, &claimed), NET_CUT_TOOBIG);
	cr_assert_eq(claimed, 2049);
	net_rbuf_fini(&b);
}

Test(net, lengths_under_an_envelope_are_refused_and_an_empty_payload_is_a_frame)
{
	uint8_t buf[64];
	net_rbuf b;
	const uint8_t *f;
	size_t n;
	uint32_t claimed;
	for (uint32_t len = 0; len < NET_ENV_BYTES; len++) {
		net_rbuf_init(&b, 1024);
		cr_assert_eq(net_rbuf_take(&b, buf, put_frame(buf, len)), 0);
		cr_assert_eq(net_rbuf_cut(&b, &f, &n, &claimed), NET_CUT_SHORT,
		    "length %u", len);
		net_rbuf_fini(&b);
	}
	net_rbuf_init(&b, 1024);
	cr_assert_eq(net_rbuf_take(&b, buf, put_frame(buf, NET_ENV_BYTES)), 0);
	cr_assert_eq(net_rbuf_cut(&b, &f, &n, &claimed), NET_CUT_FRAME);
	cr_assert_eq(n, NET_ENV_BYTES);
	net_rbuf_fini(&b);
}

Test(net, frames_fed_one_byte_at_a_time_are_cut_exactly_once_each)
{
	static uint8_t buf[3 * (4 + 300)];
	size_t len = 0;
	len += put_frame(buf + len, 33);
	len += put_frame(buf + len, 300);
	len += put_frame(buf + len, 100);
	net_rbuf b;
	net_rbuf_init(&b, 300);
	size_t cut = 0, sizes[3];
	for (size_t i = 0; i < len; i++) {
		cr_assert_eq(net_rbuf_take(&b, buf + i, 1), 0);
		const uint8_t *f;
		size_t n;
		uint32_t claimed;
		net_cut c;
		while ((c = net_rbuf_cut(&b, &f, &n, &claimed)) ==
		    NET_CUT_FRAME) {
			cr_assert_lt(cut, 3);
			sizes[cut++] = n;
			net_rbuf_drop(&b);
		}
		cr_assert_eq(c, NET_CUT_NONE);
	}
	cr_assert_eq(cut, 3);
	cr_assert_eq(sizes[0], 33);
	cr_assert_eq(sizes[1], 300);
	cr_assert_eq(sizes[2], 100);
	cr_assert_eq(b.len, 0);
	net_rbuf_fini(&b);
}

Test(net, the_reader_never_holds_more_than_one_frame_and_its_prefix)
{
	static uint8_t big[5000];
	net_rbuf b;
	net_rbuf_init(&b, 1000);
	cr_assert_eq(net_rbuf_take(&b, big, 1004), 0);
	cr_assert_eq(net_rbuf_take(&b, big, 1), -1);
	cr_assert_eq(b.len, 1004, "a refused take changes nothing");
	net_rbuf_fini(&b);
	net_rbuf_init(&b, 1000);
	cr_assert_eq(net_rbuf_take(&b, big, sizeof big), -1);
	cr_assert_eq(b.len, 0);
	net_rbuf_fini(&b);
}

Test(net, a_write_holds_the_envelope_in_network_order)
{
	crdt_doc_id id;
	for (int i = 0; i < CRDT_DOC_ID_BYTES; i++)
		id.bytes[i] = (uint8_t)(0xa0 + i);
	net_write *w = net_write_new(NET_TYPE_PING, &id, "12345678", 8);
	cr_assert_not_null(w);
	cr_assert_eq(w->len, 4 + 33 + 8);
	cr_assert_eq(w->data[0], 0);
	cr_assert_eq(w->data[3], 41);
	cr_assert_eq(w->data[4], NET_TYPE_PING);
	cr_assert_eq(memcmp(w->data + 5, id.bytes, 32), 0);
	cr_assert_eq(memcmp(w->data + 37, "12345678", 8), 0);
	free(w);
}

Test(net, parsers_refuse_what_is_not_exactly_their_form)
{
	uint8_t out[2];
	size_t v;
	struct sockaddr_in a;
	cr_assert_eq(tool_unhex("0aFf", out, 2), 0);
	cr_assert_eq(out[0], 0x0a);
	cr_assert_eq(out[1], 0xff);
	cr_assert_eq(tool_unhex("0aF", out, 2), -1);
	cr_assert_eq(tool_unhex("0aFff", out, 2), -1);
	cr_assert_eq(tool_unhex("0g00", out, 2), -1);
	cr_assert_eq(net_parse_size("42", 0, 100, &v), 0);
	cr_assert_eq(v, 42);
	cr_assert_eq(net_parse_size("101", 0, 100, &v), -1);
	cr_assert_eq(net_parse_size("-1", 0, 100, &v), -1);
	cr_assert_eq(net_parse_size("", 0, 100, &v), -1);
	cr_assert_eq(net_parse_size("4x", 0, 100, &v), -1);
	cr_assert_eq(net_parse_size(" 4", 0, 100, &v), -1);
	cr_assert_eq(net_parse_size("99999999999999999999999", 0, SIZE_MAX,
	    &v), -1);
	cr_assert_eq(net_parse_addr("127.0.0.1:7000", &a), 0);
	cr_assert_eq(ntohs(a.sin_port), 7000);
	cr_assert_eq(net_parse_addr("127.0.0.1:0", &a), -1);
	cr_assert_eq(net_parse_addr("127.0.0.1:65536", &a), -1);
	cr_assert_eq(net_parse_addr("127.0.0.1", &a), -1);
	cr_assert_eq(net_parse_addr(":7000", &a), -1);
	cr_assert_eq(net_parse_addr("localhost:7000", &a), -1);
}
