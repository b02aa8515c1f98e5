/* Sans-I/O WebSocket receiver: bytes in, events out (in the style of
 * wsproto). Accepts input split at any byte. Unmasks in place, validates text
 * incrementally (fail fast), reassembles fragmented messages up to a size
 * limit and enforces every receive-side rule of RFC 6455 section 5.
 *
 * An unfragmented message whose whole frame lies in one input chunk is handed
 * to the sink straight from that chunk (zero copy); anything else is copied
 * once into a message buffer that exists only while a message is in flight.
 *
 * With an inflater (permessage-deflate), a compressed (RSV1) message is
 * inflated frame by frame as its payload arrives, into that buffer: only the
 * inflated message is held, bounded by max_message as it grows, and its text
 * is validated as it comes out, so compressed text fails fast too. */
#ifndef DUPLEX_PROTO_H
#define DUPLEX_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/frame.h"
#include "protocol/utf8.h"

struct pmd;

/* core.so exports luaopen_duplex_core only: a host that links a library
 * with names like tls_read must not capture our calls */
#pragma GCC visibility push(hidden)

typedef struct proto_sink {
  /* A complete data message; opcode is FRAME_TEXT (already valid UTF-8) or
   * FRAME_BINARY. data is only valid during the call. */
  void (*message)(void *ud, int opcode, const uint8_t *data, size_t len);
  void (*ping)(void *ud, const uint8_t *data, size_t len);
  void (*pong)(void *ud, const uint8_t *data, size_t len);
  /* A valid close frame. code is FRAME_CLOSE_NO_STATUS (1005) when the frame
   * had no payload; reason is valid UTF-8. After this, input is ignored. */
  void (*close)(void *ud, unsigned code, const uint8_t *reason, size_t len);
} proto_sink;

typedef struct proto {
  /* configuration */
  uint64_t max_message;     /* largest data message (after any inflate) */
  unsigned is_server : 1;   /* peer frames must be masked (else must not be) */
  unsigned rsv_allowed : 3; /* RSV bits an extension negotiated (0 = none); they
                               may only be set on a message's first frame */
  struct pmd *inflater;     /* inflates RSV1 messages (owned by the caller); NULL:
                               they are delivered as they came, text unchecked */

  /* frame being parsed */
  uint8_t hdr[FRAME_MAX_HEADER];
  uint8_t hdr_len; /* header bytes gathered so far */
  uint8_t opcode;  /* of the current frame */
  uint8_t fin;
  uint8_t rsv;
  uint8_t mask[4];
  uint8_t masked;
  uint64_t remaining; /* payload bytes of the current frame still to come */
  uint64_t frame_pos; /* payload bytes of the current frame seen */

  /* data message being assembled (fragments, or one frame split over chunks) */
  uint8_t msg_opcode; /* FRAME_TEXT / FRAME_BINARY, 0 when none in flight */
  uint8_t *msg;       /* malloc'd while in flight, NULL otherwise; the data
                         starts msg_reserve bytes in */
  size_t msg_reserve; /* room the owner wants in front (see proto_take_message) */
  uint8_t from_msg;   /* the message being delivered lies in msg */
  uint8_t msg_rsv;    /* RSV bits of the message's first frame (RSV1:
                         compressed; msg then holds the inflated bytes) */
  size_t msg_len, msg_cap;
  uint64_t msg_wire; /* payload bytes of the message's frames so far, as sent:
                        bounded by max_message like the message itself */
  utf8_state utf8;   /* for a text message in flight */

  /* control frame payload (always <= 125 bytes) */
  uint8_t ctl[FRAME_MAX_CONTROL];
  uint8_t ctl_len;

  /* terminal state */
  uint8_t closed;      /* a close frame was received: ignore the rest */
  unsigned error_code; /* close code we must fail with (1002, 1007, 1009, 1011), 0 if none */
  const char *error;   /* static text naming the violation */
} proto;

void proto_init(proto *p, int is_server, uint64_t max_message);

/* Inside sink->message only: hands over the malloc'd block that holds the
 * message (its data at msg_reserve bytes in) so the owner can keep it without
 * a copy, or NULL when the message came straight from the input. */
void *proto_take_message(proto *p);

/* Frees the message buffer (if any). The struct can be re-initialised after. */
void proto_free(proto *p);

/* Consumes all n bytes of data (which it may modify: unmasking is in place),
 * calling the sink for each event in order. Returns 0, or the close code the
 * connection must be failed with: 1002 protocol error (a close reason that
 * is not UTF-8 among them), 1007 invalid UTF-8 (at the first bad byte of a
 * text message, compressed or not) or invalid deflate data, 1009 message
 * larger than max_message (known from the header that announces it, or as
 * soon as the inflated message would pass it), 1011 out of memory. Events for everything before the
 * violation are delivered first. After an error or a close frame, input is ignored and the call
 * returns the same value (error_code, or 0 after close). */
unsigned proto_feed(proto *p, uint8_t *data, size_t n, const proto_sink *sink, void *ud);

#pragma GCC visibility pop

#endif
