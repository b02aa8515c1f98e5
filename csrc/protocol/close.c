#include "protocol/close.h"

/* Ending after the close frames: flush, FIN, then read (bounded) until the
 * peer's FIN, so that a reset never cuts our close frame off. */
#define ENDING (CLOSE_ACT_WAKE | CLOSE_ACT_TEARDOWN | CLOSE_ACT_START_READING | CLOSE_ACT_ARM_TIMER)
#define ECHO (CLOSE_ACT_SEND_ECHO | CLOSE_ACT_MARK_CLEAN | ENDING)
#define FAIL (CLOSE_ACT_SEND_FAIL | ENDING)
/* the handler reads what is there, and may reply, before we answer */
#define WAIT_INBOX (CLOSE_ACT_STOP_READING | CLOSE_ACT_ARM_TIMER)
/* cut off before both close frames went across: 1006 */
#define CUT (CLOSE_ACT_ABNORMAL | CLOSE_ACT_WAKE | CLOSE_ACT_DROP)
#define GONE (CLOSE_ACT_WAKE | CLOSE_ACT_DROP)
/* the bound on the wait for the peer's FIN starts when ours goes out */
#define FIN (CLOSE_ACT_SHUTDOWN | CLOSE_ACT_START_READING | CLOSE_ACT_ARM_TIMER)

#define S(state, acts)                                                                             \
  { CLOSE_##state, (acts) }

/* Rows by state, columns by event, both in enum order: LOCAL_CLOSE,
 * PEER_CLOSE, PEER_CLOSE_UNREAD, ERROR, ERROR_UNREAD, INBOX_DRAINED,
 * FLUSHED, PEER_EOF, TIMEOUT, ABORT, GONE, END. */
static const close_step table[CLOSE_NSTATES][CLOSE_NEVENTS] = {
    [CLOSE_OPEN] =
        {
            S(LOCAL_CLOSING, CLOSE_ACT_SEND_LOCAL | CLOSE_ACT_START_READING | CLOSE_ACT_ARM_TIMER),
            S(DRAINING, CLOSE_ACT_RECORD_PEER | ECHO),
            S(PEER_PENDING, CLOSE_ACT_RECORD_PEER | WAIT_INBOX),
            S(DRAINING, CLOSE_ACT_RECORD_FAIL | FAIL),
            S(FAIL_PENDING, CLOSE_ACT_RECORD_FAIL | WAIT_INBOX),
            S(OPEN, 0), /* nothing to resolve */
            S(OPEN, 0), /* the queue drains all the time */
            S(CLOSED, CUT),
            S(OPEN, 0), /* the timer belongs to the handshake or to keepalive */
            S(CLOSED, CUT),
            S(CLOSED, GONE),
            S(DRAINING, ENDING),
        },
    /* until the handler has read what came before the peer's close, more of
     * the same (a second close, an error, which a stopped reader cannot see)
     * changes nothing */
    [CLOSE_PEER_PENDING] =
        {
            S(DRAINING, ECHO),
            S(PEER_PENDING, 0),
            S(PEER_PENDING, 0),
            S(PEER_PENDING, 0),
            S(PEER_PENDING, 0),
            S(DRAINING, ECHO),
            S(PEER_PENDING, 0),
            S(CLOSED, CUT),
            S(DRAINING, ECHO),
            S(CLOSED, GONE), /* the peer's code stands */
            S(CLOSED, GONE),
            S(PEER_PENDING, CLOSE_ACT_REJECT),
        },
    [CLOSE_FAIL_PENDING] =
        {
            S(DRAINING, FAIL),
            S(FAIL_PENDING, 0),
            S(FAIL_PENDING, 0),
            S(FAIL_PENDING, 0),
            S(FAIL_PENDING, 0),
            S(DRAINING, FAIL),
            S(FAIL_PENDING, 0),
            S(CLOSED, CUT),
            S(DRAINING, FAIL),
            S(CLOSED, CUT),
            S(CLOSED, GONE),
            S(FAIL_PENDING, CLOSE_ACT_REJECT),
        },
    [CLOSE_LOCAL_CLOSING] =
        {
            S(LOCAL_CLOSING, CLOSE_ACT_REJECT), /* once is enough */
            S(DRAINING, CLOSE_ACT_RECORD_PEER | CLOSE_ACT_MARK_CLEAN | ENDING),
            S(DRAINING, CLOSE_ACT_RECORD_PEER | CLOSE_ACT_MARK_CLEAN | ENDING),
            S(CLOSED, CUT), /* garbage after our close frame: no second close frame */
            S(CLOSED, CUT),
            S(LOCAL_CLOSING, 0),
            S(LOCAL_CLOSING, 0),
            S(CLOSED, CUT),
            S(CLOSED, CUT), /* the peer never answered */
            S(CLOSED, CUT),
            S(CLOSED, GONE),
            S(LOCAL_CLOSING, CLOSE_ACT_REJECT),
        },
    /* the close frames are done with: only the end of TCP matters now */
    [CLOSE_DRAINING] =
        {
            S(DRAINING, CLOSE_ACT_REJECT),
            S(DRAINING, 0),
            S(DRAINING, 0),
            S(DRAINING, 0),
            S(DRAINING, 0),
            S(DRAINING, 0),
            S(FIN_WAIT, FIN),
            S(CLOSED, CLOSE_ACT_DROP),
            S(CLOSED, CLOSE_ACT_DROP),
            S(CLOSED, CLOSE_ACT_DROP),
            S(CLOSED, CLOSE_ACT_DROP),
            S(DRAINING, 0),
        },
    [CLOSE_FIN_WAIT] =
        {
            S(FIN_WAIT, CLOSE_ACT_REJECT),
            S(FIN_WAIT, 0),
            S(FIN_WAIT, 0),
            S(FIN_WAIT, 0),
            S(FIN_WAIT, 0),
            S(FIN_WAIT, 0),
            S(FIN_WAIT, 0),
            S(CLOSED, CLOSE_ACT_DROP),
            S(CLOSED, CLOSE_ACT_DROP),
            S(CLOSED, CLOSE_ACT_DROP),
            S(CLOSED, CLOSE_ACT_DROP),
            S(FIN_WAIT, 0),
        },
    [CLOSE_CLOSED] =
        {
            S(CLOSED, CLOSE_ACT_REJECT),
            S(CLOSED, 0),
            S(CLOSED, 0),
            S(CLOSED, 0),
            S(CLOSED, 0),
            S(CLOSED, 0),
            S(CLOSED, 0),
            S(CLOSED, 0),
            S(CLOSED, 0),
            S(CLOSED, 0),
            S(CLOSED, 0),
            S(CLOSED, 0),
        },
};

close_step close_lookup(close_state s, close_event e) {
  if ((unsigned)s >= CLOSE_NSTATES || (unsigned)e >= CLOSE_NEVENTS)
    return (close_step){s, CLOSE_ACT_REJECT};
  return table[s][e];
}

unsigned close_apply(close_state *s, close_event e) {
  close_step st = close_lookup(*s, e);
  *s = st.next;
  return st.actions;
}
