/* The process's standard input and output as loop objects, for the duplex
 * command: lines read from fd 0 and bytes written to fd 1 without ever
 * blocking the loop. A terminal is a uv_tty_t, a pipe or socket a stream
 * handle; a regular file (which no poller can wait on) is read and written
 * with plain synchronous calls, one bounded chunk per call, so a large file
 * still lets the loop step between chunks. Waiters learn of progress through
 * loop_wake(id), as connections do. */
#ifndef DUPLEX_STDSTREAM_H
#define DUPLEX_STDSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "transport/loop.h"

#pragma GCC visibility push(hidden)

typedef struct stdstream_in stdstream_in;
typedef struct stdstream_out stdstream_out;

/* What read_line and write return. */
enum {
  STDSTREAM_OK = 0,    /* a line (read) / queued (write) */
  STDSTREAM_AGAIN = 1, /* wait for id, then try again */
  STDSTREAM_EOF = 2,   /* end of input: every line was handed out */
  STDSTREAM_ERROR = -1 /* see the error string */
};

/* Opens fd for reading lines of at most max_line bytes (without the
 * newline). NULL when out of memory. The kind (tty, pipe, file, closed) is
 * told by stdstream_in_kind. */
stdstream_in *stdstream_in_open(loop *l, int fd, int64_t id, size_t max_line);

/* The next line without its "\n" (a last line without one counts too):
 * *line and *len stay valid until the next call. */
int stdstream_in_read_line(stdstream_in *s, const char **line, size_t *len);

const char *stdstream_in_kind(const stdstream_in *s);
const char *stdstream_in_error(const stdstream_in *s);

/* Closes the handle; the memory goes when libuv is done with it. */
void stdstream_in_release(stdstream_in *s);

/* Opens fd for writing; write says AGAIN while more than high_water bytes
 * are waiting for the descriptor. */
stdstream_out *stdstream_out_open(loop *l, int fd, int64_t id, size_t high_water);

/* Queues the n buffers as one write (copied): OK, AGAIN (nothing queued:
 * over high water), or ERROR (an earlier write failed, or the descriptor
 * is not open for writing). */
int stdstream_out_write(stdstream_out *s, const uv_buf_t *bufs, size_t n);

/* Bytes queued and not yet taken by the descriptor. */
size_t stdstream_out_pending(const stdstream_out *s);

const char *stdstream_out_kind(const stdstream_out *s);
const char *stdstream_out_error(const stdstream_out *s);

/* Closes the handle (what is still queued is dropped: wait for pending to
 * reach 0 first). */
void stdstream_out_release(stdstream_out *s);

/* The canonical absolute path of path, symbolic links resolved (the
 * command's --static checks that a file lies inside its folder): a string
 * to free(), or NULL with *err set (a libuv code). */
char *stdstream_realpath(loop *l, const char *path, int *err);

#pragma GCC visibility pop

#endif
