/*
 * Kernels that work on tfjs-backend-wasm's own heap (src/backend/heap-kernels.ts), in
 * WebAssembly SIMD. Built by `npm run build:wasm` (scripts/build-wasm.mjs) into
 * src/backend/heap-kernels-wasm.ts.
 *
 * 1. 3x3 stride-1 convolutions by Winograd's minimal filtering, F(2x2, 3x3): the forward pass
 *    (and through it the input gradient, src/backend/conv3x3.ts) and the filter gradient, plus
 *    a direct filter gradient for layers with few input channels.
 * 2. The gradient of 2x2 / stride-2 max pooling.
 *
 * Layout is tfjs's NHWC: x [n, H, W, C], filter g [3, 3, C, K], y [n, Ho, Wo, K]. The output
 * is cut into 2x2 tiles; tile t reads the 4x4 input patch d at (2 ty - padTop, 2 tx - padLeft),
 * zeros outside the image. In 1-D (Lavin and Gray, 2015),
 *
 *   y = A^T [ (G g) . (B^T d) ]        B^T = | 1  0 -1  0 |   G = | 1    0    0  |   A^T = | 1 1  1  0 |
 *                                            | 0  1  1  0 |       | 1/2  1/2  1/2|         | 0 1 -1 -1 |
 *                                            | 0 -1  1  0 |       | 1/2 -1/2  1/2|
 *                                            | 0  1  0 -1 |       | 0    0    1  |
 *
 * and in 2-D Y = A^T [ (G g G^T) . (B^T d B) ] A, the products of the 16 "frequencies" xi summed
 * over C: per xi one matrix product [tiles x C] x [C x K]. That is 16 multiplies per 4 outputs
 * where the direct convolution takes 36, 2.25x fewer.
 *
 * The filter gradient dg[i,j] = sum over tiles of sum_ab d[a+i, b+j] dy[a, b] is the transpose
 * of the same bilinear form: since sum_a dy_a y_a = sum_i g_i dg_i,
 *
 *   dg = G^T [ (A dy A^T) . (B^T d B) ] G
 *
 * summed over tiles, so it shares the input transform, and its 16 products are
 * [C x tiles] x [tiles x K] summed over the tiles.
 *
 * Channels are the SIMD lanes in the transforms (C and K multiples of 4, K of 8 for the
 * products); the caller falls back to other kernels otherwise. Products are rounded before their
 * sums (-ffp-contract=off). Tiles are taken TB at a time, so the transformed blocks stay in the
 * L2 cache between the transform and the products.
 *
 * Memory: the module has none of its own. It imports tfjs-backend-wasm's memory and works on
 * the tensors where they are, with scratch space the caller allocates there; the code keeps no
 * static data and no stack in memory (scripts/build-wasm.mjs checks the built module), so it
 * never writes outside the pointers it is given.
 */
#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

/** Tiles per block: 32 tiles of 64 channels are 128 KB per transformed block. */
#define TB 32

/* ---- the three transforms, four channels at a time ---- */

/* B^T d B for one 4x4 patch (16 vectors, row-major), in place. */
static inline void input_transform(v128_t d[16]) {
  for (int j = 0; j < 4; j++) {
    v128_t d0 = d[j], d1 = d[4 + j], d2 = d[8 + j], d3 = d[12 + j];
    d[j] = wasm_f32x4_sub(d0, d2);
    d[4 + j] = wasm_f32x4_add(d1, d2);
    d[8 + j] = wasm_f32x4_sub(d2, d1);
    d[12 + j] = wasm_f32x4_sub(d1, d3);
  }
  for (int i = 0; i < 4; i++) {
    v128_t *r = d + 4 * i;
    v128_t d0 = r[0], d1 = r[1], d2 = r[2], d3 = r[3];
    r[0] = wasm_f32x4_sub(d0, d2);
    r[1] = wasm_f32x4_add(d1, d2);
    r[2] = wasm_f32x4_sub(d2, d1);
    r[3] = wasm_f32x4_sub(d1, d3);
  }
}

/*
 * Transforms the input patches of tiles [t0, t0 + count) into v[16][TB][C] (xi-major); rows of
 * the block past `count` are zero, so the products may run on whole groups of four rows.
 */
static void transform_inputs(const float *x, float *v, int t0, int count, int H, int W, int C,
                             int tilesH, int tilesW, int padTop, int padLeft) {
  const int rows = (count + 3) & ~3;
  const int plane = TB * C; /* floats per xi */
  const v128_t zero = wasm_f32x4_splat(0.0f);
  for (int b = 0; b < rows; b++) {
    float *out = v + b * C;
    if (b >= count) {
      for (int xi = 0; xi < 16; xi++)
        for (int c = 0; c < C; c += 4) wasm_v128_store(out + xi * plane + c, zero);
      continue;
    }
    const int t = t0 + b;
    const int tx = t % tilesW;
    const int ty = (t / tilesW) % tilesH;
    const int img = t / (tilesW * tilesH);
    const int iy0 = 2 * ty - padTop, ix0 = 2 * tx - padLeft;
    const float *base = x + (size_t)img * H * W * C;
    int inside = iy0 >= 0 && ix0 >= 0 && iy0 + 4 <= H && ix0 + 4 <= W;
    for (int c = 0; c < C; c += 4) {
      v128_t d[16];
      if (inside) {
        const float *p = base + ((size_t)iy0 * W + ix0) * C + c;
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) d[4 * i + j] = wasm_v128_load(p + ((size_t)i * W + j) * C);
      } else {
        for (int i = 0; i < 4; i++) {
          const int iy = iy0 + i;
          for (int j = 0; j < 4; j++) {
            const int ix = ix0 + j;
            d[4 * i + j] = (iy >= 0 && iy < H && ix >= 0 && ix < W)
                               ? wasm_v128_load(base + ((size_t)iy * W + ix) * C + c)
                               : zero;
          }
        }
      }
      input_transform(d);
      for (int xi = 0; xi < 16; xi++) wasm_v128_store(out + xi * plane + c, d[xi]);
    }
  }
}

/* ---- the products: a 4 x 8 block of the result per call ---- */

/*
 * c[4][8] (+)= a[4][depth] b[depth][8], a(i, p) at a[i * ars + p * ads], b row p at b + p * ldb,
 * c row i at c + i * ldc. Eight accumulators, two rows of b and one broadcast stay in registers.
 */
static inline __attribute__((always_inline)) void block4x8(int depth, const float *a, int ars, int ads,
                                                           const float *b, int ldb, float *c, int ldc,
                                                           int accumulate) {
  v128_t c00, c01, c10, c11, c20, c21, c30, c31;
  if (accumulate) {
    c00 = wasm_v128_load(c), c01 = wasm_v128_load(c + 4);
    c10 = wasm_v128_load(c + ldc), c11 = wasm_v128_load(c + ldc + 4);
    c20 = wasm_v128_load(c + 2 * ldc), c21 = wasm_v128_load(c + 2 * ldc + 4);
    c30 = wasm_v128_load(c + 3 * ldc), c31 = wasm_v128_load(c + 3 * ldc + 4);
  } else {
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = wasm_f32x4_splat(0.0f);
  }
  const float *a0 = a, *a1 = a + ars, *a2 = a + 2 * ars, *a3 = a + 3 * ars;
  for (int p = 0; p < depth; p++) {
    const v128_t b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 4);
    b += ldb;
    v128_t s = wasm_v128_load32_splat(a0);
    c00 = wasm_f32x4_add(c00, wasm_f32x4_mul(s, b0));
    c01 = wasm_f32x4_add(c01, wasm_f32x4_mul(s, b1));
    s = wasm_v128_load32_splat(a1);
    c10 = wasm_f32x4_add(c10, wasm_f32x4_mul(s, b0));
    c11 = wasm_f32x4_add(c11, wasm_f32x4_mul(s, b1));
    s = wasm_v128_load32_splat(a2);
    c20 = wasm_f32x4_add(c20, wasm_f32x4_mul(s, b0));
    c21 = wasm_f32x4_add(c21, wasm_f32x4_mul(s, b1));
    s = wasm_v128_load32_splat(a3);
    c30 = wasm_f32x4_add(c30, wasm_f32x4_mul(s, b0));
    c31 = wasm_f32x4_add(c31, wasm_f32x4_mul(s, b1));
    a0 += ads, a1 += ads, a2 += ads, a3 += ads;
  }
  wasm_v128_store(c, c00), wasm_v128_store(c + 4, c01);
  wasm_v128_store(c + ldc, c10), wasm_v128_store(c + ldc + 4, c11);
  wasm_v128_store(c + 2 * ldc, c20), wasm_v128_store(c + 2 * ldc + 4, c21);
  wasm_v128_store(c + 3 * ldc, c30), wasm_v128_store(c + 3 * ldc + 4, c31);
}

/* m[rows][K] = v[rows][C] u[C][K]: a block's tiles against one frequency of the filter. */
static void product_tiles(int rows, int C, int K, const float *v, const float *u, float *m) {
  for (int k = 0; k < K; k += 8)
    for (int r = 0; r < rows; r += 4) block4x8(C, v + r * C, C, 1, u + k, K, m + r * K + k, K, 0);
}

/* s[C][K] += v[rows][C]^T z[rows][K]: one frequency of the filter gradient, summed over tiles. */
static void product_channels(int rows, int C, int K, const float *v, const float *z, float *s) {
  for (int k = 0; k < K; k += 8)
    for (int c = 0; c < C; c += 4) block4x8(rows, v + c, 1, C, z + k, K, s + c * K + k, K, 1);
}

/* ---- exported kernels ---- */

/* u[16][C][K] = G g G^T for every (c, k), g [3][3][C][K]. */
__attribute__((export_name("wg_filter"))) void wg_filter(const float *g, float *u, int C, int K) {
  const int plane = C * K;
  const v128_t half = wasm_f32x4_splat(0.5f);
  for (int o = 0; o < plane; o += 4) {
    v128_t w[9], t[12];
    for (int i = 0; i < 9; i++) w[i] = wasm_v128_load(g + i * plane + o);
    /* t = G g: rows of G against the columns of g (3 wide). */
    for (int j = 0; j < 3; j++) {
      v128_t g0 = w[j], g1 = w[3 + j], g2 = w[6 + j];
      v128_t even = wasm_f32x4_mul(wasm_f32x4_add(g0, g2), half), odd = wasm_f32x4_mul(g1, half);
      t[j] = g0;
      t[3 + j] = wasm_f32x4_add(even, odd);
      t[6 + j] = wasm_f32x4_sub(even, odd);
      t[9 + j] = g2;
    }
    /* u = t G^T, row by row. */
    for (int i = 0; i < 4; i++) {
      v128_t g0 = t[3 * i], g1 = t[3 * i + 1], g2 = t[3 * i + 2];
      v128_t even = wasm_f32x4_mul(wasm_f32x4_add(g0, g2), half), odd = wasm_f32x4_mul(g1, half);
      wasm_v128_store(u + (4 * i + 0) * plane + o, g0);
      wasm_v128_store(u + (4 * i + 1) * plane + o, wasm_f32x4_add(even, odd));
      wasm_v128_store(u + (4 * i + 2) * plane + o, wasm_f32x4_sub(even, odd));
      wasm_v128_store(u + (4 * i + 3) * plane + o, g2);
    }
  }
}

/*
 * y [n, Ho, Wo, K] = conv(x [n, H, W, C], the filter transformed by wg_filter), then + bias[K]
 * unless bias is 0, then max(., 0) if relu (tfjs's FusedConv2D). `scratch` holds
 * 16 * TB * (C + K) floats.
 */
__attribute__((export_name("wg_forward"))) void wg_forward(const float *x, const float *u, float *y,
                                                           float *scratch, int n, int H, int W,
                                                           int C, int K, int Ho, int Wo, int padTop,
                                                           int padLeft, const float *bias,
                                                           int relu) {
  const int tilesH = (Ho + 1) / 2, tilesW = (Wo + 1) / 2;
  const int tiles = n * tilesH * tilesW;
  float *v = scratch, *m = scratch + 16 * TB * C;
  const v128_t zero = wasm_f32x4_splat(0.0f);
  for (int t0 = 0; t0 < tiles; t0 += TB) {
    const int count = tiles - t0 < TB ? tiles - t0 : TB;
    const int rows = (count + 3) & ~3;
    transform_inputs(x, v, t0, count, H, W, C, tilesH, tilesW, padTop, padLeft);
    for (int xi = 0; xi < 16; xi++)
      product_tiles(rows, C, K, v + xi * TB * C, u + xi * C * K, m + xi * TB * K);
    /* Y = A^T M A per tile, four output channels at a time; cut at the bottom and right edges. */
    for (int b = 0; b < count; b++) {
      const int t = t0 + b;
      const int tx = t % tilesW, ty = (t / tilesW) % tilesH, img = t / (tilesW * tilesH);
      const int oy = 2 * ty, ox = 2 * tx;
      float *out = y + (((size_t)img * Ho + oy) * Wo + ox) * K;
      const int right = ox + 1 < Wo, below = oy + 1 < Ho;
      for (int k = 0; k < K; k += 4) {
        v128_t r[8];
        const v128_t add = bias ? wasm_v128_load(bias + k) : wasm_f32x4_splat(0.0f);
        for (int j = 0; j < 4; j++) {
          const float *p = m + b * K + k + j * TB * K;
          v128_t m0 = wasm_v128_load(p), m1 = wasm_v128_load(p + 4 * TB * K);
          v128_t m2 = wasm_v128_load(p + 8 * TB * K), m3 = wasm_v128_load(p + 12 * TB * K);
          r[j] = wasm_f32x4_add(wasm_f32x4_add(m0, m1), m2);
          r[4 + j] = wasm_f32x4_sub(wasm_f32x4_sub(m1, m2), m3);
        }
        for (int i = 0; i < 2; i++) {
          if (i == 1 && !below) break;
          v128_t *q = r + 4 * i;
          float *o = out + (size_t)i * Wo * K + k;
          v128_t left = wasm_f32x4_add(wasm_f32x4_add(q[0], q[1]), q[2]);
          v128_t next = wasm_f32x4_sub(wasm_f32x4_sub(q[1], q[2]), q[3]);
          if (bias) left = wasm_f32x4_add(left, add), next = wasm_f32x4_add(next, add);
          if (relu) left = wasm_f32x4_max(left, zero), next = wasm_f32x4_max(next, zero);
          wasm_v128_store(o, left);
          if (right) wasm_v128_store(o + K, next);
        }
      }
    }
  }
}

/*
 * s[16][C][K] += the filter gradient's frequencies for x [n, H, W, C] and dy [n, Ho, Wo, K];
 * zero s before the first call and finish with wg_filter_grad_out. `scratch` holds
 * 16 * TB * (C + K) floats.
 */
__attribute__((export_name("wg_filter_grad"))) void wg_filter_grad(const float *x, const float *dy,
                                                                   float *s, float *scratch, int n,
                                                                   int H, int W, int C, int K,
                                                                   int Ho, int Wo, int padTop,
                                                                   int padLeft) {
  const int tilesH = (Ho + 1) / 2, tilesW = (Wo + 1) / 2;
  const int tiles = n * tilesH * tilesW;
  float *v = scratch, *z = scratch + 16 * TB * C;
  const v128_t zero = wasm_f32x4_splat(0.0f);
  for (int t0 = 0; t0 < tiles; t0 += TB) {
    const int count = tiles - t0 < TB ? tiles - t0 : TB;
    const int rows = (count + 3) & ~3;
    transform_inputs(x, v, t0, count, H, W, C, tilesH, tilesW, padTop, padLeft);
    /* Z = A dy A^T per tile (4x4 from 2x2), zeros past the edges and for padding rows. */
    for (int b = 0; b < rows; b++) {
      float *out = z + b * K;
      if (b >= count) {
        for (int xi = 0; xi < 16; xi++)
          for (int k = 0; k < K; k += 4) wasm_v128_store(out + xi * TB * K + k, zero);
        continue;
      }
      const int t = t0 + b;
      const int tx = t % tilesW, ty = (t / tilesW) % tilesH, img = t / (tilesW * tilesH);
      const int oy = 2 * ty, ox = 2 * tx;
      const float *in = dy + (((size_t)img * Ho + oy) * Wo + ox) * K;
      const int right = ox + 1 < Wo, below = oy + 1 < Ho;
      for (int k = 0; k < K; k += 4) {
        v128_t e00 = wasm_v128_load(in + k);
        v128_t e01 = right ? wasm_v128_load(in + K + k) : zero;
        v128_t e10 = below ? wasm_v128_load(in + (size_t)Wo * K + k) : zero;
        v128_t e11 = right && below ? wasm_v128_load(in + (size_t)Wo * K + K + k) : zero;
        /* A u = (u0, u0 + u1, u0 - u1, -u1), down the rows, then along them. */
        v128_t r[8] = {e00,
                       e01,
                       wasm_f32x4_add(e00, e10),
                       wasm_f32x4_add(e01, e11),
                       wasm_f32x4_sub(e00, e10),
                       wasm_f32x4_sub(e01, e11),
                       wasm_f32x4_neg(e10),
                       wasm_f32x4_neg(e11)};
        for (int i = 0; i < 4; i++) {
          v128_t u0 = r[2 * i], u1 = r[2 * i + 1];
          float *o = out + (4 * i) * TB * K + k;
          wasm_v128_store(o, u0);
          wasm_v128_store(o + TB * K, wasm_f32x4_add(u0, u1));
          wasm_v128_store(o + 2 * TB * K, wasm_f32x4_sub(u0, u1));
          wasm_v128_store(o + 3 * TB * K, wasm_f32x4_neg(u1));
        }
      }
    }
    for (int xi = 0; xi < 16; xi++)
      product_channels(rows, C, K, v + xi * TB * C, z + xi * TB * K, s + xi * C * K);
  }
}

/* dg [3][3][C][K] = G^T S G from the summed frequencies s[16][C][K]. */
__attribute__((export_name("wg_filter_grad_out"))) void wg_filter_grad_out(const float *s, float *dg,
                                                                           int C, int K) {
  const int plane = C * K;
  const v128_t half = wasm_f32x4_splat(0.5f);
  for (int o = 0; o < plane; o += 4) {
    v128_t m[16], t[12];
    for (int i = 0; i < 16; i++) m[i] = wasm_v128_load(s + i * plane + o);
    /* G^T u = (u0 + (u1 + u2)/2, (u1 - u2)/2, (u1 + u2)/2 + u3), down the columns, then along rows. */
    for (int j = 0; j < 4; j++) {
      v128_t u0 = m[j], u1 = m[4 + j], u2 = m[8 + j], u3 = m[12 + j];
      v128_t even = wasm_f32x4_mul(wasm_f32x4_add(u1, u2), half);
      t[j] = wasm_f32x4_add(u0, even);
      t[4 + j] = wasm_f32x4_mul(wasm_f32x4_sub(u1, u2), half);
      t[8 + j] = wasm_f32x4_add(even, u3);
    }
    for (int i = 0; i < 3; i++) {
      v128_t u0 = t[4 * i], u1 = t[4 * i + 1], u2 = t[4 * i + 2], u3 = t[4 * i + 3];
      v128_t even = wasm_f32x4_mul(wasm_f32x4_add(u1, u2), half);
      wasm_v128_store(dg + (3 * i + 0) * plane + o, wasm_f32x4_add(u0, even));
      wasm_v128_store(dg + (3 * i + 1) * plane + o, wasm_f32x4_mul(wasm_f32x4_sub(u1, u2), half));
      wasm_v128_store(dg + (3 * i + 2) * plane + o, wasm_f32x4_add(even, u3));
    }
  }
}

/*
 * dg [3][3][C][K] += the filter gradient of a stride-1 3x3 convolution, computed directly:
 * dg[i, j, c, k] = sum over pixels of x[oy + i - padTop, ox + j - padLeft, c] dy[oy, ox, k].
 * For layers Winograd does not take, first layers with one to three input channels above all:
 * there the transforms would cost more than the 9 C K products per pixel they save. Per output
 * row, filter row i and channel c, the input row is copied once into `row` with its zero
 * padding, and each run of eight output channels keeps the three taps' sums in registers while
 * it walks the row (dy's row stays in the L1 cache). `row` holds Wo + 2 floats.
 */
__attribute__((export_name("wg_filter_grad_direct"))) void wg_filter_grad_direct(
    const float *x, const float *dy, float *dg, float *row, int n, int H, int W, int C, int K, int Ho,
    int Wo, int padTop, int padLeft) {
  const int plane = C * K;
  for (int img = 0; img < n; img++) {
    const float *xi = x + (size_t)img * H * W * C;
    for (int oy = 0; oy < Ho; oy++) {
      const float *dyRow = dy + ((size_t)img * Ho + oy) * Wo * K;
      for (int i = 0; i < 3; i++) {
        const int iy = oy + i - padTop;
        if (iy < 0 || iy >= H) continue;
        const float *xr = xi + (size_t)iy * W * C;
        for (int c = 0; c < C; c++) {
          for (int p = 0; p < Wo + 2; p++) {
            const int ix = p - padLeft;
            row[p] = ix >= 0 && ix < W ? xr[ix * C + c] : 0.0f;
          }
          float *g0 = dg + (3 * i) * plane + c * K;
          for (int k = 0; k < K; k += 8) {
            v128_t a00 = wasm_v128_load(g0 + k), a01 = wasm_v128_load(g0 + k + 4);
            v128_t a10 = wasm_v128_load(g0 + plane + k), a11 = wasm_v128_load(g0 + plane + k + 4);
            v128_t a20 = wasm_v128_load(g0 + 2 * plane + k), a21 = wasm_v128_load(g0 + 2 * plane + k + 4);
            const float *d = dyRow + k;
            for (int ox = 0; ox < Wo; ox++, d += K) {
              const v128_t d0 = wasm_v128_load(d), d1 = wasm_v128_load(d + 4);
              v128_t s = wasm_v128_load32_splat(row + ox);
              a00 = wasm_f32x4_add(a00, wasm_f32x4_mul(s, d0));
              a01 = wasm_f32x4_add(a01, wasm_f32x4_mul(s, d1));
              s = wasm_v128_load32_splat(row + ox + 1);
              a10 = wasm_f32x4_add(a10, wasm_f32x4_mul(s, d0));
              a11 = wasm_f32x4_add(a11, wasm_f32x4_mul(s, d1));
              s = wasm_v128_load32_splat(row + ox + 2);
              a20 = wasm_f32x4_add(a20, wasm_f32x4_mul(s, d0));
              a21 = wasm_f32x4_add(a21, wasm_f32x4_mul(s, d1));
            }
            wasm_v128_store(g0 + k, a00), wasm_v128_store(g0 + k + 4, a01);
            wasm_v128_store(g0 + plane + k, a10), wasm_v128_store(g0 + plane + k + 4, a11);
            wasm_v128_store(g0 + 2 * plane + k, a20), wasm_v128_store(g0 + 2 * plane + k + 4, a21);
          }
        }
      }
    }
  }
}

/*
 * y [n, Ho, Wo, K] = a 3x3 stride-1 convolution of x [n, H, W, C] with g [3, 3, C, K], computed
 * directly, with the same bias and relu as wg_forward: for first layers (one to three input
 * channels), where Winograd's transforms would cost more than the 9 C K products per pixel. Each
 * image is copied with its zero border into `padded` ((Ho + 2) * (Wo + 2) * C floats), so the
 * loops need no bounds checks; then four output pixels by eight output channels at a time are
 * summed over the 9 C taps in registers, as in block4x8.
 */
static inline __attribute__((always_inline)) void direct_forward_c(
    const float *x, const float *g, float *y, float *padded, int n, int H, int W, int C, int K, int Ho,
    int Wo, int padTop, int padLeft, const float *bias, int relu) {
  const int Hp = Ho + 2, Wp = Wo + 2;
  const v128_t zero = wasm_f32x4_splat(0.0f);
  for (int img = 0; img < n; img++) {
    const float *xi = x + (size_t)img * H * W * C;
    for (int r = 0; r < Hp; r++) {
      const int iy = r - padTop;
      for (int s = 0; s < Wp; s++) {
        const int ix = s - padLeft;
        const int inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
        for (int c = 0; c < C; c++) padded[(r * Wp + s) * C + c] = inside ? xi[((size_t)iy * W + ix) * C + c] : 0.0f;
      }
    }
    for (int oy = 0; oy < Ho; oy++) {
      float *yRow = y + ((size_t)img * Ho + oy) * Wo * K;
      for (int k = 0; k < K; k += 8) {
        const v128_t b0 = bias ? wasm_v128_load(bias + k) : zero;
        const v128_t b1 = bias ? wasm_v128_load(bias + k + 4) : zero;
        int ox = 0;
        for (; ox + 4 <= Wo; ox += 4) {
          v128_t c00 = b0, c01 = b1, c10 = b0, c11 = b1, c20 = b0, c21 = b1, c30 = b0, c31 = b1;
          for (int i = 0; i < 3; i++) {
            for (int j = 0; j < 3; j++) {
              const float *a = padded + ((oy + i) * Wp + ox + j) * C;
              const float *w = g + (i * 3 + j) * C * K + k;
              for (int c = 0; c < C; c++, a++, w += K) {
                const v128_t w0 = wasm_v128_load(w), w1 = wasm_v128_load(w + 4);
                v128_t v = wasm_v128_load32_splat(a);
                c00 = wasm_f32x4_add(c00, wasm_f32x4_mul(v, w0));
                c01 = wasm_f32x4_add(c01, wasm_f32x4_mul(v, w1));
                v = wasm_v128_load32_splat(a + C);
                c10 = wasm_f32x4_add(c10, wasm_f32x4_mul(v, w0));
                c11 = wasm_f32x4_add(c11, wasm_f32x4_mul(v, w1));
                v = wasm_v128_load32_splat(a + 2 * C);
                c20 = wasm_f32x4_add(c20, wasm_f32x4_mul(v, w0));
                c21 = wasm_f32x4_add(c21, wasm_f32x4_mul(v, w1));
                v = wasm_v128_load32_splat(a + 3 * C);
                c30 = wasm_f32x4_add(c30, wasm_f32x4_mul(v, w0));
                c31 = wasm_f32x4_add(c31, wasm_f32x4_mul(v, w1));
              }
            }
          }
          if (relu) {
            c00 = wasm_f32x4_max(c00, zero), c01 = wasm_f32x4_max(c01, zero);
            c10 = wasm_f32x4_max(c10, zero), c11 = wasm_f32x4_max(c11, zero);
            c20 = wasm_f32x4_max(c20, zero), c21 = wasm_f32x4_max(c21, zero);
            c30 = wasm_f32x4_max(c30, zero), c31 = wasm_f32x4_max(c31, zero);
          }
          float *o = yRow + (size_t)ox * K + k;
          wasm_v128_store(o, c00), wasm_v128_store(o + 4, c01);
          wasm_v128_store(o + K, c10), wasm_v128_store(o + K + 4, c11);
          wasm_v128_store(o + 2 * K, c20), wasm_v128_store(o + 2 * K + 4, c21);
          wasm_v128_store(o + 3 * K, c30), wasm_v128_store(o + 3 * K + 4, c31);
        }
        for (; ox < Wo; ox++) {
          v128_t c0 = b0, c1 = b1;
          for (int i = 0; i < 3; i++) {
            for (int j = 0; j < 3; j++) {
              const float *a = padded + ((oy + i) * Wp + ox + j) * C;
              const float *w = g + (i * 3 + j) * C * K + k;
              for (int c = 0; c < C; c++, a++, w += K) {
                const v128_t v = wasm_v128_load32_splat(a);
                c0 = wasm_f32x4_add(c0, wasm_f32x4_mul(v, wasm_v128_load(w)));
                c1 = wasm_f32x4_add(c1, wasm_f32x4_mul(v, wasm_v128_load(w + 4)));
              }
            }
          }
          if (relu) c0 = wasm_f32x4_max(c0, zero), c1 = wasm_f32x4_max(c1, zero);
          float *o = yRow + (size_t)ox * K + k;
          wasm_v128_store(o, c0), wasm_v128_store(o + 4, c1);
        }
      }
    }
  }
}

__attribute__((export_name("direct_forward"))) void direct_forward(
    const float *x, const float *g, float *y, float *padded, int n, int H, int W, int C, int K, int Ho,
    int Wo, int padTop, int padLeft, const float *bias, int relu) {
  /* One input channel (gray pictures) gets its own copy with C a constant: the tap loop unrolls. */
  if (C == 1)
    direct_forward_c(x, g, y, padded, n, H, W, 1, K, Ho, Wo, padTop, padLeft, bias, relu);
  else
    direct_forward_c(x, g, y, padded, n, H, W, C, K, Ho, Wo, padTop, padLeft, bias, relu);
}

/*
 * dx for 2x2 / stride-2 unpadded max pooling of x [n, H, W, C] (y = the pool's output,
 * dy [n, Ho, Wo, C]), four channels at a time; C a multiple of 4. Each gradient goes to the
 * first input of its window (in window order) equal to the window's maximum: equal bits, or
 * both zeros of either sign, as in conv-kernels.ts's JavaScript loop, which this replaces bit
 * for bit. Every dx value inside a window is written once; the caller zeroes a last odd row or
 * column.
 */
__attribute__((export_name("mp_grad_2x2"))) void mp_grad_2x2(const float *x, const float *y,
                                                             const float *dy, float *dx, int n,
                                                             int H, int W, int C, int Ho, int Wo) {
  const v128_t magnitude = wasm_i32x4_splat(0x7fffffff);
  const v128_t zero = wasm_i32x4_splat(0);
  const int rowLen = W * C;
  const float *m = y, *g = dy;
  for (int img = 0; img < n; img++) {
    for (int oy = 0; oy < Ho; oy++) {
      const size_t top = ((size_t)img * H + 2 * oy) * rowLen;
      for (int ox = 0; ox < Wo; ox++) {
        const size_t p = top + (size_t)2 * ox * C, q = p + rowLen;
        for (int c = 0; c < C; c += 4, m += 4, g += 4) {
          const v128_t mv = wasm_v128_load(m), gv = wasm_v128_load(g);
          const v128_t x0 = wasm_v128_load(x + p + c), x1 = wasm_v128_load(x + p + C + c);
          const v128_t x2 = wasm_v128_load(x + q + c);
#define EQUAL(v) \
  wasm_v128_or(wasm_i32x4_eq(v, mv), wasm_i32x4_eq(wasm_v128_and(wasm_v128_or(v, mv), magnitude), zero))
          const v128_t e0 = EQUAL(x0);
          const v128_t e1 = wasm_v128_andnot(EQUAL(x1), e0);
          const v128_t e2 = wasm_v128_andnot(EQUAL(x2), wasm_v128_or(e0, e1));
#undef EQUAL
          const v128_t e3 = wasm_v128_not(wasm_v128_or(wasm_v128_or(e0, e1), e2));
          wasm_v128_store(dx + p + c, wasm_v128_and(gv, e0));
          wasm_v128_store(dx + p + C + c, wasm_v128_and(gv, e1));
          wasm_v128_store(dx + q + c, wasm_v128_and(gv, e2));
          wasm_v128_store(dx + q + C + c, wasm_v128_and(gv, e3));
        }
      }
    }
  }
}

/*
 * The ceiling the kernel benchmark compares with (bench/conv-kernels.ts): `rounds` rounds of six
 * independent 4-lane multiplies and six independent 4-lane adds, with no memory traffic. A
 * multiply-add without fused multiply-add is one of each, so 48 flops a round at full issue is
 * what any plain-SIMD product can reach. Returns a sum so that the work is not dropped.
 */
__attribute__((export_name("simd_peak"))) float simd_peak(int rounds, float scale, float step) {
  const v128_t s = wasm_f32x4_splat(scale), t = wasm_f32x4_splat(step);
  v128_t m0 = wasm_f32x4_splat(1.0f), m1 = m0, m2 = m0, m3 = m0, m4 = m0, m5 = m0;
  v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  for (int i = 0; i < rounds; i++) {
    m0 = wasm_f32x4_mul(m0, s), m1 = wasm_f32x4_mul(m1, s), m2 = wasm_f32x4_mul(m2, s);
    m3 = wasm_f32x4_mul(m3, s), m4 = wasm_f32x4_mul(m4, s), m5 = wasm_f32x4_mul(m5, s);
    a0 = wasm_f32x4_add(a0, t), a1 = wasm_f32x4_add(a1, t), a2 = wasm_f32x4_add(a2, t);
    a3 = wasm_f32x4_add(a3, t), a4 = wasm_f32x4_add(a4, t), a5 = wasm_f32x4_add(a5, t);
  }
  v128_t sum = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_add(m0, m1), wasm_f32x4_add(m2, m3)),
                              wasm_f32x4_add(wasm_f32x4_add(m4, m5), wasm_f32x4_add(a0, a1)));
  sum = wasm_f32x4_add(sum, wasm_f32x4_add(wasm_f32x4_add(a2, a3), wasm_f32x4_add(a4, a5)));
  return wasm_f32x4_extract_lane(sum, 0) + wasm_f32x4_extract_lane(sum, 1) +
         wasm_f32x4_extract_lane(sum, 2) + wasm_f32x4_extract_lane(sum, 3);
}
