/*
 * AES-256-GCM with VAES and VPCLMULQDQ on 512-bit registers (x86-64), for CPUs that have them
 * (Intel since Ice Lake, AMD since Zen 4). Node 20's OpenSSL has no code for them, and does
 * about 3.4 GB/s per core here; this does 16 blocks per step: the counter blocks through
 * AES four registers at a time, and GHASH over the same 16 ciphertext blocks with one
 * reduction, multiplied by H^16..H^1.
 *
 * GHASH works in the byte-reversed domain of Intel's carry-less multiplication white paper
 * (Gueron and Kounavis): each block and H are byte-swapped, products are shifted left by one
 * bit to undo the bit reflection, and reduced modulo x^128 + x^7 + x^2 + x + 1. Everything
 * after the four carry-less products is linear, so the products of a step are summed first
 * and reduced once.
 *
 * The caller checks gcm_vaes_available() first; on other CPUs (or other compilers) OpenSSL
 * does the work (native/aesgcm.c). native-gcm.test.ts checks both against node:crypto.
 */
#include "gcm-vaes.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

/* GCC keeps the 4 registers of a step in registers only when these loops are unrolled. */
#define UNROLL _Pragma("GCC unroll 16")
#define TARGET __attribute__((target("aes,pclmul,ssse3,sse4.1,avx2,avx512f,avx512bw,vaes,vpclmulqdq")))

/* AES-256's 15 round keys, and H^1..H^16 in the byte-reversed domain (h[i] = H^(i+1)). */
typedef struct {
  __m128i rk[15];
  __m128i h[16];
} Key;

int gcm_vaes_available(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  const unsigned aes = 1u << 25, pclmul = 1u << 1, osxsave = 1u << 27, ssse3 = 1u << 9, sse41 = 1u << 19;
  if ((c & (aes | pclmul | osxsave | ssse3 | sse41)) != (aes | pclmul | osxsave | ssse3 | sse41)) return 0;
  /* The OS saves the AVX-512 state: XMM, YMM, opmask, upper ZMM halves and ZMM16-31. */
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 0xe6) != 0xe6) return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  const unsigned avx2 = 1u << 5, avx512f = 1u << 16, avx512bw = 1u << 30;
  const unsigned vaes = 1u << 9, vpclmulqdq = 1u << 10;
  return (b & (avx2 | avx512f | avx512bw)) == (avx2 | avx512f | avx512bw) &&
         (c & (vaes | vpclmulqdq)) == (vaes | vpclmulqdq);
}

TARGET static inline __m128i bswap128(__m128i x) {
  return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

TARGET static inline __m512i bswap512(__m512i x) {
  return _mm512_shuffle_epi8(x, _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                                    12, 13, 14, 15)));
}

/* x ^ (x << 32) ^ (x << 64) ^ (x << 96): each word of a round key XORs in the words before it. */
TARGET static inline __m128i prefix_xor(__m128i x) {
  x = _mm_xor_si128(x, _mm_slli_si128(x, 4));
  return _mm_xor_si128(x, _mm_slli_si128(x, 8));
}

/* AES-256's next even round key from the one two before and the assist of the one before
 * (RotWord, SubWord and the round constant, in its top word)... */
TARGET static inline __m128i next_even(__m128i older, __m128i assist) {
  return _mm_xor_si128(prefix_xor(older), _mm_shuffle_epi32(assist, 0xff));
}

/* ... and the next odd one (SubWord alone, in the assist's third word). */
TARGET static inline __m128i next_odd(__m128i older, __m128i assist) {
  return _mm_xor_si128(prefix_xor(older), _mm_shuffle_epi32(assist, 0xaa));
}

TARGET static inline __m128i encrypt_block(const Key *key, __m128i block) {
  block = _mm_xor_si128(block, key->rk[0]);
  for (int round = 1; round < 14; round++) block = _mm_aesenc_si128(block, key->rk[round]);
  return _mm_aesenclast_si128(block, key->rk[14]);
}

/* The 256-bit carry-less product of a and b, as its low, middle (unfolded) and high parts. */
TARGET static inline void multiply(__m128i a, __m128i b, __m128i *low, __m128i *middle, __m128i *high) {
  *low = _mm_clmulepi64_si128(a, b, 0x00);
  *middle = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01));
  *high = _mm_clmulepi64_si128(a, b, 0x11);
}

/* Folds the middle into low and high, shifts the 256 bits left by one, and reduces. */
TARGET static inline __m128i reduce(__m128i low, __m128i middle, __m128i high) {
  low = _mm_xor_si128(low, _mm_slli_si128(middle, 8));
  high = _mm_xor_si128(high, _mm_srli_si128(middle, 8));

  __m128i low_carry = _mm_srli_epi32(low, 31);
  __m128i high_carry = _mm_srli_epi32(high, 31);
  low = _mm_slli_epi32(low, 1);
  high = _mm_slli_epi32(high, 1);
  __m128i across = _mm_srli_si128(low_carry, 12);
  high = _mm_or_si128(high, _mm_slli_si128(high_carry, 4));
  high = _mm_or_si128(high, across);
  low = _mm_or_si128(low, _mm_slli_si128(low_carry, 4));

  __m128i t = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(low, 31), _mm_slli_epi32(low, 30)),
                            _mm_slli_epi32(low, 25));
  __m128i carried = _mm_srli_si128(t, 4);
  low = _mm_xor_si128(low, _mm_slli_si128(t, 12));
  __m128i u = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(low, 1), _mm_srli_epi32(low, 2)),
                            _mm_srli_epi32(low, 7));
  u = _mm_xor_si128(u, carried);
  low = _mm_xor_si128(low, u);
  return _mm_xor_si128(high, low);
}

TARGET static inline __m128i gf_multiply(__m128i a, __m128i b) {
  __m128i low, middle, high;
  multiply(a, b, &low, &middle, &high);
  return reduce(low, middle, high);
}

TARGET static void expand(Key *key, const uint8_t bytes[32]) {
  __m128i *rk = key->rk;
  rk[0] = _mm_loadu_si128((const __m128i *)bytes);
  rk[1] = _mm_loadu_si128((const __m128i *)(bytes + 16));
#define ROUND_PAIR(i, rcon)                                                  \
  rk[i] = next_even(rk[i - 2], _mm_aeskeygenassist_si128(rk[i - 1], rcon)); \
  rk[i + 1] = next_odd(rk[i - 1], _mm_aeskeygenassist_si128(rk[i], 0));
  ROUND_PAIR(2, 0x01)
  ROUND_PAIR(4, 0x02)
  ROUND_PAIR(6, 0x04)
  ROUND_PAIR(8, 0x08)
  ROUND_PAIR(10, 0x10)
  ROUND_PAIR(12, 0x20)
  rk[14] = next_even(rk[12], _mm_aeskeygenassist_si128(rk[13], 0x40));
#undef ROUND_PAIR

  __m128i h = bswap128(encrypt_block(key, _mm_setzero_si128()));
  key->h[0] = h;
  for (int i = 1; i < 16; i++) key->h[i] = gf_multiply(key->h[i - 1], h);
}

/* GHASH over whole and partial 16-byte blocks, one at a time (associated data, tails). */
TARGET static __m128i ghash_bytes(const Key *key, __m128i y, const uint8_t *bytes, size_t length) {
  while (length >= 16) {
    y = gf_multiply(_mm_xor_si128(y, bswap128(_mm_loadu_si128((const __m128i *)bytes))), key->h[0]);
    bytes += 16;
    length -= 16;
  }
  if (length > 0) {
    uint8_t block[16] = {0};
    memcpy(block, bytes, length);
    y = gf_multiply(_mm_xor_si128(y, bswap128(_mm_loadu_si128((const __m128i *)block))), key->h[0]);
  }
  return y;
}

/* XOR of the four 128-bit lanes. */
TARGET static inline __m128i fold_lanes(__m512i x) {
  __m256i half = _mm256_xor_si256(_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64(x, 1));
  return _mm_xor_si128(_mm256_castsi256_si128(half), _mm256_extracti128_si256(half, 1));
}

/*
 * Encrypts (or decrypts) `length` bytes from `in` to `out` (the same bytes or apart) and
 * returns GHASH over the ciphertext, continuing from `y`. The counter block J0 is nonce | 1;
 * data starts at counter 2, and the counter's low 32 bits wrap as GCM's inc32 does.
 */
TARGET static __m128i ctr_ghash(const Key *key, __m128i j0, __m128i y, const uint8_t *in, uint8_t *out,
                                size_t length, int encrypt) {
  /* Counter blocks are kept byte-swapped, so the 32-bit counter is the lowest dword of a lane. */
  const __m512i four = _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);
  __m512i counters[4];
  counters[0] = _mm512_add_epi32(_mm512_broadcast_i32x4(bswap128(j0)),
                                 _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1));
  for (int r = 1; r < 4; r++) counters[r] = _mm512_add_epi32(counters[r - 1], four);

  if (length >= 256) {
    const __m512i sixteen = _mm512_set_epi32(0, 0, 0, 16, 0, 0, 0, 16, 0, 0, 0, 16, 0, 0, 0, 16);
    __m512i rk[15];
    for (int i = 0; i < 15; i++) rk[i] = _mm512_broadcast_i32x4(key->rk[i]);
    /* Lanes of powers: the first register's blocks are multiplied by H^16..H^13, the last's by H^4..H^1. */
    __m512i powers[4];
    for (int r = 0; r < 4; r++) {
      __m512i lanes = _mm512_castsi128_si512(key->h[15 - 4 * r]);
      lanes = _mm512_inserti32x4(lanes, key->h[14 - 4 * r], 1);
      lanes = _mm512_inserti32x4(lanes, key->h[13 - 4 * r], 2);
      powers[r] = _mm512_inserti32x4(lanes, key->h[12 - 4 * r], 3);
    }

    for (; length >= 256; length -= 256, in += 256, out += 256) {
      __m512i block[4], text[4];
      UNROLL for (int r = 0; r < 4; r++) {
        block[r] = _mm512_xor_si512(bswap512(counters[r]), rk[0]);
        counters[r] = _mm512_add_epi32(counters[r], sixteen);
        text[r] = _mm512_loadu_si512((const void *)(in + 64 * r));
      }
      UNROLL for (int round = 1; round < 14; round++)
        UNROLL for (int r = 0; r < 4; r++) block[r] = _mm512_aesenc_epi128(block[r], rk[round]);
      UNROLL for (int r = 0; r < 4; r++) {
        block[r] = _mm512_xor_si512(_mm512_aesenclast_epi128(block[r], rk[14]), text[r]);
        _mm512_storeu_si512((void *)(out + 64 * r), block[r]);
      }

      /* GHASH over the 16 ciphertext blocks: (y ^ C0)·H^16 ^ C1·H^15 ^ … ^ C15·H, reduced once. */
      __m512i x = _mm512_xor_si512(bswap512(encrypt ? block[0] : text[0]), _mm512_zextsi128_si512(y));
      __m512i low = _mm512_clmulepi64_epi128(x, powers[0], 0x00);
      __m512i high = _mm512_clmulepi64_epi128(x, powers[0], 0x11);
      __m512i middle = _mm512_xor_si512(_mm512_clmulepi64_epi128(x, powers[0], 0x10),
                                        _mm512_clmulepi64_epi128(x, powers[0], 0x01));
      UNROLL for (int r = 1; r < 4; r++) {
        x = bswap512(encrypt ? block[r] : text[r]);
        low = _mm512_xor_si512(low, _mm512_clmulepi64_epi128(x, powers[r], 0x00));
        high = _mm512_xor_si512(high, _mm512_clmulepi64_epi128(x, powers[r], 0x11));
        middle = _mm512_xor_si512(middle, _mm512_xor_si512(_mm512_clmulepi64_epi128(x, powers[r], 0x10),
                                                           _mm512_clmulepi64_epi128(x, powers[r], 0x01)));
      }
      y = reduce(fold_lanes(low), fold_lanes(middle), fold_lanes(high));
    }
  }

  /* What is left, a block at a time; the counter in the first lane is the next one. */
  __m128i counter = _mm512_castsi512_si128(counters[0]);
  const __m128i one = _mm_set_epi32(0, 0, 0, 1);
  while (length > 0) {
    size_t take = length < 16 ? length : 16;
    uint8_t text[16] = {0}, result[16];
    memcpy(text, in, take);
    __m128i stream = encrypt_block(key, bswap128(counter));
    counter = _mm_add_epi32(counter, one);
    _mm_storeu_si128((__m128i *)result, _mm_xor_si128(stream, _mm_loadu_si128((const __m128i *)text)));
    memset(result + take, 0, 16 - take);
    memcpy(out, result, take);
    y = ghash_bytes(key, y, encrypt ? result : text, take);
    in += take;
    out += take;
    length -= take;
  }
  return y;
}

TARGET static void run(const uint8_t key_bytes[32], const uint8_t nonce[12], const uint8_t *aad,
                       size_t aad_length, const uint8_t *in, uint8_t *out, size_t length, uint8_t tag[16],
                       int encrypt) {
  Key key;
  expand(&key, key_bytes);
  uint8_t j0_bytes[16] = {0};
  memcpy(j0_bytes, nonce, 12);
  j0_bytes[15] = 1;
  __m128i j0 = _mm_loadu_si128((const __m128i *)j0_bytes);

  __m128i y = ghash_bytes(&key, _mm_setzero_si128(), aad, aad_length);
  y = ctr_ghash(&key, j0, y, in, out, length, encrypt);
  /* The lengths block, len(A) | len(C) in bits, big-endian; byte-swapped, C's length is the low half. */
  __m128i lengths = _mm_set_epi64x((long long)(aad_length * 8), (long long)(length * 8));
  y = gf_multiply(_mm_xor_si128(y, lengths), key.h[0]);
  _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(encrypt_block(&key, j0), bswap128(y)));

  /* No key material stays on the stack. */
  volatile uint8_t *wipe = (volatile uint8_t *)&key;
  for (size_t i = 0; i < sizeof key; i++) wipe[i] = 0;
}

void gcm_vaes_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_length,
                   const uint8_t *in, uint8_t *out, size_t length, uint8_t tag[16]) {
  run(key, nonce, aad, aad_length, in, out, length, tag, 1);
}

int gcm_vaes_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_length,
                  const uint8_t *in, uint8_t *out, size_t length, const uint8_t tag[16]) {
  uint8_t computed[16];
  run(key, nonce, aad, aad_length, in, out, length, computed, 0);
  uint8_t difference = 0;
  for (int i = 0; i < 16; i++) difference |= computed[i] ^ tag[i];
  return difference == 0;
}

#else

int gcm_vaes_available(void) { return 0; }

void gcm_vaes_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_length,
                   const uint8_t *in, uint8_t *out, size_t length, uint8_t tag[16]) {
  (void)key, (void)nonce, (void)aad, (void)aad_length, (void)in, (void)out, (void)length, (void)tag;
}

int gcm_vaes_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *aad, size_t aad_length,
                  const uint8_t *in, uint8_t *out, size_t length, const uint8_t tag[16]) {
  (void)key, (void)nonce, (void)aad, (void)aad_length, (void)in, (void)out, (void)length, (void)tag;
  return 0;
}

#endif
