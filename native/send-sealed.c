/*
 * A sealed blob's plaintext straight to a socket, on a thread of its own (see
 * src/registry/sealed-send.ts). Each segment of the file (the format of
 * src/registry/sealed-format.ts) is read into a buffer, opened in place and
 * sent from there while it is still in this core's cache: three passes over
 * the bytes on one thread, and none of them on the event loop. While the
 * socket is full, the next segment is read and opened into a second buffer.
 *
 *   sendSealed(fileFd, socketFd, key, segmentBytes, length, start, end, stallMs, done) -> token
 *   cancelSend(token)
 *
 * sendSealed duplicates both descriptors before it returns, so the caller may
 * close its own at once; the thread closes its copies before `done` is called.
 * It sends plaintext bytes [start, end] of a file holding `length`; every
 * segment is authenticated before any of its bytes is sent. `done(error, kind,
 * sent)` is called once on the event loop: error undefined when every byte
 * went, otherwise a message and its kind, "sealed" (a segment missing or
 * forged), "socket" (the socket failed), "stalled" (the socket took nothing
 * for stallMs), "cancelled" (cancelSend) or "memory". The socket must be
 * non-blocking, as Node's are, and nothing else may write to it until `done`.
 * Call it only on the main thread: Node 20 frees a threadsafe function when a
 * worker's environment is torn down even while another thread holds it
 * (nodejs/node#55706).
 */
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aesgcm.h"

#define KEY_BYTES 32
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define OVERHEAD (NONCE_BYTES + TAG_BYTES)
/* "WHB1" | salt (16) | segment size (u32). */
#define HEADER_BYTES (4 + 16 + 4)
#define MAX_SEGMENT_BYTES (64 * 1024 * 1024)
#define STACK_BYTES (256 * 1024)
#define ARGC 9

typedef struct {
  int file;
  int sock;
  /* An eventfd that cancelSend writes, to wake a thread waiting for the socket. */
  int wake;
  atomic_int cancelled;
  /* The thread's and the token's; the last to let go frees the transfer. */
  atomic_int refs;
  unsigned char key[KEY_BYTES];
  uint64_t segment_bytes, length, start, end;
  int stall_ms;
  /* Whether segments are opened with native/gcm-vaes.c rather than OpenSSL. */
  int vaes;
  napi_threadsafe_function done;
  /* The outcome, written by the thread before it calls `done`. */
  const char *kind;
  char message[160];
  uint64_t sent;
} Transfer;

/* Marks the tokens sendSealed makes, so that cancelSend takes nothing else. */
static const napi_type_tag TOKEN_TAG = {0x5768617266536e64ULL, 0x5365616c6564546bULL};

static void release(Transfer *t) {
  if (atomic_fetch_sub(&t->refs, 1) != 1) return;
  close(t->wake);
  free(t);
}

static int fail(Transfer *t, const char *kind, const char *message) {
  t->kind = kind;
  snprintf(t->message, sizeof t->message, "%s", message);
  return 0;
}

static int fail_errno(Transfer *t, const char *kind, const char *what, int error) {
  t->kind = kind;
  snprintf(t->message, sizeof t->message, "%s: %s", what, strerror(error));
  return 0;
}

/* Reads up to `bytes` at `position`; how many there were, or -1 (errno set). */
static ssize_t read_at(int fd, unsigned char *into, size_t bytes, uint64_t position) {
  size_t got = 0;
  while (got < bytes) {
    ssize_t now = pread(fd, into + got, bytes - got, (off_t)(position + got));
    if (now < 0 && errno == EINTR) continue;
    if (now < 0) return -1;
    if (now == 0) break;
    got += (size_t)now;
  }
  return (ssize_t)got;
}

/* A segment read and opened, and the part of its plaintext still to send. */
typedef struct {
  /* A segment and its overhead; a whole segment is opened in place here. */
  unsigned char *sealed;
  /* A segment, for a partial one (made when first needed). */
  unsigned char *aside;
  const unsigned char *next;
  size_t left;
} Slot;

/* OpenSSL's context for this thread; NULL when VAES is used. */
typedef struct {
  EVP_CIPHER_CTX *ctx;
  int ready;
} Cipher;

/*
 * Reads segment `index`, holding `plain_bytes`, into `slot` and opens it, leaving the plaintext
 * at `slot->next`. A partial segment, the last one a file is recorded to hold, is sealed with
 * exactly those bytes or, after an append that was cut off or never recorded, with more (up to
 * a whole segment) that begin with them: it is opened into `aside`, so that the first try does
 * not overwrite what the second needs.
 */
static int open_segment(Transfer *t, Cipher *cipher, Slot *slot, uint64_t index, size_t plain_bytes) {
  size_t segment = (size_t)t->segment_bytes;
  unsigned char *sealed = slot->sealed;
  uint64_t position = HEADER_BYTES + index * (t->segment_bytes + OVERHEAD);
  size_t want = (plain_bytes < segment ? segment : plain_bytes) + OVERHEAD;
  ssize_t got = read_at(t->file, sealed, want, position);
  if (got < 0) return fail_errno(t, "sealed", "read", errno);
  char problem[64];
  if ((size_t)got < plain_bytes + OVERHEAD) {
    snprintf(problem, sizeof problem, "segment %llu is missing", (unsigned long long)index);
    return fail(t, "sealed", problem);
  }
  unsigned char aad[8];
  for (int i = 0; i < 8; i++) aad[i] = (unsigned char)(index >> (56 - 8 * i));
  if (plain_bytes == segment) {
    unsigned char *plain = sealed + NONCE_BYTES;
    slot->next = plain;
    if (aesgcm_open(cipher->ctx, &cipher->ready, t->key, sealed, aad, sizeof aad, plain, plain, plain_bytes,
                    plain + plain_bytes))
      return 1;
  } else {
    if (slot->aside == NULL && (slot->aside = malloc(segment)) == NULL) return fail(t, "memory", "out of memory");
    slot->next = slot->aside;
    size_t sizes[2] = {plain_bytes, (size_t)got - OVERHEAD};
    int tries = sizes[1] == sizes[0] ? 1 : 2;
    for (int i = 0; i < tries; i++) {
      if (aesgcm_open(cipher->ctx, &cipher->ready, t->key, sealed, aad, sizeof aad, sealed + NONCE_BYTES,
                      slot->aside, sizes[i], sealed + NONCE_BYTES + sizes[i]))
        return 1;
    }
  }
  snprintf(problem, sizeof problem, "segment %llu failed authentication", (unsigned long long)index);
  return fail(t, "sealed", problem);
}

/* Reads and opens segment `index` into `slot`, with the part of it [start, end] covers to send. */
static int prepare(Transfer *t, Cipher *cipher, Slot *slot, uint64_t index) {
  uint64_t at = index * t->segment_bytes;
  size_t plain_bytes = (size_t)(t->length - at < t->segment_bytes ? t->length - at : t->segment_bytes);
  if (!open_segment(t, cipher, slot, index, plain_bytes)) return 0;
  size_t from = t->start > at ? (size_t)(t->start - at) : 0;
  size_t to = t->end - at < plain_bytes ? (size_t)(t->end - at + 1) : plain_bytes;
  slot->next += from;
  slot->left = to - from;
  return 1;
}

/* Sends what the socket takes now of `slot`; `*full` says it took less than there was. */
static int send_some(Transfer *t, Slot *slot, int *full) {
  *full = 0;
  while (slot->left > 0) {
    if (atomic_load(&t->cancelled)) return fail(t, "cancelled", "the send was cancelled");
    ssize_t now = send(t->sock, slot->next, slot->left, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (now > 0) {
      slot->next += now;
      slot->left -= (size_t)now;
      t->sent += (uint64_t)now;
      continue;
    }
    if (now < 0 && errno == EINTR) continue;
    if (now < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      *full = 1;
      return 1;
    }
    return fail_errno(t, "socket", "send", errno);
  }
  return 1;
}

/* Waits until the socket has room (or an error to report), for at most stallMs. */
static int wait_for_room(Transfer *t) {
  struct pollfd wait[2] = {{.fd = t->sock, .events = POLLOUT}, {.fd = t->wake, .events = POLLIN}};
  int ready = poll(wait, 2, t->stall_ms);
  if (ready < 0 && errno != EINTR) return fail_errno(t, "socket", "poll", errno);
  if (ready == 0) return fail(t, "stalled", "the socket took nothing for too long");
  if (atomic_load(&t->cancelled)) return fail(t, "cancelled", "the send was cancelled");
  return 1; /* an error or hang-up on the socket shows in the next send */
}

/*
 * Sends segment after segment from two slots: while the socket is full, the next segment is
 * read and opened into the other slot, so there is plaintext to send the moment it has room.
 */
static int run(Transfer *t) {
  size_t bytes = (size_t)t->segment_bytes + OVERHEAD;
  Slot slots[2] = {{.sealed = malloc(bytes)}, {.sealed = malloc(bytes)}};
  Cipher cipher = {.ctx = t->vaes ? NULL : EVP_CIPHER_CTX_new()};
  int ok = slots[0].sealed != NULL && slots[1].sealed != NULL && (cipher.ctx != NULL || t->vaes);
  if (!ok) fail(t, "memory", "out of memory");
  uint64_t next = t->start / t->segment_bytes, last = t->end / t->segment_bytes;
  int current = 0;
  /* Whether the other slot holds the segment after the current one. */
  int ahead = 0;
  /* Whether the segment after the current one failed: the current one is sent first. */
  int failed_ahead = 0;
  if (ok) ok = prepare(t, &cipher, &slots[current], next++);
  while (ok) {
    Slot *slot = &slots[current];
    if (slot->left == 0) {
      if (failed_ahead) {
        ok = 0;
      } else if (ahead) {
        current ^= 1;
        ahead = 0;
      } else if (next <= last) {
        ok = prepare(t, &cipher, slot, next++);
      } else {
        break;
      }
      continue;
    }
    int full;
    ok = send_some(t, slot, &full);
    if (!ok || !full) continue;
    if (!ahead && !failed_ahead && next <= last) {
      ahead = prepare(t, &cipher, &slots[current ^ 1], next++);
      failed_ahead = !ahead;
    } else {
      ok = wait_for_room(t);
    }
  }
  EVP_CIPHER_CTX_free(cipher.ctx);
  for (int i = 0; i < 2; i++) {
    free(slots[i].aside);
    free(slots[i].sealed);
  }
  return ok;
}

static void *thread_main(void *data) {
  Transfer *t = data;
  if (run(t)) t->kind = NULL;
  close(t->file);
  close(t->sock);
  /*
   * `done` gets the thread's reference (call_js releases it), unless it cannot be called any more.
   * The transfer may be freed as soon as it is handed over: nothing of it is read after that.
   */
  napi_threadsafe_function done = t->done;
  if (napi_call_threadsafe_function(done, t, napi_tsfn_blocking) != napi_ok) release(t);
  napi_release_threadsafe_function(done, napi_tsfn_release);
  return NULL;
}

static void call_js(napi_env env, napi_value done, void *context, void *data) {
  (void)context;
  Transfer *t = data;
  if (env != NULL) {
    napi_value argv[3];
    napi_get_undefined(env, &argv[0]);
    napi_get_undefined(env, &argv[1]);
    if (t->kind != NULL) {
      napi_create_string_utf8(env, t->message, NAPI_AUTO_LENGTH, &argv[0]);
      napi_create_string_utf8(env, t->kind, NAPI_AUTO_LENGTH, &argv[1]);
    }
    napi_create_double(env, (double)t->sent, &argv[2]);
    napi_value global;
    napi_get_global(env, &global);
    napi_call_function(env, global, done, 3, argv, NULL);
  }
  release(t);
}

static void finalize_token(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  release(data);
}

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, "ERR_WHARF_SEND_SEALED", message);
  return NULL;
}

/* A non-negative integer argument no larger than `max`. */
static int integer_of(napi_env env, napi_value value, double max, uint64_t *out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok) return 0;
  if (!(number >= 0) || number > max || number != (double)(uint64_t)number) return 0;
  *out = (uint64_t)number;
  return 1;
}

static napi_value send_sealed_with(napi_env env, napi_callback_info info, int vaes) {
  size_t argc = ARGC;
  napi_value argv[ARGC];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != ARGC)
    return throw_error(env, "expected 9 arguments");
  uint64_t file, sock, segment_bytes, length, start, end, stall_ms;
  void *key = NULL;
  size_t key_bytes = 0;
  bool is_buffer = false;
  napi_valuetype type;
  const double max_safe = 9007199254740991.0;
  if (!integer_of(env, argv[0], 0x7fffffff, &file)) return throw_error(env, "fileFd: a descriptor");
  if (!integer_of(env, argv[1], 0x7fffffff, &sock)) return throw_error(env, "socketFd: a descriptor");
  if (napi_is_buffer(env, argv[2], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[2], &key, &key_bytes) != napi_ok || key_bytes != KEY_BYTES)
    return throw_error(env, "key: a Buffer of 32 bytes");
  if (!integer_of(env, argv[3], MAX_SEGMENT_BYTES, &segment_bytes) || segment_bytes == 0)
    return throw_error(env, "segmentBytes: 1 to 64 MiB");
  if (!integer_of(env, argv[4], max_safe, &length) || length == 0) return throw_error(env, "length: at least 1");
  if (!integer_of(env, argv[5], max_safe, &start) || !integer_of(env, argv[6], max_safe, &end) || start > end ||
      end >= length)
    return throw_error(env, "start and end: 0 <= start <= end < length");
  if (!integer_of(env, argv[7], 0x7fffffff, &stall_ms) || stall_ms == 0)
    return throw_error(env, "stallMs: a positive number of milliseconds");
  if (napi_typeof(env, argv[8], &type) != napi_ok || type != napi_function)
    return throw_error(env, "done: a function");

  Transfer *t = calloc(1, sizeof *t);
  if (t == NULL) return throw_error(env, "out of memory");
  memcpy(t->key, key, KEY_BYTES);
  t->segment_bytes = segment_bytes;
  t->length = length;
  t->start = start;
  t->end = end;
  t->stall_ms = (int)stall_ms;
  t->vaes = vaes;
  t->file = fcntl((int)file, F_DUPFD_CLOEXEC, 0);
  t->sock = fcntl((int)sock, F_DUPFD_CLOEXEC, 0);
  t->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  const char *problem = NULL;
  if (t->file < 0) problem = "fileFd: not an open descriptor";
  else if (t->sock < 0) problem = "socketFd: not an open descriptor";
  else if (t->wake < 0) problem = "no eventfd";
  napi_value name;
  if (problem == NULL && (napi_create_string_utf8(env, "wharf.sendSealed", NAPI_AUTO_LENGTH, &name) != napi_ok ||
                          napi_create_threadsafe_function(env, argv[8], NULL, name, 0, 1, NULL, NULL, NULL, call_js,
                                                          &t->done) != napi_ok))
    problem = "could not make the completion callback";
  napi_value token = NULL;
  /* The token holds one reference (until it is collected), the thread the other. */
  atomic_init(&t->refs, 2);
  if (problem == NULL && napi_create_external(env, t, finalize_token, NULL, &token) != napi_ok) {
    napi_release_threadsafe_function(t->done, napi_tsfn_abort);
    problem = "could not make the token";
  }
  if (problem != NULL) {
    if (t->file >= 0) close(t->file);
    if (t->sock >= 0) close(t->sock);
    if (t->wake >= 0) close(t->wake);
    free(t);
    return throw_error(env, problem);
  }
  pthread_attr_t attr;
  pthread_t thread;
  int started = napi_type_tag_object(env, token, &TOKEN_TAG) == napi_ok && pthread_attr_init(&attr) == 0;
  if (started) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, STACK_BYTES);
    started = pthread_create(&thread, &attr, thread_main, t) == 0;
    pthread_attr_destroy(&attr);
  }
  if (!started) {
    /* The token is made: it lets go of its reference when collected; this drops the thread's. */
    close(t->file);
    close(t->sock);
    napi_release_threadsafe_function(t->done, napi_tsfn_abort);
    release(t);
    return throw_error(env, "could not start a thread");
  }
  return token;
}

static napi_value js_cancel_send(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  napi_valuetype type;
  bool tagged = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_typeof(env, argv[0], &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, argv[0], &TOKEN_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, argv[0], &data) != napi_ok)
    return throw_error(env, "expected a token from sendSealed");
  Transfer *t = data;
  atomic_store(&t->cancelled, 1);
  uint64_t one = 1;
  /* Full only after 2^64 - 2 cancels; the flag is set either way. */
  ssize_t ignored = write(t->wake, &one, sizeof one);
  (void)ignored;
  return NULL;
}

static napi_value js_send_sealed(napi_env env, napi_callback_info info) {
  return send_sealed_with(env, info, aesgcm_vaes_usable());
}

static napi_value js_send_sealed_openssl(napi_env env, napi_callback_info info) {
  return send_sealed_with(env, info, 0);
}

napi_status send_sealed_define(napi_env env, napi_value exports, napi_value openssl) {
  napi_property_descriptor properties[] = {
      {"sendSealed", NULL, js_send_sealed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cancelSend", NULL, js_cancel_send, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_property_descriptor portable[] = {
      {"sendSealed", NULL, js_send_sealed_openssl, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cancelSend", NULL, js_cancel_send, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_status status = napi_define_properties(env, exports, 2, properties);
  return status == napi_ok ? napi_define_properties(env, openssl, 2, portable) : status;
}
