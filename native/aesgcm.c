/*
 * AES-256-GCM into a caller-given buffer, for sealed blob segments (see
 * src/registry/native-gcm.ts). node:crypto cannot write its output into a
 * given buffer, so each opened segment cost an allocation, a zero-fill and a
 * copy; this writes the plaintext (or ciphertext) where the caller says, in
 * place or into another range.
 *
 * On CPUs with VAES and VPCLMULQDQ it uses its own code for them
 * (native/gcm-vaes.c, about three times OpenSSL 3.0's speed there); elsewhere
 * OpenSSL's. It links nothing: the OpenSSL functions resolve from the node
 * process that loads it, and only N-API is used from Node. It is
 * context-aware (each worker thread gets its own instance and its own cipher
 * contexts).
 *
 *   open(key, nonce, aad, input, inputOffset, output, outputOffset, length, tag) -> boolean
 *   seal(key, nonce, aad, input, inputOffset, output, outputOffset, length, tag) -> undefined
 *   engine: "vaes" or "openssl", which of the two open and seal use
 *   openssl: { open, seal, sendSealed }, the same always through OpenSSL (for tests and comparisons)
 *   sendSealed, cancelSend: a sealed blob's plaintext straight to a socket (native/send-sealed.c)
 *
 * All buffers are Uint8Arrays (Buffers); key 32 bytes, nonce 12, tag 16. The
 * ranges [offset, offset + length) must lie inside their buffers, and the
 * input and output ranges must be the same bytes or not overlap at all.
 * `open` returns false when the segment fails authentication, having zeroed
 * the output range; `seal` writes the tag into `tag`. Anything else throws.
 */
#define NAPI_VERSION 8
#include <limits.h>
#include <node_api.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aesgcm.h"
#include "gcm-vaes.h"

#define KEY_BYTES 32
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define ARGC 9

/* One cipher context per direction and per thread (per N-API environment). */
typedef struct {
  EVP_CIPHER_CTX *open;
  EVP_CIPHER_CTX *seal;
  /* Whether each context has been given the cipher (then only key and nonce change). */
  int open_ready;
  int seal_ready;
} State;

typedef struct {
  unsigned char key[KEY_BYTES];
  unsigned char nonce[NONCE_BYTES];
  unsigned char tag[TAG_BYTES];
  const unsigned char *aad;
  size_t aad_bytes;
  const unsigned char *input;
  unsigned char *output;
  size_t length;
  /* Where `seal` writes the tag. */
  unsigned char *tag_out;
} Job;

static void finalize_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  State *state = data;
  EVP_CIPHER_CTX_free(state->open);
  EVP_CIPHER_CTX_free(state->seal);
  free(state);
}

static napi_value fail(napi_env env, const char *message) {
  napi_throw_error(env, "ERR_WHARF_AESGCM", message);
  return NULL;
}

/* A Uint8Array argument's bytes. */
static int bytes_of(napi_env env, napi_value value, unsigned char **data, size_t *length) {
  bool is_typedarray = false;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray) return 0;
  napi_typedarray_type type;
  void *base = NULL;
  if (napi_get_typedarray_info(env, value, &type, length, &base, NULL, NULL) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  /* An empty view may have no backing memory; point it somewhere harmless. */
  static unsigned char empty;
  *data = base == NULL ? &empty : base;
  return 1;
}

/* A non-negative integer argument no larger than `max`. */
static int size_of(napi_env env, napi_value value, size_t max, size_t *out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok) return 0;
  if (!(number >= 0) || number > (double)max || number != (double)(size_t)number) return 0;
  *out = (size_t)number;
  return 1;
}

/* Reads and checks the arguments shared by open and seal: "", or what is wrong with them. */
static const char *parse(napi_env env, napi_callback_info info, Job *job) {
  size_t argc = ARGC;
  napi_value argv[ARGC];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != ARGC)
    return "expected 9 arguments";

  unsigned char *key, *nonce, *aad, *input, *output, *tag;
  size_t key_bytes, nonce_bytes, aad_bytes, input_bytes, output_bytes, tag_bytes;
  size_t input_offset, output_offset, length;
  if (!bytes_of(env, argv[0], &key, &key_bytes) || key_bytes != KEY_BYTES) return "key: 32 bytes";
  if (!bytes_of(env, argv[1], &nonce, &nonce_bytes) || nonce_bytes != NONCE_BYTES) return "nonce: 12 bytes";
  if (!bytes_of(env, argv[2], &aad, &aad_bytes) || aad_bytes > INT_MAX) return "aad: a Uint8Array";
  if (!bytes_of(env, argv[3], &input, &input_bytes)) return "input: a Uint8Array";
  if (!size_of(env, argv[4], input_bytes, &input_offset)) return "inputOffset: outside input";
  if (!bytes_of(env, argv[5], &output, &output_bytes)) return "output: a Uint8Array";
  if (!size_of(env, argv[6], output_bytes, &output_offset)) return "outputOffset: outside output";
  if (!size_of(env, argv[7], INT_MAX, &length)) return "length: an integer up to 2^31 - 1";
  if (length > input_bytes - input_offset) return "length: past the end of input";
  if (length > output_bytes - output_offset) return "length: past the end of output";
  if (!bytes_of(env, argv[8], &tag, &tag_bytes) || tag_bytes != TAG_BYTES) return "tag: 16 bytes";

  const unsigned char *in = input + input_offset;
  unsigned char *out = output + output_offset;
  /* OpenSSL takes the same bytes or separate ones, never a partial overlap. */
  uintptr_t from = (uintptr_t)in, to = (uintptr_t)out;
  if (from != to && length > 0 && from < to + length && to < from + length)
    return "input and output overlap";

  /* Copies, so that nothing the output overwrites is read afterwards. */
  memcpy(job->key, key, KEY_BYTES);
  memcpy(job->nonce, nonce, NONCE_BYTES);
  memcpy(job->tag, tag, TAG_BYTES);
  job->aad = aad;
  job->aad_bytes = aad_bytes;
  job->input = in;
  job->output = out;
  job->length = length;
  job->tag_out = tag;
  return "";
}

static State *state_of(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return data;
}

/* Gives `ctx` the cipher once (if needed), then this job's key and nonce. */
static int begin(EVP_CIPHER_CTX *ctx, int *ready, int encrypt, const Job *job) {
  if (!*ready) {
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) != 1) return 0;
    /* 12 bytes is GCM's default nonce length; say so rather than rely on it. */
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) != 1) return 0;
    *ready = 1;
  }
  if (EVP_CipherInit_ex(ctx, NULL, NULL, job->key, job->nonce, encrypt) != 1) return 0;
  int ignored;
  if (job->aad_bytes > 0 && EVP_CipherUpdate(ctx, NULL, &ignored, job->aad, (int)job->aad_bytes) != 1)
    return 0;
  return 1;
}

/* After a failure: a fresh context next time, and no error left in this thread's OpenSSL queue. */
static void reset(EVP_CIPHER_CTX *ctx, int *ready) {
  EVP_CIPHER_CTX_reset(ctx);
  *ready = 0;
  ERR_clear_error();
}

/*
 * AES-256-GCM with OpenSSL, either way: decrypting checks `job->tag` (OpenSSL compares it in
 * constant time at the end), encrypting writes `job->tag_out`. On failure the context is made
 * fresh for next time.
 */
static int openssl_gcm(EVP_CIPHER_CTX *ctx, int *ready, int encrypt, const Job *job) {
  int ok = begin(ctx, ready, encrypt, job);
  int written = 0;
  if (ok && job->length > 0) {
    ok = EVP_CipherUpdate(ctx, job->output, &written, job->input, (int)job->length) == 1 &&
         (size_t)written == job->length;
  }
  if (ok && !encrypt) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, (void *)job->tag) == 1;
  /* GCM writes no bytes at the end. */
  unsigned char last[EVP_MAX_BLOCK_LENGTH];
  if (ok) ok = EVP_CipherFinal_ex(ctx, last, &written) == 1 && written == 0;
  unsigned char tag[TAG_BYTES];
  if (ok && encrypt) ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag) == 1;
  if (!ok) {
    reset(ctx, ready);
    return 0;
  }
  if (encrypt) memcpy(job->tag_out, tag, TAG_BYTES);
  return 1;
}

static napi_value open_with(napi_env env, napi_callback_info info, int vaes) {
  Job job;
  const char *problem = parse(env, info, &job);
  if (problem[0] != '\0') return fail(env, problem);
  State *state = state_of(env);
  if (state == NULL) return fail(env, "not initialised");

  int ok = vaes ? gcm_vaes_open(job.key, job.nonce, job.aad, job.aad_bytes, job.input, job.output, job.length,
                                job.tag)
                : openssl_gcm(state->open, &state->open_ready, 0, &job);
  /* Nothing unauthenticated stays behind. */
  if (!ok) memset(job.output, 0, job.length);
  napi_value result;
  if (napi_get_boolean(env, ok, &result) != napi_ok) return NULL;
  return result;
}

static napi_value seal_with(napi_env env, napi_callback_info info, int vaes) {
  Job job;
  const char *problem = parse(env, info, &job);
  if (problem[0] != '\0') return fail(env, problem);
  State *state = state_of(env);
  if (state == NULL) return fail(env, "not initialised");

  if (vaes) {
    gcm_vaes_seal(job.key, job.nonce, job.aad, job.aad_bytes, job.input, job.output, job.length, job.tag_out);
  } else if (!openssl_gcm(state->seal, &state->seal_ready, 1, &job)) {
    return fail(env, "AES-256-GCM sealing failed in OpenSSL");
  }
  return NULL;
}

/* Decided once per process: the CPU does not change. */
static int vaes_usable(void) {
  static int usable = -1;
  if (usable < 0) usable = gcm_vaes_available();
  return usable;
}

int aesgcm_vaes_usable(void) { return vaes_usable(); }

int aesgcm_open(EVP_CIPHER_CTX *ctx, int *ready, const uint8_t key[32], const uint8_t nonce[12],
                const uint8_t *aad, size_t aad_length, const uint8_t *in, uint8_t *out, size_t length,
                const uint8_t tag[16]) {
  int ok;
  if (ctx == NULL) {
    ok = gcm_vaes_open(key, nonce, aad, aad_length, in, out, length, tag);
  } else {
    Job job = {.aad = aad, .aad_bytes = aad_length, .input = in, .output = out, .length = length};
    memcpy(job.key, key, KEY_BYTES);
    memcpy(job.nonce, nonce, NONCE_BYTES);
    memcpy(job.tag, tag, TAG_BYTES);
    ok = length <= INT_MAX && openssl_gcm(ctx, ready, 0, &job);
  }
  if (!ok) memset(out, 0, length);
  return ok;
}

static napi_value js_open(napi_env env, napi_callback_info info) { return open_with(env, info, vaes_usable()); }
static napi_value js_seal(napi_env env, napi_callback_info info) { return seal_with(env, info, vaes_usable()); }
static napi_value js_open_openssl(napi_env env, napi_callback_info info) { return open_with(env, info, 0); }
static napi_value js_seal_openssl(napi_env env, napi_callback_info info) { return seal_with(env, info, 0); }

NAPI_MODULE_INIT() {
  State *state = calloc(1, sizeof *state);
  if (state == NULL) return fail(env, "out of memory");
  state->open = EVP_CIPHER_CTX_new();
  state->seal = EVP_CIPHER_CTX_new();
  if (state->open == NULL || state->seal == NULL ||
      napi_set_instance_data(env, state, finalize_state, NULL) != napi_ok) {
    EVP_CIPHER_CTX_free(state->open);
    EVP_CIPHER_CTX_free(state->seal);
    free(state);
    return fail(env, "could not set up the cipher contexts");
  }
  napi_value openssl, engine;
  if (napi_create_object(env, &openssl) != napi_ok) return NULL;
  napi_property_descriptor portable[] = {
      {"open", NULL, js_open_openssl, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seal", NULL, js_seal_openssl, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, openssl, 2, portable) != napi_ok) return NULL;
  const char *name = vaes_usable() ? "vaes" : "openssl";
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &engine) != napi_ok) return NULL;
  napi_property_descriptor properties[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seal", NULL, js_seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"engine", NULL, NULL, NULL, NULL, engine, napi_enumerable, NULL},
      {"openssl", NULL, NULL, NULL, NULL, openssl, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, 4, properties) != napi_ok) return NULL;
  if (send_sealed_define(env, exports, openssl) != napi_ok) return NULL;
  return exports;
}
