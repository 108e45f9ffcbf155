/* SPDX-License-Identifier: MIT */
/*
 * upper-echo: a tiny service written against an installed veloq, using only
 * the umbrella header. Every byte comes back upper-cased; the received buffer
 * itself is changed in place and passed to the output queue, so ownership
 * moves from input to output and nothing is copied.
 */
#include <ctype.h>
#include <veloq.h>

static void upper_data(struct vq_conn *c)
{
	struct vq_buf *b;

	while ((b = vq_conn_read(c))) {
		uint8_t *p = vq_buf_bytes(b);

		for (uint32_t i = 0; i < b->len; i++)
			p[i] = (uint8_t)toupper(p[i]);
		vq_conn_write(c, b); /* takes b, even when it fails because c is closing */
	}
}

static const struct vq_service upper = {
	.name = "upper-echo",
	.version = "1.0",
	.on_data = upper_data,
};

int main(int argc, char **argv)
{
	return vq_main(argc, argv, &upper);
}
