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
 * The softmax cross-entropy between them runs in JavaScript (fused-xent.ts's softmaxXentRows,
 * the same code the unfused path runs), so this file needs no libm.
 *
 * Only plain SIMD128: relaxed SIMD's fused multiply-add is not on by default in Node 20, and
 * where it is its rounding may differ by machine. Every product is rounded before its sum, as
 * tfjs's kernels do, and the build passes -ffp-contract=off so clang never fuses them.
 *
 * Memory: the caller (TypeScript) lays out every buffer with fd_alloc and passes pointers.
 */
#include <stdint.h>
#include <wasm_simd128.h>

/* clang may turn a zeroing loop into a call to memset; without libc it is defined here. */
__attribute__((no_builtin("memset"))) void *memset(void *dst, int value, unsigned long len) {
  unsigned char *p = dst;
  while (len--) *p++ = (unsigned char)value;
  return dst;
}

extern unsigned char __heap_base;
static uintptr_t heap_top = 0;

/* Bump allocator: 16-byte aligned blocks that live as long as the module. */
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

/* Frees everything fd_alloc handed out (a runner that reloads lays its buffers out again). */
__attribute__((export_name("fd_reset"))) void fd_reset(void) { heap_top = 0; }

static inline float hsum(v128_t v) {
  /* (l0 + l1) + (l2 + l3): a fixed order, so the result does not depend on the engine. */
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
         (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

/*
 * Forward for rows [i, i + R) and classes [j0, j0 + G): R * G accumulators of 4 lanes each,
 * so each load of x is used G times and each load of wt R times. R and G are constants at
 * every call site; clang unrolls the loops and keeps the accumulators in registers.
 */
static inline __attribute__((always_inline)) void forward_block(const float *x, const float *wt,
                                                                const float *b, float *z, int i,
                                                                int j0, int d, int k, const int R,
                                                                const int G) {
  v128_t acc[2][5];
  for (int r = 0; r < R; r++)
    for (int g = 0; g < G; g++) acc[r][g] = wasm_f32x4_splat(0.0f);
  const int d4 = d & ~3;
  for (int c = 0; c < d4; c += 4) {
    v128_t xv[2];
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
      z[(int64_t)(i + r) * k + j0 + g] = (hsum(acc[r][g]) + tail) + b[j0 + g];
    }
}

/* z (n x k) = x (n x d) * wt^T + b. */
__attribute__((export_name("fd_forward"))) void fd_forward(const float *x, int n, int d,
                                                           const float *wt, const float *b, int k,
                                                           float *z) {
  int i = 0;
  for (; i + 2 <= n; i += 2) {
    int j = 0;
    for (; j + 5 <= k; j += 5) forward_block(x, wt, b, z, i, j, d, k, 2, 5);
    for (; j < k; j++) forward_block(x, wt, b, z, i, j, d, k, 2, 1);
  }
  for (; i < n; i++) {
    int j = 0;
    for (; j + 5 <= k; j += 5) forward_block(x, wt, b, z, i, j, d, k, 1, 5);
    for (; j < k; j++) forward_block(x, wt, b, z, i, j, d, k, 1, 1);
  }
}

/*
 * Weight gradient for columns [c, c + 4 * V) and classes [j0, j0 + G): V * G accumulators,
 * summed over every row in order, then stored (no read-modify-write of gw).
 */
static inline __attribute__((always_inline)) void backward_block(const float *x, int n, int d,
                                                                 const float *dy, int k, float *gw,
                                                                 int c, int j0, const int V,
                                                                 const int G) {
  v128_t acc[2][5];
  for (int v = 0; v < V; v++)
    for (int g = 0; g < G; g++) acc[v][g] = wasm_f32x4_splat(0.0f);
  for (int i = 0; i < n; i++) {
    v128_t xv[2];
    for (int v = 0; v < V; v++) xv[v] = wasm_v128_load(x + (int64_t)i * d + c + 4 * v);
    for (int g = 0; g < G; g++) {
      v128_t s = wasm_v128_load32_splat(dy + (int64_t)i * k + j0 + g);
      for (int v = 0; v < V; v++) acc[v][g] = wasm_f32x4_add(acc[v][g], wasm_f32x4_mul(xv[v], s));
    }
  }
  for (int v = 0; v < V; v++)
    for (int g = 0; g < G; g++) wasm_v128_store(gw + (int64_t)(j0 + g) * d + c + 4 * v, acc[v][g]);
}

/*
 * dy (n x k) is scaled in place by `scale` first (1/n for a mean loss: the gradient tfjs
 * takes through tf.mean), then gw (k x d) = dy^T x and gb = column sums of dy.
 */
__attribute__((export_name("fd_backward"))) void fd_backward(const float *x, int n, int d,
                                                             float *dy, int k, float scale,
                                                             float *gw, float *gb) {
  for (int t = 0; t < n * k; t++) dy[t] = dy[t] * scale;
  const int d4 = d & ~3;
  int c = 0;
  for (; c + 8 <= d4; c += 8) {
    int j = 0;
    for (; j + 5 <= k; j += 5) backward_block(x, n, d, dy, k, gw, c, j, 2, 5);
    for (; j < k; j++) backward_block(x, n, d, dy, k, gw, c, j, 2, 1);
  }
  for (; c < d4; c += 4) {
    int j = 0;
    for (; j + 5 <= k; j += 5) backward_block(x, n, d, dy, k, gw, c, j, 1, 5);
    for (; j < k; j++) backward_block(x, n, d, dy, k, gw, c, j, 1, 1);
  }
  for (; c < d; c++)
    for (int j = 0; j < k; j++) {
      float s = 0.0f;
      for (int i = 0; i < n; i++) s += dy[i * k + j] * x[(int64_t)i * d + c];
      gw[(int64_t)j * d + c] = s;
    }
  for (int j = 0; j < k; j++) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += dy[i * k + j];
    gb[j] = s;
  }
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
