/* The close state machine: every (state, event) cell against a list written
 * out by hand here (not derived from close.c), a few properties every cell
 * must have, and whole close handshakes as event sequences. */
#include "protocol/close.h"
#include "test/check.h"

enum {
  RP = CLOSE_ACT_RECORD_PEER,
  RF = CLOSE_ACT_RECORD_FAIL,
  AB = CLOSE_ACT_ABNORMAL,
  SR = CLOSE_ACT_STOP_READING,
  SL = CLOSE_ACT_SEND_LOCAL,
  SE = CLOSE_ACT_SEND_ECHO,
  SF = CLOSE_ACT_SEND_FAIL,
  MC = CLOSE_ACT_MARK_CLEAN,
  WK = CLOSE_ACT_WAKE,
  TD = CLOSE_ACT_TEARDOWN,
  SH = CLOSE_ACT_SHUTDOWN,
  RD = CLOSE_ACT_START_READING,
  TM = CLOSE_ACT_ARM_TIMER,
  DR = CLOSE_ACT_DROP,
  RJ = CLOSE_ACT_REJECT
};

/* short names, so that each line below reads as one cell */
#define OPEN CLOSE_OPEN
#define PP CLOSE_PEER_PENDING
#define FP CLOSE_FAIL_PENDING
#define LC CLOSE_LOCAL_CLOSING
#define DN CLOSE_DRAINING
#define FW CLOSE_FIN_WAIT
#define CL CLOSE_CLOSED
#define E_LOCAL CLOSE_EV_LOCAL_CLOSE
#define E_PEER CLOSE_EV_PEER_CLOSE
#define E_PEER_U CLOSE_EV_PEER_CLOSE_UNREAD
#define E_ERR CLOSE_EV_ERROR
#define E_ERR_U CLOSE_EV_ERROR_UNREAD
#define E_DRAINED CLOSE_EV_INBOX_DRAINED
#define E_FLUSHED CLOSE_EV_FLUSHED
#define E_EOF CLOSE_EV_PEER_EOF
#define E_TIME CLOSE_EV_TIMEOUT
#define E_ABORT CLOSE_EV_ABORT
#define E_GONE CLOSE_EV_GONE
#define E_END CLOSE_EV_END

typedef struct cell {
  int state, event, next;
  unsigned actions;
} cell;

static const cell expected[] = {
    /* open: nothing has begun */
    {OPEN, E_LOCAL, LC, SL | RD | TM},
    {OPEN, E_PEER, DN, RP | SE | MC | WK | TD | RD | TM},
    {OPEN, E_PEER_U, PP, RP | SR | TM},
    {OPEN, E_ERR, DN, RF | SF | WK | TD | RD | TM},
    {OPEN, E_ERR_U, FP, RF | SR | TM},
    {OPEN, E_DRAINED, OPEN, 0},
    {OPEN, E_FLUSHED, OPEN, 0},
    {OPEN, E_EOF, CL, AB | WK | DR},
    {OPEN, E_TIME, OPEN, 0},
    {OPEN, E_ABORT, CL, AB | WK | DR},
    {OPEN, E_GONE, CL, WK | DR},
    {OPEN, E_END, DN, WK | TD | RD | TM},
    /* the peer's close waits for the handler to read what came before it */
    {PP, E_LOCAL, DN, SE | MC | WK | TD | RD | TM},
    {PP, E_PEER, PP, 0},
    {PP, E_PEER_U, PP, 0},
    {PP, E_ERR, PP, 0},
    {PP, E_ERR_U, PP, 0},
    {PP, E_DRAINED, DN, SE | MC | WK | TD | RD | TM},
    {PP, E_FLUSHED, PP, 0},
    {PP, E_EOF, CL, AB | WK | DR},
    {PP, E_TIME, DN, SE | MC | WK | TD | RD | TM},
    {PP, E_ABORT, CL, WK | DR},
    {PP, E_GONE, CL, WK | DR},
    {PP, E_END, PP, RJ},
    /* our failure waits likewise */
    {FP, E_LOCAL, DN, SF | WK | TD | RD | TM},
    {FP, E_PEER, FP, 0},
    {FP, E_PEER_U, FP, 0},
    {FP, E_ERR, FP, 0},
    {FP, E_ERR_U, FP, 0},
    {FP, E_DRAINED, DN, SF | WK | TD | RD | TM},
    {FP, E_FLUSHED, FP, 0},
    {FP, E_EOF, CL, AB | WK | DR},
    {FP, E_TIME, DN, SF | WK | TD | RD | TM},
    {FP, E_ABORT, CL, AB | WK | DR},
    {FP, E_GONE, CL, WK | DR},
    {FP, E_END, FP, RJ},
    /* our close is out, the peer's has not come */
    {LC, E_LOCAL, LC, RJ},
    {LC, E_PEER, DN, RP | MC | WK | TD | RD | TM},
    {LC, E_PEER_U, DN, RP | MC | WK | TD | RD | TM},
    {LC, E_ERR, CL, AB | WK | DR},
    {LC, E_ERR_U, CL, AB | WK | DR},
    {LC, E_DRAINED, LC, 0},
    {LC, E_FLUSHED, LC, 0},
    {LC, E_EOF, CL, AB | WK | DR},
    {LC, E_TIME, CL, AB | WK | DR},
    {LC, E_ABORT, CL, AB | WK | DR},
    {LC, E_GONE, CL, WK | DR},
    {LC, E_END, LC, RJ},
    /* flushing our last bytes */
    {DN, E_LOCAL, DN, RJ},
    {DN, E_PEER, DN, 0},
    {DN, E_PEER_U, DN, 0},
    {DN, E_ERR, DN, 0},
    {DN, E_ERR_U, DN, 0},
    {DN, E_DRAINED, DN, 0},
    {DN, E_FLUSHED, FW, SH | RD | TM},
    {DN, E_EOF, CL, DR},
    {DN, E_TIME, CL, DR},
    {DN, E_ABORT, CL, DR},
    {DN, E_GONE, CL, DR},
    {DN, E_END, DN, 0},
    /* our FIN is out */
    {FW, E_LOCAL, FW, RJ},
    {FW, E_PEER, FW, 0},
    {FW, E_PEER_U, FW, 0},
    {FW, E_ERR, FW, 0},
    {FW, E_ERR_U, FW, 0},
    {FW, E_DRAINED, FW, 0},
    {FW, E_FLUSHED, FW, 0},
    {FW, E_EOF, CL, DR},
    {FW, E_TIME, CL, DR},
    {FW, E_ABORT, CL, DR},
    {FW, E_GONE, CL, DR},
    {FW, E_END, FW, 0},
    /* dropped: nothing more happens */
    {CL, E_LOCAL, CL, RJ},
    {CL, E_PEER, CL, 0},
    {CL, E_PEER_U, CL, 0},
    {CL, E_ERR, CL, 0},
    {CL, E_ERR_U, CL, 0},
    {CL, E_DRAINED, CL, 0},
    {CL, E_FLUSHED, CL, 0},
    {CL, E_EOF, CL, 0},
    {CL, E_TIME, CL, 0},
    {CL, E_ABORT, CL, 0},
    {CL, E_GONE, CL, 0},
    {CL, E_END, CL, 0},
};

static void test_every_cell(void) {
  unsigned seen[CLOSE_NSTATES][CLOSE_NEVENTS] = {{0}};
  for (size_t i = 0; i < sizeof expected / sizeof *expected; i++) {
    const cell *x = &expected[i];
    close_step st = close_lookup((close_state)x->state, (close_event)x->event);
    if (st.next != (close_state)x->next || st.actions != x->actions)
      printf("    cell %zu: state %d, event %d\n", i, x->state, x->event);
    CHECK_EQ(st.next, x->next);
    CHECK_EQ(st.actions, x->actions);
    close_state s = (close_state)x->state;
    CHECK_EQ(close_apply(&s, (close_event)x->event), x->actions);
    CHECK_EQ(s, x->next);
    seen[x->state][x->event]++;
  }
  /* the list above names each cell exactly once */
  for (int s = 0; s < CLOSE_NSTATES; s++)
    for (int e = 0; e < CLOSE_NEVENTS; e++) CHECK_EQ(seen[s][e], 1);
}

/* What every cell must have, whatever the list above says. */
static void test_properties(void) {
  for (int s = 0; s < CLOSE_NSTATES; s++) {
    for (int e = 0; e < CLOSE_NEVENTS; e++) {
      close_step st = close_lookup((close_state)s, (close_event)e);
      unsigned a = st.actions;
      /* the handles close exactly when the machine reaches CLOSED */
      if (s != CL) CHECK_EQ(st.next == CL, (a & DR) != 0);
      /* reaching DRAINING starts the teardown that will report FLUSHED */
      if (s != DN) CHECK_EQ(st.next == DN, (a & TD) != 0);
      /* at most one close frame of ours, and only before any was sent */
      int sends = !!(a & SL) + !!(a & SE) + !!(a & SF);
      CHECK(sends <= 1);
      if (sends) CHECK(s == OPEN || s == PP || s == FP);
      /* a refused event changes nothing */
      if (a & RJ) CHECK(a == RJ && st.next == (close_state)s);
      /* 1006 is never reported once both close frames are done with */
      if (a & AB) CHECK(s != DN && s != FW && s != CL && !(a & MC));
      /* waiters hear of the end once: when a live connection stops */
      int live = s == OPEN || s == PP || s == FP || s == LC;
      int ends = st.next == DN || st.next == CL;
      CHECK_EQ((a & WK) != 0, live && ends);
    }
  }
  close_step bad = close_lookup(CLOSE_NSTATES, E_LOCAL);
  CHECK_EQ(bad.actions, RJ);
  bad = close_lookup(OPEN, CLOSE_NEVENTS);
  CHECK_EQ(bad.next, OPEN);
  CHECK_EQ(bad.actions, RJ);
}

typedef struct step {
  int event, next;
  unsigned actions;
} step;

static void run(const char *name, const step *steps, size_t n) {
  close_state s = CLOSE_OPEN;
  for (size_t i = 0; i < n; i++) {
    unsigned a = close_apply(&s, (close_event)steps[i].event);
    if (s != (close_state)steps[i].next || a != steps[i].actions)
      printf("    %s: step %zu\n", name, i);
    CHECK_EQ(s, steps[i].next);
    CHECK_EQ(a, steps[i].actions);
  }
}

#define RUN(name, ...)                                                                             \
  do {                                                                                             \
    static const step steps_[] = {__VA_ARGS__};                                                    \
    run(name, steps_, sizeof steps_ / sizeof *steps_);                                             \
  } while (0)

static void test_sequences(void) {
  /* we close; the peer answers; FIN both ways: clean, one close frame of ours */
  RUN("local", {E_LOCAL, LC, SL | RD | TM}, {E_LOCAL, LC, RJ},
      {E_PEER, DN, RP | MC | WK | TD | RD | TM}, {E_FLUSHED, FW, SH | RD | TM}, {E_EOF, CL, DR});
  /* the peer closes with nothing unread: echo at once; its FIN never comes */
  RUN("peer", {E_PEER, DN, RP | SE | MC | WK | TD | RD | TM}, {E_LOCAL, DN, RJ},
      {E_FLUSHED, FW, SH | RD | TM}, {E_TIME, CL, DR});
  /* the peer closes behind two messages: the handler reads them, replies,
   * then asks for more and the echo goes out after its replies */
  RUN("peer after messages", {E_PEER_U, PP, RP | SR | TM}, {E_FLUSHED, PP, 0},
      {E_DRAINED, DN, SE | MC | WK | TD | RD | TM}, {E_FLUSHED, FW, SH | RD | TM}, {E_EOF, CL, DR});
  /* a bad frame behind valid messages: they are delivered first; the
   * parser's sticky error seen again changes nothing; then we fail */
  RUN("failure with inbox", {E_ERR_U, FP, RF | SR | TM}, {E_ERR_U, FP, 0}, {E_ERR, FP, 0},
      {E_DRAINED, DN, SF | WK | TD | RD | TM}, {E_FLUSHED, FW, SH | RD | TM}, {E_EOF, CL, DR});
  /* the same failure, the handler never comes back: the close timeout sends it */
  RUN("failure timeout", {E_ERR_U, FP, RF | SR | TM}, {E_TIME, DN, SF | WK | TD | RD | TM},
      {E_TIME, CL, DR});
  /* the application closes while the peer's close waits: it answers the peer */
  RUN("close while peer pending", {E_PEER_U, PP, RP | SR | TM},
      {E_LOCAL, DN, SE | MC | WK | TD | RD | TM}, {E_ABORT, CL, DR});
  /* our close is never answered: 1006 at the close timeout */
  RUN("timeout", {E_LOCAL, LC, SL | RD | TM}, {E_TIME, CL, AB | WK | DR}, {E_TIME, CL, 0},
      {E_LOCAL, CL, RJ});
  /* FIN without a close frame: 1006, and nothing after it */
  RUN("eof", {E_EOF, CL, AB | WK | DR}, {E_PEER, CL, 0}, {E_EOF, CL, 0}, {E_GONE, CL, 0});
  /* garbage after our close frame: dropped without a second close frame */
  RUN("garbage after close", {E_LOCAL, LC, SL | RD | TM}, {E_ERR, CL, AB | WK | DR});
  /* a refused handshake: no close frame, just the orderly end of TCP */
  RUN("end", {E_END, DN, WK | TD | RD | TM}, {E_END, DN, 0}, {E_FLUSHED, FW, SH | RD | TM},
      {E_FLUSHED, FW, 0}, {E_EOF, CL, DR});
}

int main(void) {
  test_every_cell();
  test_properties();
  test_sequences();
  return check_done();
}
