/* SPDX-License-Identifier: MIT */
/*
 * veloq: a thread-per-core server framework on io_uring. Include this one
 * header to write a service; see README.md for a walk-through.
 */
#ifndef VELOQ_H
#define VELOQ_H

#include "veloq/vq_version.h"
#include "veloq/buf.h"
#include "veloq/pool.h"
#include "veloq/op.h"
#include "veloq/driver.h"
#include "veloq/config.h"
#include "veloq/log.h"
#include "veloq/timer.h"
#include "veloq/service.h"
#include "veloq/shard.h"
#include "veloq/conn.h"
#include "veloq/ops.h"
#include "veloq/stream.h"

#endif
