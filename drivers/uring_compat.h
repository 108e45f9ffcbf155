/* SPDX-License-Identifier: MIT */
#ifndef VQ_URING_COMPAT_H
#define VQ_URING_COMPAT_H
/*
 * Kernel interfaces newer than Debian bookworm's liburing 2.3 headers. Each is
 * only a constant or a raw SQE/registration field: the kernel ABI is stable,
 * the library just does not know the names yet. Use is decided at run time by
 * a probe (uring.c), never by these #ifndefs alone.
 */
#include <liburing.h>

/* 6.10: one recv/send CQE may cover several consecutive provided buffers. */
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4) /* sqe->ioprio */
#endif

/* 6.12: provided buffers consumed incrementally; io_uring_buf_reg.flags. */
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif
/* 6.12: the CQE used part of the buffer; the rest stays in the ring for the next. */
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

/*
 * 6.17: a multishot recv ends (a CQE without F_MORE) once it has received this
 * many bytes in all. The field is sqe->optlen, which 2.3 calls file_index.
 */
static inline void vq_sqe_set_recv_cap(struct io_uring_sqe *sqe, uint32_t bytes)
{
	sqe->file_index = bytes;
}

/* 6.0: the zero-copy send notification CQE (in 2.3 already; kept for older headers). */
#ifndef IORING_CQE_F_NOTIF
#define IORING_CQE_F_NOTIF (1U << 3)
#endif

#endif
