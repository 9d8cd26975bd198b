/* AES-256-GCM with VAES and VPCLMULQDQ (native/gcm-vaes.c); 12-byte nonces only. */
#ifndef WHARF_GCM_VAES_H
#define WHARF_GCM_VAES_H

#include <stddef.h>
#include <stdint.h>

/* Whether this CPU and OS run the code below; nothing else may be called unless they do. */
int gcm_vaes_available(void);

/* Encrypts `length` bytes from `in` to `out` (the same bytes, or apart) and writes the tag. */
void gcm_vaes_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_length,
                   const uint8_t *in, uint8_t *out, size_t length, uint8_t tag[16]);

/*
 * Decrypts `length` bytes from `in` to `out` and returns whether `tag` authenticates them.
 * The output is written either way: the caller must not use it (and should clear it) on 0.
 */
int gcm_vaes_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_length,
                  const uint8_t *in, uint8_t *out, size_t length, const uint8_t tag[16]);

#endif
