/* The receiver is a loop over the input: gather a header (in place when it
 * lies whole in the chunk, else gathered into hdr[]), check it, then
 * consume payload. A frame is in its payload while remaining > 0; a frame with
 * an empty payload is finished as soon as its header is parsed. */
#include <stdlib.h>
#include <string.h>

#include "protocol/proto.h"

#include "protocol/pmd.h"

static const uint8_t empty[1];

void proto_init(proto *p, int is_server, uint64_t max_message) {
  memset(p, 0, sizeof *p);
  p->is_server = is_server != 0;
  p->max_message = max_message;
}

static void drop_message(proto *p) {
  free(p->msg);
  p->msg = NULL;
  p->msg_len = p->msg_cap = 0;
  p->msg_wire = 0;
  p->msg_opcode = 0;
}

void proto_free(proto *p) { drop_message(p); }

static unsigned fail(proto *p, unsigned code, const char *why) {
  drop_message(p);
  p->error_code = code;
  p->error = why;
  return code;
}

/* Size of a header whose second byte is b1. */
static size_t header_size(uint8_t b1) {
  size_t n = 2 + ((b1 & 0x80) ? 4 : 0);
  if ((b1 & 0x7F) == 126) return n + 2;
  if ((b1 & 0x7F) == 127) return n + 8;
  return n;
}

/* Rules decided by the first two header bytes. */
static unsigned check_start(proto *p, uint8_t b0, uint8_t b1) {
  /* the usual frame, a whole text or binary message with no RSV bit and the
   * right mask bit outside a fragmented message, breaks none of the rules */
  if ((b0 == 0x81 || b0 == 0x82) && !p->msg_opcode && (b1 >> 7) == p->is_server) return 0;
  int op = b0 & 0xF, fin = b0 >> 7;
  if ((b0 >> 4 & 7) & ~p->rsv_allowed) return fail(p, FRAME_CLOSE_PROTOCOL, "reserved bits set");
  if ((b0 >> 4 & 7) && (frame_is_control(op) || op == FRAME_CONT))
    return fail(p, FRAME_CLOSE_PROTOCOL, "extension bit on a control or continuation frame");
  if ((op > FRAME_BINARY && op < FRAME_CLOSE) || op > FRAME_PONG)
    return fail(p, FRAME_CLOSE_PROTOCOL, "reserved opcode");
  if (!(b1 & 0x80) != !p->is_server)
    return fail(p, FRAME_CLOSE_PROTOCOL,
                p->is_server ? "unmasked client frame" : "masked server frame");
  if (frame_is_control(op)) {
    if (!fin) return fail(p, FRAME_CLOSE_PROTOCOL, "fragmented control frame");
  } else if (op == FRAME_CONT) {
    if (!p->msg_opcode) return fail(p, FRAME_CLOSE_PROTOCOL, "continuation without a message");
  } else if (p->msg_opcode) {
    return fail(p, FRAME_CLOSE_PROTOCOL, "new message inside a fragmented message");
  }
  return 0;
}

/* h holds a whole header whose first two bytes passed check_start. */
static unsigned parse_header(proto *p, const uint8_t *h) {
  uint64_t len = h[1] & 0x7F;
  size_t off = 2;
  if (len == 126) {
    len = (uint64_t)h[2] << 8 | h[3];
    off = 4;
  } else if (len == 127) {
    len = 0;
    for (int i = 2; i < 10; i++) len = len << 8 | h[i];
    if (len >> 63) return fail(p, FRAME_CLOSE_PROTOCOL, "frame length with the high bit set");
    off = 10;
  }
  p->fin = h[0] >> 7;
  p->rsv = h[0] >> 4 & 7;
  p->opcode = h[0] & 0xF;
  p->masked = h[1] >> 7;
  if (p->masked) memcpy(p->mask, h + off, 4);
  if (frame_is_control(p->opcode)) {
    if (len > FRAME_MAX_CONTROL) return fail(p, FRAME_CLOSE_PROTOCOL, "control frame too long");
    if (p->opcode == FRAME_CLOSE && len == 1)
      return fail(p, FRAME_CLOSE_PROTOCOL, "close frame with 1-byte payload");
    p->ctl_len = 0;
  } else {
    if (p->opcode != FRAME_CONT) {
      p->msg_opcode = p->opcode;
      p->msg_rsv = p->rsv;
      p->utf8 = UTF8_ACCEPT;
    }
    /* msg_wire never exceeds max_message, so the subtraction cannot wrap */
    if (len > p->max_message - p->msg_wire || len > (size_t)-1 - p->msg_wire)
      return fail(p, FRAME_CLOSE_TOO_BIG, "message too big");
    p->msg_wire += len;
  }
  p->remaining = len;
  p->frame_pos = 0;
  return 0;
}

/* Consumes header bytes from d[0..n) and returns how many it took. The
 * header is complete when it returns with hdr_len == 0 and no error. */
static size_t gather_header(proto *p, const uint8_t *d, size_t n) {
  size_t used = 0, need;
  if (p->hdr_len == 0 && n >= 2 && n >= (need = header_size(d[1]))) {
    if (!check_start(p, d[0], d[1])) parse_header(p, d);
    return need;
  }
  if (p->hdr_len < 2) {
    p->hdr[p->hdr_len++] = d[used++];
    if (p->hdr_len < 2) {
      if (used == n) return used;
      p->hdr[p->hdr_len++] = d[used++];
    }
    if (check_start(p, p->hdr[0], p->hdr[1])) return used;
  }
  need = header_size(p->hdr[1]) - p->hdr_len;
  if (need > n - used) need = n - used;
  memcpy(p->hdr + p->hdr_len, d + used, need);
  p->hdr_len = (uint8_t)(p->hdr_len + need);
  used += need;
  if (p->hdr_len == header_size(p->hdr[1])) {
    p->hdr_len = 0;
    parse_header(p, p->hdr);
  }
  return used;
}

static int append(proto *p, const uint8_t *d, size_t n) {
  size_t need = p->msg_len + n; /* fits: checked against SIZE_MAX in parse_header */
  if (need > p->msg_cap) {
    /* Double, but never past what this message can still hold: a peer that
     * announces a huge frame and trickles it gets no more than twice what it
     * sent. */
    uint64_t limit = p->fin ? need + p->remaining : p->max_message;
    uint64_t cap = need <= limit / 2 ? (uint64_t)need * 2 : limit;
    if (cap < 256) cap = limit < 256 ? limit : 256;
#if SIZE_MAX < UINT64_MAX
    if (cap > SIZE_MAX) cap = SIZE_MAX;
#endif
    uint8_t *m = realloc(p->msg, p->msg_reserve + (size_t)cap);
    if (!m) return -1;
    p->msg = m;
    p->msg_cap = (size_t)cap;
  }
  memcpy(p->msg + p->msg_reserve + p->msg_len, d, n);
  p->msg_len = need;
  return 0;
}

/* The message in flight is compressed and we inflate it. */
static int inflating(const proto *p) { return p->inflater && (p->msg_rsv & FRAME_RSV1); }

/* Its bytes are text to validate: compressed text only once inflated. */
static int checks_text(const proto *p) {
  return p->msg_opcode == FRAME_TEXT && (!(p->msg_rsv & FRAME_RSV1) || p->inflater);
}

/* Room for inflated bytes in msg: what its block has left, else a bigger
 * block (a guess from the compressed input at first, then doubling), never
 * past one byte more than max_message, the byte that shows a bomb going past
 * it. 0 when out of memory. */
static size_t inflate_room(proto *p, size_t k) {
  uint64_t limit = p->max_message - p->msg_len; /* msg_len <= max_message */
  if (limit < UINT64_MAX) limit++;
  if (p->msg_cap == p->msg_len) {
    uint64_t cap = p->msg_cap ? (uint64_t)p->msg_cap * 2 : k < 256 ? 1024 : (uint64_t)k * 4 + 64;
    if (cap - p->msg_len > limit) cap = p->msg_len + limit;
    if (cap > SIZE_MAX - p->msg_reserve) cap = SIZE_MAX - p->msg_reserve;
    uint8_t *m = realloc(p->msg, p->msg_reserve + (size_t)cap);
    if (!m) return 0;
    p->msg = m;
    p->msg_cap = (size_t)cap;
  }
  size_t room = p->msg_cap - p->msg_len;
  return room < limit ? room : (size_t)limit;
}

/* Inflates a piece of a compressed message's payload into msg (last: the
 * message ends with it), validating text as it comes out. */
static unsigned inflate_piece(proto *p, const uint8_t *c, size_t k, int last) {
  for (;;) {
    size_t room = inflate_room(p, k), made;
    if (!room) return fail(p, FRAME_CLOSE_INTERNAL, "out of memory");
    uint8_t *out = p->msg + p->msg_reserve + p->msg_len;
    unsigned r = pmd_inflate_part(p->inflater, &c, &k, last, out, room, &made);
    if (p->msg_opcode == FRAME_TEXT && (p->utf8 = utf8_feed(p->utf8, out, made)) == UTF8_REJECT)
      return fail(p, FRAME_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
    p->msg_len += made;
    if (p->msg_len > p->max_message) return fail(p, FRAME_CLOSE_TOO_BIG, "message too big");
    if (r == 0) return 0;
    if (r != PMD_MORE)
      return fail(p, r, r == FRAME_CLOSE_INVALID_DATA ? "invalid deflate data" : "out of memory");
  }
}

/* The tail of a compressed message, and its block trimmed to fit: the owner
 * may keep it as it lies, and a small message must not pin a large block. */
static unsigned finish_inflate(proto *p) {
  if (inflate_piece(p, empty, 0, 1)) return p->error_code;
  if (p->msg_cap - p->msg_len > 4096 && p->msg_reserve + p->msg_len > 0) {
    uint8_t *m = realloc(p->msg, p->msg_reserve + p->msg_len);
    if (m) p->msg = m, p->msg_cap = p->msg_len;
  }
  return 0;
}

static void deliver(proto *p, const uint8_t *d, size_t n, const proto_sink *s, void *ud) {
  int op = p->msg_opcode;
  p->msg_opcode = 0;
  if (s->message) s->message(ud, op, d ? d : empty, n);
  drop_message(p);
}

/* The end of a data frame whose payload went through msg. */
static unsigned end_data_frame(proto *p, const proto_sink *s, void *ud) {
  if (!p->fin) return 0;
  if (inflating(p) && finish_inflate(p)) return p->error_code;
  if (checks_text(p) && p->utf8 != UTF8_ACCEPT)
    return fail(p, FRAME_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
  p->from_msg = p->msg != NULL;
  deliver(p, p->msg ? p->msg + p->msg_reserve : NULL, p->msg_len, s, ud);
  p->from_msg = 0;
  return p->error_code;
}

void *proto_take_message(proto *p) {
  if (!p->from_msg) return NULL;
  void *m = p->msg;
  p->msg = NULL;
  p->msg_len = p->msg_cap = 0;
  p->from_msg = 0;
  return m;
}

static unsigned control(proto *p, const uint8_t *d, size_t n, const proto_sink *s, void *ud) {
  if (d == NULL) d = empty;
  if (p->opcode == FRAME_PING) {
    if (s->ping) s->ping(ud, d, n);
  } else if (p->opcode == FRAME_PONG) {
    if (s->pong) s->pong(ud, d, n);
  } else {
    unsigned code = FRAME_CLOSE_NO_STATUS;
    if (n >= 2) {
      code = (unsigned)d[0] << 8 | d[1];
      if (!frame_close_code_ok(code)) return fail(p, FRAME_CLOSE_PROTOCOL, "invalid close code");
      if (!utf8_valid(d + 2, n - 2))
        return fail(p, FRAME_CLOSE_PROTOCOL, "invalid UTF-8 in close reason");
    }
    drop_message(p);
    p->closed = 1;
    if (s->close) s->close(ud, code, n >= 2 ? d + 2 : empty, n >= 2 ? n - 2 : 0);
  }
  return 0;
}

unsigned proto_feed(proto *p, uint8_t *data, size_t n, const proto_sink *s, void *ud) {
  size_t i = 0;
  if (p->error_code || p->closed) return p->error_code;
  while (i < n) {
    if (p->remaining == 0) {
      i += gather_header(p, data + i, n - i);
      if (p->error_code) return p->error_code;
      if (p->hdr_len || p->remaining) continue;
      /* an empty payload: the frame ends with its header */
      if (frame_is_control(p->opcode)) {
        if (control(p, NULL, 0, s, ud)) return p->error_code;
        if (p->closed) return 0;
      } else if (end_data_frame(p, s, ud)) {
        return p->error_code;
      }
      continue;
    }
    uint8_t *c = data + i;
    size_t k = n - i < p->remaining ? n - i : (size_t)p->remaining;
    int whole = p->frame_pos == 0 && k == p->remaining; /* all of the payload is in c */
    if (p->masked) frame_mask(c, k, p->mask, p->frame_pos);
    i += k;
    p->remaining -= k;
    p->frame_pos += k;
    if (frame_is_control(p->opcode)) {
      if (!whole) {
        memcpy(p->ctl + p->ctl_len, c, k);
        p->ctl_len = (uint8_t)(p->ctl_len + k);
        if (p->remaining) continue;
        c = p->ctl, k = p->ctl_len;
      }
      if (control(p, c, k, s, ud)) return p->error_code;
      if (p->closed) return 0;
    } else if (inflating(p)) {
      if (inflate_piece(p, c, k, 0)) return p->error_code;
      if (p->remaining == 0 && end_data_frame(p, s, ud)) return p->error_code;
    } else if (whole && p->fin && p->opcode != FRAME_CONT) {
      /* zero copy: an unfragmented message straight from the input */
      if (p->opcode == FRAME_TEXT && !(p->rsv & FRAME_RSV1) && !utf8_valid(c, k))
        return fail(p, FRAME_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
      deliver(p, c, k, s, ud);
      if (p->error_code) return p->error_code;
    } else {
      if (p->msg_opcode == FRAME_TEXT && !(p->msg_rsv & FRAME_RSV1) &&
          (p->utf8 = utf8_feed(p->utf8, c, k)) == UTF8_REJECT)
        return fail(p, FRAME_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
      if (append(p, c, k)) return fail(p, FRAME_CLOSE_INTERNAL, "out of memory");
      if (p->remaining == 0 && end_data_frame(p, s, ud)) return p->error_code;
    }
  }
  return 0;
}
