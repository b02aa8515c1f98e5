#include "transport/stdstream.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes asked of the descriptor at a time; also what a file read takes
 * before the loop gets a step. */
enum { CHUNK = 64 * 1024 };

enum { KIND_CLOSED, KIND_TTY, KIND_PIPE, KIND_FILE };
static const char *const kind_names[] = {"closed", "tty", "pipe", "file"};

typedef union any_stream {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tty_t tty;
  uv_pipe_t pipe;
  uv_tcp_t tcp;
} any_stream;

/* What both directions share. Freed by the last unref: the binding's, the
 * handle's (until its close callback) and each write in flight. */
typedef struct stdstream_base {
  loop_obj obj; /* first: the loop reaches us through it */
  loop *l;
  any_stream h;
  int fd, kind, handle_open, saved_flags;
  unsigned refs;
  int64_t id;
  char err[160];
} stdstream_base;

struct stdstream_in {
  stdstream_base b; /* first */
  char *buf;
  size_t start, len, cap; /* unread bytes are buf[start..len) */
  size_t scanned;         /* of them, how many hold no newline */
  size_t max_line;
  int reading, eof, failed;
};

struct stdstream_out {
  stdstream_base b; /* first */
  size_t pending, high_water;
};

typedef struct out_write {
  uv_write_t req;
  stdstream_out *s;
  size_t len;
  char data[];
} out_write;

static void base_unref(stdstream_base *b) {
  if (--b->refs == 0) free(b);
}

static void set_error(stdstream_base *b, const char *what, int rc) {
  snprintf(b->err, sizeof b->err, "%s: %s", what, uv_strerror(rc));
}

static void on_close(uv_handle_t *h) {
  stdstream_base *b = (stdstream_base *)h->data;
  b->handle_open = 0;
  /* libuv left the descriptor non-blocking: give it back as it was found,
   * for whoever shares it after us (a shell's next command) */
  if (b->saved_flags >= 0) fcntl(b->fd, F_SETFL, b->saved_flags);
  base_unref(b);
}

static void close_handle(stdstream_base *b) {
  if (b->handle_open && !uv_is_closing(&b->h.handle)) uv_close(&b->h.handle, on_close);
}

static void obj_close(loop_obj *o) { close_handle((stdstream_base *)o); }
static void obj_flush(loop_obj *o) { (void)o; }
static const loop_obj_ops stdstream_ops = {obj_close, obj_flush};

/* Opens the handle that suits fd: a tty, a pipe or socket as a stream, or
 * nothing for a file (read and written directly) or a closed fd. */
static void base_open(stdstream_base *b, loop *l, int fd, int64_t id, int readable) {
  b->obj.ops = &stdstream_ops;
  b->l = l;
  b->fd = fd;
  b->id = id;
  b->refs = 1;
  b->saved_flags = -1;
  const char *what = readable ? "stdin" : "stdout";
  int rc = 0;
  switch (uv_guess_handle(fd)) {
  case UV_TTY:
    b->kind = KIND_TTY;
    rc = uv_tty_init(&l->uv, &b->h.tty, fd, readable);
    if (!rc) b->handle_open = 1;
    break;
  case UV_NAMED_PIPE:
  case UV_TCP:
    b->kind = KIND_PIPE;
    b->saved_flags = fcntl(fd, F_GETFL);
    if (uv_guess_handle(fd) == UV_TCP) {
      uv_tcp_init(&l->uv, &b->h.tcp);
      b->handle_open = 1;
      rc = uv_tcp_open(&b->h.tcp, fd);
    } else {
      uv_pipe_init(&l->uv, &b->h.pipe, 0);
      b->handle_open = 1;
      rc = uv_pipe_open(&b->h.pipe, fd);
    }
    break;
  case UV_FILE:
    b->kind = KIND_FILE;
    return;
  default:
    b->kind = KIND_CLOSED;
    return;
  }
  if (b->handle_open) {
    b->h.handle.data = &b->obj;
    b->refs++;
  }
  if (rc) {
    set_error(b, what, rc);
    close_handle(b);
  }
}

/* Input ------------------------------------------------------------------ */

stdstream_in *stdstream_in_open(loop *l, int fd, int64_t id, size_t max_line) {
  stdstream_in *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->max_line = max_line;
  base_open(&s->b, l, fd, id, 1);
  return s;
}

/* Room for at least CHUNK more bytes (or up to the line bound): moves the
 * unread bytes to the front first. 0, or -1 when out of memory. */
static int make_room(stdstream_in *s, size_t *room) {
  if (s->start) {
    memmove(s->buf, s->buf + s->start, s->len - s->start);
    s->len -= s->start;
    s->start = 0;
  }
  size_t want = s->len + CHUNK;
  if (want > s->cap) {
    char *p = realloc(s->buf, want);
    if (!p) return -1;
    s->buf = p;
    s->cap = want;
  }
  *room = s->cap - s->len;
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  stdstream_in *s = (stdstream_in *)h->data;
  size_t room;
  if (make_room(s, &room)) {
    *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init(s->buf + s->len, (unsigned)room);
}

static int has_newline(const stdstream_in *s, size_t from) {
  return memchr(s->buf + from, '\n', s->len - from) != NULL;
}

static void stop_reading(stdstream_in *s) {
  if (s->reading) uv_read_stop(&s->b.h.stream);
  s->reading = 0;
}

/* Reading stops once a whole line (or more than a line's bound) is
 * buffered, so input waits in the pipe, not in our memory, while the
 * reader is busy. */
static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  stdstream_in *s = (stdstream_in *)h->data;
  if (n == 0) return;
  if (n == UV_EOF) {
    s->eof = 1;
    stop_reading(s);
  } else if (n < 0) {
    set_error(&s->b, "cannot read stdin", (int)n);
    stop_reading(s);
  } else {
    size_t from = s->len;
    s->len += (size_t)n;
    if (has_newline(s, from) || s->len - s->start > s->max_line) stop_reading(s);
  }
  loop_wake(s->b.l, s->b.id);
}

/* A regular file cannot be polled: one chunk is read at once, and the
 * caller is told to wait for the step the wake-up brings. */
static void read_file_chunk(stdstream_in *s) {
  size_t room;
  if (make_room(s, &room)) {
    snprintf(s->b.err, sizeof s->b.err, "cannot read stdin: out of memory");
    return;
  }
  if (room > CHUNK) room = CHUNK;
  uv_buf_t b = uv_buf_init(s->buf + s->len, (unsigned)room);
  uv_fs_t req;
  int n = uv_fs_read(&s->b.l->uv, &req, s->b.fd, &b, 1, -1, NULL);
  uv_fs_req_cleanup(&req);
  if (n == 0)
    s->eof = 1;
  else if (n < 0)
    set_error(&s->b, "cannot read stdin", n);
  else
    s->len += (size_t)n;
  loop_wake(s->b.l, s->b.id);
}

static int take(stdstream_in *s, size_t end, size_t skip, const char **line, size_t *len) {
  *line = s->buf + s->start;
  *len = end - s->start;
  s->start = end + skip;
  s->scanned = 0;
  if (s->start == s->len) s->start = s->len = 0; /* the bytes stay until the next read */
  return STDSTREAM_OK;
}

/* What to do when no whole line is buffered: read more or report why not. */
static int need_more(stdstream_in *s, const char **line, size_t *len) {
  if (s->len - s->start > s->max_line) {
    snprintf(s->b.err, sizeof s->b.err, "stdin: a line is longer than %zu bytes", s->max_line);
    s->failed = 1;
  }
  if (s->failed || s->b.err[0]) {
    s->failed = 1;
    stop_reading(s);
    return STDSTREAM_ERROR;
  }
  if (s->eof || s->b.kind == KIND_CLOSED) {
    s->eof = 1;
    if (s->len > s->start) return take(s, s->len, 0, line, len);
    return STDSTREAM_EOF;
  }
  if (s->b.kind == KIND_FILE) {
    read_file_chunk(s);
    return STDSTREAM_AGAIN;
  }
  if (!s->b.handle_open) return STDSTREAM_EOF;
  if (!s->reading) {
    int rc = uv_read_start(&s->b.h.stream, on_alloc, on_read);
    if (rc) {
      set_error(&s->b, "cannot read stdin", rc);
      s->failed = 1;
      return STDSTREAM_ERROR;
    }
    s->reading = 1;
  }
  return STDSTREAM_AGAIN;
}

int stdstream_in_read_line(stdstream_in *s, const char **line, size_t *len) {
  if (s->len > s->start) {
    size_t from = s->start + s->scanned;
    const char *nl = memchr(s->buf + from, '\n', s->len - from);
    if (nl) return take(s, (size_t)(nl - s->buf), 1, line, len);
    s->scanned = s->len - s->start;
  }
  return need_more(s, line, len);
}

const char *stdstream_in_kind(const stdstream_in *s) { return kind_names[s->b.kind]; }
const char *stdstream_in_error(const stdstream_in *s) { return s->b.err[0] ? s->b.err : NULL; }

void stdstream_in_release(stdstream_in *s) {
  stop_reading(s);
  close_handle(&s->b);
  free(s->buf);
  s->buf = NULL;
  base_unref(&s->b);
}

/* Output ----------------------------------------------------------------- */

stdstream_out *stdstream_out_open(loop *l, int fd, int64_t id, size_t high_water) {
  stdstream_out *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->high_water = high_water;
  base_open(&s->b, l, fd, id, 0);
  return s;
}

static void on_write(uv_write_t *req, int status) {
  out_write *w = (out_write *)req;
  stdstream_out *s = w->s;
  s->pending -= w->len;
  if (status < 0 && status != UV_ECANCELED && !s->b.err[0])
    set_error(&s->b, "cannot write stdout", status);
  free(w);
  loop_wake(s->b.l, s->b.id);
  base_unref(&s->b);
}

static int write_file(stdstream_out *s, const uv_buf_t *bufs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t done = 0;
    while (done < bufs[i].len) {
      uv_buf_t b = uv_buf_init(bufs[i].base + done, (unsigned)(bufs[i].len - done));
      uv_fs_t req;
      int rc = uv_fs_write(&s->b.l->uv, &req, s->b.fd, &b, 1, -1, NULL);
      uv_fs_req_cleanup(&req);
      if (rc < 0) {
        set_error(&s->b, "cannot write stdout", rc);
        return STDSTREAM_ERROR;
      }
      done += (size_t)rc;
    }
  }
  return STDSTREAM_OK;
}

int stdstream_out_write(stdstream_out *s, const uv_buf_t *bufs, size_t n) {
  if (s->b.err[0]) return STDSTREAM_ERROR;
  if (s->b.kind == KIND_CLOSED || (s->b.kind != KIND_FILE && !s->b.handle_open)) {
    snprintf(s->b.err, sizeof s->b.err, "stdout is not open");
    return STDSTREAM_ERROR;
  }
  if (s->b.kind == KIND_FILE) return write_file(s, bufs, n);
  if (s->pending > 0 && s->pending >= s->high_water) return STDSTREAM_AGAIN;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += bufs[i].len;
  out_write *w = malloc(sizeof *w + total);
  if (!w) {
    snprintf(s->b.err, sizeof s->b.err, "cannot write stdout: out of memory");
    return STDSTREAM_ERROR;
  }
  w->s = s;
  w->len = total;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(w->data + at, bufs[i].base, bufs[i].len);
    at += bufs[i].len;
  }
  uv_buf_t b = {.base = w->data, .len = total};
  int rc = uv_write(&w->req, &s->b.h.stream, &b, 1, on_write);
  if (rc) {
    free(w);
    set_error(&s->b, "cannot write stdout", rc);
    return STDSTREAM_ERROR;
  }
  s->pending += total;
  s->b.refs++;
  return STDSTREAM_OK;
}

size_t stdstream_out_pending(const stdstream_out *s) { return s->pending; }
const char *stdstream_out_kind(const stdstream_out *s) { return kind_names[s->b.kind]; }
const char *stdstream_out_error(const stdstream_out *s) { return s->b.err[0] ? s->b.err : NULL; }

void stdstream_out_release(stdstream_out *s) {
  close_handle(&s->b);
  base_unref(&s->b);
}

char *stdstream_realpath(loop *l, const char *path, int *err) {
  uv_fs_t req;
  *err = uv_fs_realpath(&l->uv, &req, path, NULL);
  char *out = NULL;
  if (*err >= 0) {
    out = strdup(req.ptr);
    *err = out ? 0 : UV_ENOMEM;
  }
  uv_fs_req_cleanup(&req);
  return out;
}
