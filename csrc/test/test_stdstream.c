/* stdstream over pipes and a regular file: lines split across reads, a
 * last line without a newline, the line bound, end of input, a descriptor
 * that is not open; writes queued past high water, drained by the loop,
 * and a write to a pipe nobody reads any more. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "transport/loop.h"
#include "transport/stdstream.h"

enum { STEPS = 200 };

/* Steps the loop until read_line gives something other than AGAIN. */
static int next_line(loop *l, stdstream_in *s, const char **line, size_t *len) {
  for (int i = 0; i < STEPS; i++) {
    int rc = stdstream_in_read_line(s, line, len);
    if (rc != STDSTREAM_AGAIN) return rc;
    loop_step(l, 10);
    loop_take_ready(l);
  }
  return STDSTREAM_AGAIN;
}

static void test_pipe_lines(loop *l) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  stdstream_in *s = stdstream_in_open(l, fds[0], 1, 16);
  CHECK_STR(stdstream_in_kind(s), "pipe");
  const char *line;
  size_t len;
  CHECK_EQ(write(fds[1], "ab\ncd", 5), 5);
  CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_OK);
  CHECK_MEMSTR(line, len, "ab");
  CHECK_EQ(stdstream_in_read_line(s, &line, &len), STDSTREAM_AGAIN); /* "cd" has no end yet */
  CHECK_EQ(write(fds[1], "e\n\nlast", 7), 7);
  CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_OK);
  CHECK_MEMSTR(line, len, "cde");
  CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_OK);
  CHECK_MEMSTR(line, len, "");
  close(fds[1]);
  CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_OK);
  CHECK_MEMSTR(line, len, "last");
  CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_EOF);
  CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_EOF);
  stdstream_in_release(s);
}

static void test_line_bound(loop *l) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  stdstream_in *s = stdstream_in_open(l, fds[0], 2, 16);
  const char *line;
  size_t len;
  CHECK_EQ(write(fds[1], "0123456789abcdef\n0123456789abcdefg", 34), 34);
  CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_OK); /* 16 bytes: at the bound */
  CHECK_EQ(len, 16);
  CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_ERROR);
  CHECK_STR(stdstream_in_error(s), "stdin: a line is longer than 16 bytes");
  CHECK_EQ(stdstream_in_read_line(s, &line, &len), STDSTREAM_ERROR); /* it stays failed */
  close(fds[1]);
  stdstream_in_release(s);
}

static void test_file(loop *l) {
  char path[] = "/tmp/duplex-stdstream-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  unlink(path);
  CHECK_EQ(write(fd, "1\n2\n3", 5), 5);
  lseek(fd, 0, SEEK_SET);
  stdstream_in *s = stdstream_in_open(l, fd, 3, 16);
  CHECK_STR(stdstream_in_kind(s), "file");
  const char *line;
  size_t len;
  const char *want[] = {"1", "2", "3"};
  for (int i = 0; i < 3; i++) {
    CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_OK);
    CHECK_MEMSTR(line, len, want[i]);
  }
  CHECK_EQ(next_line(l, s, &line, &len), STDSTREAM_EOF);
  stdstream_in_release(s);
  close(fd);
}

static void test_not_open(loop *l) {
  int fd = dup(0);
  close(fd); /* a descriptor number nothing is open on */
  stdstream_in *s = stdstream_in_open(l, fd, 4, 16);
  CHECK_STR(stdstream_in_kind(s), "closed");
  const char *line;
  size_t len;
  CHECK_EQ(stdstream_in_read_line(s, &line, &len), STDSTREAM_EOF);
  stdstream_in_release(s);
  stdstream_out *o = stdstream_out_open(l, fd, 5, 16);
  uv_buf_t b = uv_buf_init("x", 1);
  CHECK_EQ(stdstream_out_write(o, &b, 1), STDSTREAM_ERROR);
  CHECK_STR(stdstream_out_error(o), "stdout is not open");
  stdstream_out_release(o);
}

/* Steps until nothing is pending (bounded); reads the pipe meanwhile. */
static void drain(loop *l, stdstream_out *o, int rfd, size_t *got) {
  char buf[65536];
  for (int i = 0; i < STEPS && stdstream_out_pending(o); i++) {
    ssize_t n;
    while ((n = read(rfd, buf, sizeof buf)) > 0) *got += (size_t)n;
    loop_step(l, 5);
    loop_take_ready(l);
  }
  ssize_t n;
  while ((n = read(rfd, buf, sizeof buf)) > 0) *got += (size_t)n;
}

static void test_writes(loop *l) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  stdstream_out *o = stdstream_out_open(l, fds[1], 6, 100000);
  CHECK_STR(stdstream_out_kind(o), "pipe");
  static char big[60000];
  memset(big, 'x', sizeof big);
  uv_buf_t parts[2] = {uv_buf_init(big, sizeof big), uv_buf_init("\n", 1)};
  size_t queued = 0;
  int rc;
  /* nobody reads: the pipe fills, then pending passes high water */
  while ((rc = stdstream_out_write(o, parts, 2)) == STDSTREAM_OK) queued += sizeof big + 1;
  CHECK_EQ(rc, STDSTREAM_AGAIN);
  CHECK(stdstream_out_pending(o) >= 100000);
  size_t got = 0;
  drain(l, o, fds[0], &got);
  CHECK_EQ(stdstream_out_pending(o), 0);
  CHECK_EQ(got, queued);
  CHECK_EQ(stdstream_out_write(o, parts, 2), STDSTREAM_OK);
  /* the reader goes away: the next write fails and stays failed */
  close(fds[0]);
  for (int i = 0; i < STEPS && !stdstream_out_error(o); i++) {
    stdstream_out_write(o, parts, 2);
    loop_step(l, 5);
    loop_take_ready(l);
  }
  CHECK_STR(stdstream_out_error(o), "cannot write stdout: broken pipe");
  CHECK_EQ(stdstream_out_write(o, parts, 2), STDSTREAM_ERROR);
  stdstream_out_release(o); /* libuv closes the descriptor */
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* a write to a closed pipe must fail, not kill */
  loop *l = malloc(loop_size());
  CHECK(l && loop_init(l) == 0);
  test_pipe_lines(l);
  test_line_bound(l);
  test_file(l);
  test_not_open(l);
  test_writes(l);
  loop_close(l);
  free(l);
  return check_done();
}
