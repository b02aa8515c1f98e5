/* The close handshake (RFC 6455 5.5.1, 7.1) as one state machine, without
 * I/O, in the style of wsproto's ConnectionState: a table maps each
 * (state, event) to the next state and the actions the transport must take.
 * Every cell is written out, so an event that makes no sense in a state is a
 * decision (ignored, or refused with CLOSE_ACT_REJECT), not an accident.
 *
 * The transport performs the actions of one step in the order of their bits
 * (lowest first): what the peer told us is recorded before we answer, the
 * answer is queued before the teardown flushes it, and the TCP connection is
 * dropped last. */
#ifndef DUPLEX_CLOSE_H
#define DUPLEX_CLOSE_H

#pragma GCC visibility push(hidden)

typedef enum close_state {
  CLOSE_OPEN,          /* no close has begun (also before the opening handshake is done) */
  CLOSE_PEER_PENDING,  /* the peer's close came while messages wait unread: the
                          handler reads them, and may reply, before we answer */
  CLOSE_FAIL_PENDING,  /* our failure (bad frame) waits for the unread messages likewise */
  CLOSE_LOCAL_CLOSING, /* our close frame is queued, the peer's has not come */
  CLOSE_DRAINING,      /* no more frames either way: flushing what is queued */
  CLOSE_FIN_WAIT,      /* our FIN is sent: waiting, bounded, for the peer's */
  CLOSE_CLOSED,        /* the TCP connection is dropped */
  CLOSE_NSTATES
} close_state;

typedef enum close_event {
  CLOSE_EV_LOCAL_CLOSE,       /* the application asks to close */
  CLOSE_EV_PEER_CLOSE,        /* the peer's close frame, no message unread */
  CLOSE_EV_PEER_CLOSE_UNREAD, /* the peer's close frame while messages wait unread */
  CLOSE_EV_ERROR,             /* fail the connection now (RFC 6455 7.1.7) */
  CLOSE_EV_ERROR_UNREAD,      /* a bad frame while messages wait unread */
  CLOSE_EV_INBOX_DRAINED,     /* the application asked for a message and none is left */
  CLOSE_EV_FLUSHED,           /* nothing of ours is queued or in flight any more */
  CLOSE_EV_PEER_EOF,          /* the peer's FIN (or a read error) */
  CLOSE_EV_TIMEOUT,           /* the close timer fired */
  CLOSE_EV_ABORT,             /* drop the connection now, without a close frame */
  CLOSE_EV_GONE,              /* the transport closes its handles (the loop shuts down) */
  CLOSE_EV_END,               /* end without a close frame: handshake refused, HTTP answered */
  CLOSE_NEVENTS
} close_event;

enum close_action {
  CLOSE_ACT_RECORD_PEER = 1 << 0,    /* report the peer's code and reason as ours */
  CLOSE_ACT_RECORD_FAIL = 1 << 1,    /* keep the failure's code and text for SEND_FAIL */
  CLOSE_ACT_ABNORMAL = 1 << 2,       /* report 1006 (no close frame went both ways) */
  CLOSE_ACT_STOP_READING = 1 << 3,   /* read nothing more until the handler catches up */
  CLOSE_ACT_SEND_LOCAL = 1 << 4,     /* queue a close frame with the application's code */
  CLOSE_ACT_SEND_ECHO = 1 << 5,      /* queue a close frame echoing the peer's code */
  CLOSE_ACT_SEND_FAIL = 1 << 6,      /* queue a close frame with the failure's code, report it */
  CLOSE_ACT_MARK_CLEAN = 1 << 7,     /* both close frames went across */
  CLOSE_ACT_WAKE = 1 << 8,           /* waiters must see the connection end */
  CLOSE_ACT_TEARDOWN = 1 << 9,       /* TLS close_notify, flush; FLUSHED follows */
  CLOSE_ACT_SHUTDOWN = 1 << 10,      /* send our FIN */
  CLOSE_ACT_START_READING = 1 << 11, /* the peer's close frame or FIN must get through */
  CLOSE_ACT_ARM_TIMER = 1 << 12,     /* bound the wait by close_timeout */
  CLOSE_ACT_DROP = 1 << 13,          /* close the TCP connection now */
  CLOSE_ACT_REJECT = 1 << 14         /* the event is refused: its caller reports failure */
};

typedef struct close_step {
  close_state next;
  unsigned actions; /* enum close_action bits */
} close_step;

/* The table's cell for (s, e); out of range: stay, CLOSE_ACT_REJECT. */
close_step close_lookup(close_state s, close_event e);

/* Moves *s by e and returns the actions to perform. */
unsigned close_apply(close_state *s, close_event e);

#pragma GCC visibility pop

#endif
