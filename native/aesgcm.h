/* What native/aesgcm.c shares with the other files of the addon. */
#ifndef WHARF_AESGCM_H
#define WHARF_AESGCM_H

#include <node_api.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

/* Whether this process opens and seals with native/gcm-vaes.c rather than OpenSSL. */
int aesgcm_vaes_usable(void);

/*
 * Decrypts `length` bytes from `in` to `out` (the same bytes, or apart) and returns whether
 * `tag` authenticates them: with native/gcm-vaes.c when `ctx` is NULL (only where
 * aesgcm_vaes_usable()), otherwise with OpenSSL through `ctx` (one per thread; `*ready` starts
 * at 0 and is the context's own). On 0 `out` is zeroed.
 */
int aesgcm_open(EVP_CIPHER_CTX *ctx, int *ready, const uint8_t key[32], const uint8_t nonce[12],
                const uint8_t *aad, size_t aad_length, const uint8_t *in, uint8_t *out, size_t length,
                const uint8_t tag[16]);

/*
 * Adds sendSealed and cancelSend (native/send-sealed.c) to `exports`, and to `openssl` a
 * sendSealed that always opens with OpenSSL.
 */
napi_status send_sealed_define(napi_env env, napi_value exports, napi_value openssl);

#endif
