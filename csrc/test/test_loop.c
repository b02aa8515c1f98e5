/* loop_timeout, what an embedding host re-arms its timer from: -1 (no
 * deadline) for a loop holding nothing, the delay of the next timer, 0 while
 * a handle is closing (a step must run its close callback). */
#include "test/check.h"
#include "transport/loop.h"

#include <stdlib.h>

static void on_close(uv_handle_t *h) { (void)h; }

int main(void) {
  loop *l = malloc(loop_size());
  CHECK(l != NULL);
  CHECK_EQ(loop_init(l), 0);
  CHECK_EQ(loop_timeout(l), -1); /* fresh: libuv itself says 0 here */
  CHECK(!loop_alive(l));

  loop_alarm(l, loop_new_id(l), 500);
  /* libuv says 0 until a run has registered its watchers (the host's
   * poll on the backend fd would miss them): a step is due first */
  loop_step(l, 0);
  int t = loop_timeout(l);
  if (!CHECK(t > 400 && t <= 500)) printf("    t = %d\n", t);
  loop_alarm_stop(l);
  CHECK_EQ(loop_timeout(l), -1); /* a stopped timer keeps nothing due */

  CHECK_EQ(loop_sleep(l, loop_new_id(l), 200), 0);
  t = loop_timeout(l);
  if (!CHECK(t > 100 && t <= 200)) printf("    t = %d\n", t);
  loop_step(l, 300);            /* the sleeper wakes */
  CHECK_EQ(loop_timeout(l), 0); /* its wake-up is pending */
  loop_take_ready(l);
  CHECK_EQ(loop_timeout(l), -1);

  /* a listener-like handle: alive, no deadline; closing: a step is due */
  uv_tcp_t tcp;
  CHECK_EQ(uv_tcp_init(&l->uv, &tcp), 0);
  CHECK_EQ(loop_timeout(l), -1); /* an idle (inactive) handle holds nothing */
  uv_close((uv_handle_t *)&tcp, on_close);
  CHECK_EQ(loop_timeout(l), 0);
  loop_step(l, 0);
  CHECK_EQ(loop_timeout(l), -1); /* after the last one closed */

  loop_close(l);
  free(l);
  return check_done();
}
