/* SPDX-License-Identifier: MIT */
/*
 * veloq-echo: every byte a client sends comes back to it. The received
 * buffers themselves are queued for sending: ownership passes from the
 * input queue to the output queue and no byte is copied.
 */
#include "conn.h"
#include "service.h"

static void echo_data(struct vq_conn *c)
{
	struct vq_buf *b;

	while ((b = vq_conn_read(c)))
		vq_conn_write(c, b);
}

static const struct vq_service echo = {
	.name = "echo",
	.on_data = echo_data,
};

int main(int argc, char **argv)
{
	return vq_main(argc, argv, &echo);
}
