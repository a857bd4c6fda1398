/*
 * The arithmetic of one fused dense training step (src/backend/fused-dense.ts), in WebAssembly
 * SIMD. Built by `npm run build:wasm` (scripts/build-wasm.mjs) into
 * src/backend/fused-dense-wasm.ts, which embeds the module so nothing is fetched at run time.
 *
 * A linear layer z = x W + b with x: n x d (row-major, one image per row), W: d x k, b: k.
 * The weights are kept transposed here, wt = W^T (k x d), so that both products walk the long
 * axis d with contiguous 4-float loads:
 *
 *   forward   z[i, j]  = b[j] + sum_d x[i, d] * wt[j, d]     (dot products along d)
 *   backward  gw[j, d] = sum_i dy[i, j] * x[i, d]             (axpy along d, summed over rows)
 *             gb[j]    = sum_i dy[i, j]
 *
 * with the softmax cross-entropy between them, block by block of rows (BLOCK). There is no
 * libm: exp is written out below, and the one log per row is taken by the caller.
 *
 * Only plain SIMD128: relaxed SIMD's fused multiply-add is not on by default in Node 20, and
 * where it is its rounding may differ by machine. Every product is rounded before its sum, as
 * tfjs's kernels do, and the build passes -ffp-contract=off so clang never fuses them.
 *
 * Memory: the caller (TypeScript) lays out every buffer with fd_alloc and passes pointers.
 */
#include <stdint.h>
#include <wasm_simd128.h>

/* clang may still emit a call to memset to zero an aggregate; without libc it is defined here. */
__attribute__((no_builtin("memset"))) void *memset(void *dst, int value, unsigned long len) {
  unsigned char *p = dst;
  while (len--) *p++ = (unsigned char)value;
  return dst;
}

extern unsigned char __heap_base;
static uintptr_t heap_top = 0;

/*
 * Bump allocator: 16-byte aligned blocks that live as long as the instance (each runner has
 * its own instance, and lays its buffers out once).
 */
__attribute__((export_name("fd_alloc"))) void *fd_alloc(uint32_t bytes) {
  if (heap_top == 0) heap_top = (uintptr_t)&__heap_base;
  heap_top = (heap_top + 15u) & ~(uintptr_t)15u;
  uintptr_t start = heap_top;
  uintptr_t end = start + bytes;
  uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
  if (end > have) {
    uintptr_t pages = (end - have + 65535u) / 65536u;
    if (__builtin_wasm_memory_grow(0, pages) == (uintptr_t)-1) return 0;
  }
  heap_top = end;
  return (void *)start;
}

static inline float hsum(v128_t v) {
  /* (l0 + l1) + (l2 + l3): a fixed order, so the result does not depend on the engine. */
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
         (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

/*
 * Forward for rows [i, i + R) and classes [j0, j0 + G): R * G accumulators of 4 lanes each,
 * so each load of x is used G times and each load of wt R times. R and G are constants at
 * every call site; clang unrolls the loops. 4 rows by 5 classes measured fastest here (2 by 5,
 * 3 by 5 and 1 by 10 were 3 to 10% slower a step), though 20 accumulators exceed x86's 16
 * vector registers.
 * z = (x . wt) / div + b: div is 255 when x holds raw pixel bytes (see fd_step_bytes), else 1.
 */
static inline __attribute__((always_inline)) void forward_block(const float *x, const float *wt,
                                                                const float *b, float *z, int i,
                                                                int j0, int d, int k, float div,
                                                                const int R, const int G) {
  v128_t acc[4][5];
  for (int r = 0; r < R; r++)
    for (int g = 0; g < G; g++) acc[r][g] = wasm_f32x4_splat(0.0f);
  const int d4 = d & ~3;
  for (int c = 0; c < d4; c += 4) {
    v128_t xv[4];
    for (int r = 0; r < R; r++) xv[r] = wasm_v128_load(x + (int64_t)(i + r) * d + c);
    for (int g = 0; g < G; g++) {
      v128_t w = wasm_v128_load(wt + (int64_t)(j0 + g) * d + c);
      for (int r = 0; r < R; r++) acc[r][g] = wasm_f32x4_add(acc[r][g], wasm_f32x4_mul(xv[r], w));
    }
  }
  for (int r = 0; r < R; r++)
    for (int g = 0; g < G; g++) {
      const float *xr = x + (int64_t)(i + r) * d;
      const float *wr = wt + (int64_t)(j0 + g) * d;
      float tail = 0.0f;
      for (int c = d4; c < d; c++) tail += xr[c] * wr[c];
      z[(int64_t)(i + r) * k + j0 + g] = (hsum(acc[r][g]) + tail) / div + b[j0 + g];
    }
}

/* z (n x k) = (x (n x d) . wt^T) / div + b. */
static void forward(const float *x, int n, int d, const float *wt, const float *b, int k, float div,
                    float *z) {
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    int j = 0;
    for (; j + 5 <= k; j += 5) forward_block(x, wt, b, z, i, j, d, k, div, 4, 5);
    for (; j < k; j++) forward_block(x, wt, b, z, i, j, d, k, div, 4, 1);
  }
  for (; i < n; i++) {
    int j = 0;
    for (; j + 5 <= k; j += 5) forward_block(x, wt, b, z, i, j, d, k, div, 1, 5);
    for (; j < k; j++) forward_block(x, wt, b, z, i, j, d, k, div, 1, 1);
  }
}

/*
 * Weight gradient for columns [c, c + 4 * V) and classes [j0, j0 + G): V * G accumulators
 * start from gw, take every row of the block in order, and are stored back. Used with 3
 * vectors (12 columns) by 5 classes, measured best among 1 to 4 vectors.
 */
static inline __attribute__((always_inline)) void backward_block(const float *x, int n, int d,
                                                                 const float *dy, int k, float *gw,
                                                                 int c, int j0, const int V,
                                                                 const int G) {
  v128_t acc[3][5];
  for (int v = 0; v < V; v++)
    for (int g = 0; g < G; g++) acc[v][g] = wasm_v128_load(gw + (int64_t)(j0 + g) * d + c + 4 * v);
  for (int i = 0; i < n; i++) {
    v128_t xv[3];
    for (int v = 0; v < V; v++) xv[v] = wasm_v128_load(x + (int64_t)i * d + c + 4 * v);
    for (int g = 0; g < G; g++) {
      v128_t s = wasm_v128_load32_splat(dy + (int64_t)i * k + j0 + g);
      for (int v = 0; v < V; v++) acc[v][g] = wasm_f32x4_add(acc[v][g], wasm_f32x4_mul(xv[v], s));
    }
  }
  for (int v = 0; v < V; v++)
    for (int g = 0; g < G; g++) wasm_v128_store(gw + (int64_t)(j0 + g) * d + c + 4 * v, acc[v][g]);
}

/* gw (k x d) += dy^T x for the n rows of x (n x d). */
static void backward(const float *x, int n, int d, const float *dy, int k, float *gw) {
  const int d4 = d & ~3;
  int c = 0;
  for (; c + 12 <= d4; c += 12) {
    int j = 0;
    for (; j + 5 <= k; j += 5) backward_block(x, n, d, dy, k, gw, c, j, 3, 5);
    for (; j < k; j++) backward_block(x, n, d, dy, k, gw, c, j, 3, 1);
  }
  for (; c < d4; c += 4) {
    int j = 0;
    for (; j + 5 <= k; j += 5) backward_block(x, n, d, dy, k, gw, c, j, 1, 5);
    for (; j < k; j++) backward_block(x, n, d, dy, k, gw, c, j, 1, 1);
  }
  for (; c < d; c++)
    for (int j = 0; j < k; j++) {
      float s = gw[(int64_t)j * d + c];
      for (int i = 0; i < n; i++) s += dy[i * k + j] * x[(int64_t)i * d + c];
      gw[(int64_t)j * d + c] = s;
    }
}

/*
 * exp(x) for x <= 0 in float (Cephes' expf: x = m ln2 + r, |r| <= ln2 / 2, a degree-5
 * polynomial for e^r, then 2^m through the exponent bits): within 2 ulp. Below -87.3 the
 * result would be subnormal and is 0; NaN stays NaN, so a diverged run is still seen as one.
 */
static inline float exp_nonpositive(float x) {
  if (!(x >= -87.3f)) return x != x ? x : 0.0f;
  float m = __builtin_nearbyintf(x * 1.44269504088896341f);
  float r = x - m * 0.693359375f;
  r = r - m * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = (p * (r * r) + r) + 1.0f;
  union {
    uint32_t u;
    float f;
  } scale = {.u = (uint32_t)((int)m + 127) << 23};
  return e * scale.f;
}

/*
 * Softmax cross-entropy of r rows of logits z against targets t = `on` at the label and `off`
 * elsewhere (label smoothing: on = 1 - eps + eps / k, off = eps / k). Writes
 *   dy  = (softmax(z) - t) * scale          (the loss gradient; scale = 1/n for a mean loss)
 *   dyw = dy / div                          (the weight gradient's factor, see fd_step_bytes)
 *   stats[3i..3i+2] = max_j z, sum_j exp(z - max), sum_j t_j z_j
 * from which the caller takes the loss, log(sum) + max - sum_j t_j z_j, in double. Returns how
 * many rows' first arg-max is the label, as the unfused kernel counts them.
 */
static int xent_rows(const float *z, const int32_t *labels, int r, int k, float on, float off,
                     float scale, float div, float *dy, float *dyw, float *stats) {
  int correct = 0;
  for (int i = 0; i < r; i++) {
    const float *zr = z + i * k;
    float *g = dy + i * k;
    float max = -__builtin_inff();
    int arg = 0;
    for (int j = 0; j < k; j++)
      if (zr[j] > max) {
        max = zr[j];
        arg = j;
      }
    float sum = 0.0f;
    for (int j = 0; j < k; j++) {
      float e = exp_nonpositive(zr[j] - max);
      g[j] = e;
      sum += e;
    }
    const int label = labels[i];
    float tz = 0.0f;
    for (int j = 0; j < k; j++) {
      float t = j == label ? on : off;
      tz += t * zr[j];
      float grad = (g[j] / sum - t) * scale;
      g[j] = grad;
      dyw[i * k + j] = grad / div;
    }
    stats[3 * i] = max;
    stats[3 * i + 1] = sum;
    stats[3 * i + 2] = tz;
    if (arg == label) correct++;
  }
  return correct;
}

/*
 * Pixel bytes to floats 0..255 (exact), 16 at a time: each byte is widened to a 32-bit lane
 * and written into the low mantissa bits of 2^23 (bit pattern 0x4B000000 | b is the float
 * 2^23 + b), then 2^23 is subtracted. Written as conversion instructions instead, clang
 * turned them into sixteen scalar conversions per vector, which cost more than the products.
 */
static inline v128_t bytes_as_floats(v128_t lanes) {
  return wasm_f32x4_sub(wasm_v128_or(lanes, wasm_i32x4_splat(0x4B000000)), wasm_f32x4_splat(8388608.0f));
}

static void bytes_to_floats(const uint8_t *src, float *dst, int d) {
  int c = 0;
  for (; c + 16 <= d; c += 16) {
    v128_t v = wasm_v128_load(src + c);
    v128_t lo = wasm_u16x8_extend_low_u8x16(v);
    v128_t hi = wasm_u16x8_extend_high_u8x16(v);
    wasm_v128_store(dst + c, bytes_as_floats(wasm_u32x4_extend_low_u16x8(lo)));
    wasm_v128_store(dst + c + 4, bytes_as_floats(wasm_u32x4_extend_high_u16x8(lo)));
    wasm_v128_store(dst + c + 8, bytes_as_floats(wasm_u32x4_extend_low_u16x8(hi)));
    wasm_v128_store(dst + c + 12, bytes_as_floats(wasm_u32x4_extend_high_u16x8(hi)));
  }
  for (; c < d; c++) dst[c] = (float)src[c];
}

/*
 * Rows per block. A step runs block by block (forward, loss, backward), so the block's 8
 * rows of x (25 KB at 784 columns) are read by both products while they sit in the L1 cache,
 * instead of the whole batch (800 KB) streaming through twice.
 */
#define BLOCK 8

/* The caller sizes its per-block scratch (z, dy, dyw: BLOCK * k floats; xb: BLOCK * d) by it. */
__attribute__((export_name("fd_block"))) int fd_block(void) { return BLOCK; }

/* Zeroes the gradient [gw | gb] before a step accumulates into it. */
static void zero(float *p, int len) {
  for (int t = 0; t < len; t++) p[t] = 0.0f;
}

/* One block's loss and gradients from its rows `xb`; gb takes the column sums of dy. */
static int block_step(const float *xb, int r, int d, const int32_t *labels, int k, const float *wt,
                      const float *b, float div, float on, float off, float scale, float *gw,
                      float *gb, float *z, float *dy, float *dyw, float *stats) {
  forward(xb, r, d, wt, b, k, div, z);
  int correct = xent_rows(z, labels, r, k, on, off, scale, div, dy, dyw, stats);
  backward(xb, r, d, dyw, k, gw);
  for (int i = 0; i < r; i++)
    for (int j = 0; j < k; j++) gb[j] += dy[i * k + j];
  return correct;
}

/*
 * The loss and gradients of one batch of n float rows x (n x d): gw (k x d) = dy^T x,
 * gb = column sums of dy, per-row loss statistics in stats (3 per row, see xent_rows).
 * Returns the correct count. z, dy and dyw are scratch of BLOCK * k floats each.
 */
__attribute__((export_name("fd_step_floats"))) int fd_step_floats(
    const float *x, const int32_t *labels, int n, int d, int k, const float *wt, const float *b,
    float on, float off, float scale, float *gw, float *gb, float *z, float *dy, float *dyw,
    float *stats) {
  zero(gw, k * d);
  zero(gb, k);
  int correct = 0;
  for (int i0 = 0; i0 < n; i0 += BLOCK) {
    int r = n - i0 < BLOCK ? n - i0 : BLOCK;
    correct += block_step(x + (int64_t)i0 * d, r, d, labels + i0, k, wt, b, 1.0f, on, off, scale,
                          gw, gb, z, dy, dyw, stats + 3 * i0);
  }
  return correct;
}

/*
 * The same for pixel bytes read in place: row rows[i] of `images` (N x d bytes) is the batch's
 * row i. Each block's rows are widened to floats 0..255 in xb (BLOCK * d floats) and the
 * scaling to [0, 1] is folded into the arithmetic: z = (x . wt) / 255 + b and
 * gw += (dy / 255)^T x, which is the same mathematics as scaling every pixel first, with one
 * division per logit and per gradient entry instead of one per pixel.
 */
/*
 * Reads one byte of every cache line of rows [from, to): wasm has no prefetch instruction,
 * and the rows are scattered over the whole data set, so each costs cache and TLB misses.
 * Touched one block ahead, those misses overlap the current block's arithmetic instead of
 * stalling the conversion of the next block.
 */
static uint32_t touch(const uint8_t *images, const uint32_t *rows, int from, int to, int d) {
  uint32_t sum = 0;
  for (int i = from; i < to; i++) {
    const uint8_t *row = images + (int64_t)rows[i] * d;
    for (int c = 0; c < d; c += 64) sum += row[c];
    sum += row[d - 1];
  }
  return sum;
}

/* Where the touched bytes go, so the compiler keeps the loads. */
static volatile uint32_t touched_sink;

__attribute__((export_name("fd_step_bytes"))) int fd_step_bytes(
    const uint8_t *images, const uint32_t *rows, const int32_t *labels, int n, int d, int k,
    const float *wt, const float *b, float on, float off, float scale, float *gw, float *gb,
    float *xb, float *z, float *dy, float *dyw, float *stats) {
  zero(gw, k * d);
  zero(gb, k);
  int correct = 0;
  uint32_t touched = touch(images, rows, 0, n < BLOCK ? n : BLOCK, d);
  for (int i0 = 0; i0 < n; i0 += BLOCK) {
    int r = n - i0 < BLOCK ? n - i0 : BLOCK;
    int next = i0 + BLOCK + BLOCK < n ? i0 + BLOCK + BLOCK : n;
    touched += touch(images, rows, i0 + BLOCK, next, d);
    for (int i = 0; i < r; i++)
      bytes_to_floats(images + (int64_t)rows[i0 + i] * d, xb + (int64_t)i * d, d);
    correct += block_step(xb, r, d, labels + i0, k, wt, b, 255.0f, on, off, scale, gw, gb, z, dy,
                          dyw, stats + 3 * i0);
  }
  touched_sink = touched;
  return correct;
}

/*
 * SGD as core/optim/optimizers.ts writes it, element by element, each operation rounded to
 * float as tfjs's elementwise kernels round it:
 *   g = grad + p * wd (first `decayed` elements: the weight matrix, not the bias)
 *   buf = buf * mu + g;  step = nesterov ? g + buf * mu : buf;  p = p - step * lr
 */
__attribute__((export_name("fd_sgd"))) void fd_sgd(float *p, const float *grad, float *buf,
                                                   int len, int decayed, float lr, float mu,
                                                   int nesterov, float wd) {
  for (int t = 0; t < len; t++) {
    float g = grad[t];
    if (wd > 0.0f && t < decayed) g = g + p[t] * wd;
    float step = g;
    if (mu > 0.0f) {
      float bt = buf[t] * mu + g;
      buf[t] = bt;
      step = nesterov ? g + bt * mu : bt;
    }
    p[t] = p[t] - step * lr;
  }
}

/*
 * Adam and AdamW as core/optim/optimizers.ts writes them (c1 = 1 - b1^t, c2 = 1 - b2^t):
 *   adam:  g = grad + p * wd;   base = p
 *   adamw: g = grad;            base = p * (1 - lr * wd)        (decayed elements only)
 *   m = m * b1 + g * (1 - b1);  v = v * b2 + g^2 * (1 - b2)
 *   p = base - ((m / c1) / (sqrt(v / c2) + eps)) * lr
 * The float constants (1 - b1, 1 - lr * wd, ...) are computed in double by the caller and
 * rounded once, as tfjs rounds a JavaScript number into a scalar tensor.
 */
__attribute__((export_name("fd_adam"))) void fd_adam(float *p, const float *grad, float *m,
                                                     float *v, int len, int decayed, float lr,
                                                     float b1, float one_b1, float b2,
                                                     float one_b2, float c1, float c2, float eps,
                                                     float wd, int decoupled, float keep) {
  for (int t = 0; t < len; t++) {
    float g = grad[t];
    float base = p[t];
    if (wd > 0.0f && t < decayed) {
      if (decoupled)
        base = p[t] * keep;
      else
        g = g + p[t] * wd;
    }
    float mt = m[t] * b1 + g * one_b1;
    float vt = v[t] * b2 + (g * g) * one_b2;
    m[t] = mt;
    v[t] = vt;
    float update = (mt / c1) / (__builtin_sqrtf(vt / c2) + eps);
    p[t] = base - update * lr;
  }
}
