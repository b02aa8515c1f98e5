/* The transport as the binding sees it: the one header csrc/binding
 * includes. The binding reads option tables into the plain option structs
 * (conn_opts, server_opts, dial_request, tls_config) and otherwise works
 * through functions only; it reads no field of loop, conn or server.
 *
 *   loop:    loop_size, loop_init, loop_close, loop_step, loop_ready,
 *            loop_take_ready, loop_timeout, loop_alive, loop_pollfd,
 *            loop_now, loop_new_id, loop_sleep, loop_alarm, loop_alarm_stop
 *   dial:    dial_open
 *   server:  server_start, server_accept, server_describe, server_set_tls,
 *            server_close, server_release
 *   conn:    conn_describe, conn_receive, conn_message_done,
 *            conn_send_message, conn_send_ping, conn_start_close,
 *            conn_abort, conn_respond_http, conn_accept_upgrade, conn_head,
 *            conn_drop_head, conn_release
 *   broker:  broker_open, broker_describe, broker_close, broker_publish
 *   TLS:     tls_ctx_new, tls_ctx_add_sni, tls_ctx_unref (server contexts)
 *
 * The saved head is handed over as bytes; the binding parses it with
 * hs_parse_request / hs_parse_response from the protocol layer. */
#ifndef DUPLEX_API_H
#define DUPLEX_API_H

#include "protocol/handshake.h"
#include "transport/broker.h"
#include "transport/conn.h"
#include "transport/dial.h"
#include "transport/loop.h"
#include "transport/server.h"
#include "transport/tls.h"

#endif
