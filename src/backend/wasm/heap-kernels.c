/*
 * Kernels that work on tfjs-backend-wasm's own heap (src/backend/heap-kernels.ts), in
 * WebAssembly SIMD. Built by `npm run build:wasm` (scripts/build-wasm.mjs) into
 * src/backend/heap-kernels-wasm.ts.
 *
 * 1. 3x3 stride-1 convolutions by Winograd's minimal filtering, F(2x2, 3x3) and F(4x4, 3x3): the forward pass
 *    (and through it the input gradient, src/backend/conv3x3.ts) and the filter gradient, plus
 *    a direct filter gradient for layers with few input channels.
 * 2. The gradient of 2x2 / stride-2 max pooling.
 * 3. Element-wise kernels of a training step that tfjs runs as several passes or without SIMD
 *    (src/backend/elementwise.ts): a bias added along the last axis, the bias gradient (a sum
 *    over the leading axes) and the ReLU gradient.
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
 * F(4x4, 3x3) cuts the output into 4x4 tiles read from 6x6 patches (at 4 ty - padTop, ...), with
 * the points 0, 1, -1, 2, -2 and infinity (the matrices are written out at bt, at and g_ below):
 * 36 products per 16 outputs, 4x fewer than direct and 1.78x fewer than F(2x2), and transformed
 * blocks 1.78x smaller per output. Its transform coefficients are larger (up to 8 and 1/24), so
 * it rounds a little more: on the cnn's layers its results were within 4e-6 of float64, relative
 * to the largest value, against 1.3e-6 for F(2x2) and 7e-7 for XNNPACK's direct forward pass
 * (test/conv3x3.test.ts checks both tile sizes within 1e-4 of the cpu backend). src/backend/conv3x3.ts picks the
 * tile size per output shape. Every kernel below takes the tile size m as its last argument.
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
 * L2 cache between the transform and the products. The transforms run in two passes through a
 * block (rows, then columns in place), which keeps a few vectors live where a whole 6x6 patch
 * would spill; and each frequency plane is padded by a cache line, because at 32 channels a plane
 * of TB tiles is exactly 4 KB and the 36 planes one tile touches would share one L1 cache set
 * (the two together made F(4x4)'s forward pass 1.4x faster on the cnn's second layer).
 *
 * Memory: the module has none of its own. It imports tfjs-backend-wasm's memory and works on
 * the tensors where they are, with scratch space the caller allocates there; the code keeps no
 * static data and no stack in memory (scripts/build-wasm.mjs checks the built module), so it
 * never writes outside the pointers it is given.
 */
#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

/** Tiles per block: 32 tiles of 64 channels are 128 KB per transformed block for F(2x2). */
#define TB 32
/*
 * Floats per frequency plane of a block with n channels: TB n, plus one cache line, so that the
 * planes a tile's transform touches do not all fall in the same L1 cache set (with 32 channels,
 * TB n floats are exactly 4 KB).
 */
#define PLANE(n) (TB * (n) + 16)

/* ---- the transforms, four channels at a time ---- */

/*
 * The 1-D transforms, on vectors at p[0], p[s], p[2 s], ... (in place) or from `in` to `out`.
 * m is the tile size, 2 or 4, and a = m + 2 the patch size; every caller passes m as a constant,
 * so after inlining the branches fold and the small arrays of vectors become locals (the build
 * refuses any that would be kept on a stack in memory).
 */
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("clang loop unroll(full)")

/* B^T d: F(2x2) rows (1 0 -1 0), (0 1 1 0), (0 -1 1 0), (0 1 0 -1); F(4x4) rows
 * (4 0 -5 0 1 0), (0 -4 -4 1 1 0), (0 4 -4 -1 1 0), (0 -2 -1 2 1 0), (0 2 -1 -2 1 0), (0 4 0 -5 0 1). */
ALWAYS_INLINE void bt(const int m, v128_t *p, int s) {
  if (m == 2) {
    v128_t d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s];
    p[0] = wasm_f32x4_sub(d0, d2);
    p[s] = wasm_f32x4_add(d1, d2);
    p[2 * s] = wasm_f32x4_sub(d2, d1);
    p[3 * s] = wasm_f32x4_sub(d1, d3);
  } else {
    const v128_t two = wasm_f32x4_splat(2.0f), four = wasm_f32x4_splat(4.0f), five = wasm_f32x4_splat(5.0f);
    v128_t d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s], d4 = p[4 * s], d5 = p[5 * s];
    v128_t a = wasm_f32x4_sub(d4, wasm_f32x4_mul(four, d2)); /* d4 - 4 d2 */
    v128_t b = wasm_f32x4_sub(d3, wasm_f32x4_mul(four, d1)); /* d3 - 4 d1 */
    v128_t c = wasm_f32x4_sub(d4, d2);
    v128_t e = wasm_f32x4_mul(two, wasm_f32x4_sub(d3, d1));
    p[0] = wasm_f32x4_add(wasm_f32x4_sub(wasm_f32x4_mul(four, d0), wasm_f32x4_mul(five, d2)), d4);
    p[s] = wasm_f32x4_add(a, b);
    p[2 * s] = wasm_f32x4_sub(a, b);
    p[3 * s] = wasm_f32x4_add(c, e);
    p[4 * s] = wasm_f32x4_sub(c, e);
    p[5 * s] = wasm_f32x4_add(wasm_f32x4_sub(wasm_f32x4_mul(four, d1), wasm_f32x4_mul(five, d3)), d5);
  }
}

/* A^T u, a values to m: F(2x2) rows (1 1 1 0), (0 1 -1 -1); F(4x4) rows (1 1 1 1 1 0),
 * (0 1 -1 2 -2 0), (0 1 1 4 4 0), (0 1 -1 8 -8 1). */
ALWAYS_INLINE void at(const int m, const v128_t *in, int s, v128_t *out, int so) {
  if (m == 2) {
    v128_t u0 = in[0], u1 = in[s], u2 = in[2 * s], u3 = in[3 * s];
    out[0] = wasm_f32x4_add(wasm_f32x4_add(u0, u1), u2);
    out[so] = wasm_f32x4_sub(wasm_f32x4_sub(u1, u2), u3);
  } else {
    v128_t u0 = in[0], u1 = in[s], u2 = in[2 * s], u3 = in[3 * s], u4 = in[4 * s], u5 = in[5 * s];
    v128_t s12 = wasm_f32x4_add(u1, u2), d12 = wasm_f32x4_sub(u1, u2);
    v128_t s34 = wasm_f32x4_add(u3, u4), d34 = wasm_f32x4_sub(u3, u4);
    out[0] = wasm_f32x4_add(wasm_f32x4_add(u0, s12), s34);
    out[so] = wasm_f32x4_add(d12, wasm_f32x4_mul(wasm_f32x4_splat(2.0f), d34));
    out[2 * so] = wasm_f32x4_add(s12, wasm_f32x4_mul(wasm_f32x4_splat(4.0f), s34));
    out[3 * so] = wasm_f32x4_add(wasm_f32x4_add(d12, wasm_f32x4_mul(wasm_f32x4_splat(8.0f), d34)), u5);
  }
}

/* A e, m values to a (the transpose of at, for the output gradient). */
ALWAYS_INLINE void a_(const int m, const v128_t *in, int s, v128_t *out, int so) {
  if (m == 2) {
    v128_t e0 = in[0], e1 = in[s];
    out[0] = e0;
    out[so] = wasm_f32x4_add(e0, e1);
    out[2 * so] = wasm_f32x4_sub(e0, e1);
    out[3 * so] = wasm_f32x4_neg(e1);
  } else {
    v128_t e0 = in[0], e1 = in[s], e2 = in[2 * s], e3 = in[3 * s];
    v128_t s02 = wasm_f32x4_add(e0, e2), s13 = wasm_f32x4_add(e1, e3);
    v128_t p = wasm_f32x4_add(e0, wasm_f32x4_mul(wasm_f32x4_splat(4.0f), e2));
    v128_t q = wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_splat(2.0f), e1),
                              wasm_f32x4_mul(wasm_f32x4_splat(8.0f), e3));
    out[0] = e0;
    out[so] = wasm_f32x4_add(s02, s13);
    out[2 * so] = wasm_f32x4_sub(s02, s13);
    out[3 * so] = wasm_f32x4_add(p, q);
    out[4 * so] = wasm_f32x4_sub(p, q);
    out[5 * so] = e3;
  }
}

/* G g, 3 values to a: F(2x2) rows (1 0 0), (1/2 1/2 1/2), (1/2 -1/2 1/2), (0 0 1); F(4x4) rows
 * (1/4 0 0), (-1/6 -1/6 -1/6), (-1/6 1/6 -1/6), (1/24 1/12 1/6), (1/24 -1/12 1/6), (0 0 1). */
ALWAYS_INLINE void g_(const int m, const v128_t *in, int s, v128_t *out, int so) {
  v128_t g0 = in[0], g1 = in[s], g2 = in[2 * s];
  if (m == 2) {
    const v128_t half = wasm_f32x4_splat(0.5f);
    v128_t even = wasm_f32x4_mul(wasm_f32x4_add(g0, g2), half), odd = wasm_f32x4_mul(g1, half);
    out[0] = g0;
    out[so] = wasm_f32x4_add(even, odd);
    out[2 * so] = wasm_f32x4_sub(even, odd);
    out[3 * so] = g2;
  } else {
    const v128_t sixth = wasm_f32x4_splat(-1.0f / 6.0f);
    v128_t e = wasm_f32x4_add(g0, g2);
    v128_t f = wasm_f32x4_add(wasm_f32x4_mul(g0, wasm_f32x4_splat(1.0f / 24.0f)),
                              wasm_f32x4_mul(g2, wasm_f32x4_splat(1.0f / 6.0f)));
    v128_t h = wasm_f32x4_mul(g1, wasm_f32x4_splat(1.0f / 12.0f));
    out[0] = wasm_f32x4_mul(g0, wasm_f32x4_splat(0.25f));
    out[so] = wasm_f32x4_mul(wasm_f32x4_add(e, g1), sixth);
    out[2 * so] = wasm_f32x4_mul(wasm_f32x4_sub(e, g1), sixth);
    out[3 * so] = wasm_f32x4_add(f, h);
    out[4 * so] = wasm_f32x4_sub(f, h);
    out[5 * so] = g2;
  }
}

/* G^T u, a values to 3 (the transpose of g_, for the filter gradient). */
ALWAYS_INLINE void gt(const int m, const v128_t *in, int s, v128_t *out, int so) {
  if (m == 2) {
    const v128_t half = wasm_f32x4_splat(0.5f);
    v128_t u0 = in[0], u1 = in[s], u2 = in[2 * s], u3 = in[3 * s];
    v128_t even = wasm_f32x4_mul(wasm_f32x4_add(u1, u2), half);
    out[0] = wasm_f32x4_add(u0, even);
    out[so] = wasm_f32x4_mul(wasm_f32x4_sub(u1, u2), half);
    out[2 * so] = wasm_f32x4_add(even, u3);
  } else {
    v128_t u0 = in[0], u1 = in[s], u2 = in[2 * s], u3 = in[3 * s], u4 = in[4 * s], u5 = in[5 * s];
    const v128_t sixth = wasm_f32x4_splat(1.0f / 6.0f);
    v128_t s12 = wasm_f32x4_add(u1, u2), s34 = wasm_f32x4_add(u3, u4);
    out[0] = wasm_f32x4_add(wasm_f32x4_sub(wasm_f32x4_mul(u0, wasm_f32x4_splat(0.25f)), wasm_f32x4_mul(s12, sixth)),
                            wasm_f32x4_mul(s34, wasm_f32x4_splat(1.0f / 24.0f)));
    out[so] = wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_sub(u2, u1), sixth),
                             wasm_f32x4_mul(wasm_f32x4_sub(u3, u4), wasm_f32x4_splat(1.0f / 12.0f)));
    out[2 * so] = wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_sub(s34, s12), sixth), u5);
  }
}

/* Tile t's image, and the output row and column of its top-left corner. */
ALWAYS_INLINE int tile_origin(int t, const int m, int tilesH, int tilesW, int *oy, int *ox) {
  *ox = m * (t % tilesW);
  *oy = m * ((t / tilesW) % tilesH);
  return t / (tilesW * tilesH);
}

/*
 * Transforms the input patches of tiles [t0, t0 + count) into v[a * a][TB][C] (frequency-major);
 * rows of the block past `count` are zero, so the products may run on whole groups of four rows.
 */
ALWAYS_INLINE void transform_inputs(const int m, const float *x, float *v, int t0, int count, int H,
                                    int W, int C, int tilesH, int tilesW, int padTop, int padLeft) {
  const int a = m + 2, freqs = a * a;
  const int rows = (count + 3) & ~3;
  const int plane = PLANE(C); /* floats per frequency */
  const v128_t zero = wasm_f32x4_splat(0.0f);
  for (int b = 0; b < rows; b++) {
    float *out = v + b * C;
    if (b >= count) {
      for (int xi = 0; xi < freqs; xi++)
        for (int c = 0; c < C; c += 4) wasm_v128_store(out + xi * plane + c, zero);
      continue;
    }
    int oy, ox;
    const int img = tile_origin(t0 + b, m, tilesH, tilesW, &oy, &ox);
    const int iy0 = oy - padTop, ix0 = ox - padLeft;
    const float *base = x + (size_t)img * H * W * C;
    const int inside = iy0 >= 0 && ix0 >= 0 && iy0 + a <= H && ix0 + a <= W;
    /*
     * B^T d B in two passes (the tile's part of the block stays in the L1 cache): along the
     * patch's rows into the frequency planes, then down their columns in place. A handful of
     * vectors is live at a time; all a * a at once would spill most of them for F(4x4).
     */
    for (int c = 0; c < C; c += 4) {
      float *o = out + c;
      UNROLL
      for (int i = 0; i < a; i++) {
        const int iy = iy0 + i;
        v128_t r[6];
        UNROLL
        for (int j = 0; j < a; j++) {
          const int ix = ix0 + j;
          r[j] = inside || (iy >= 0 && iy < H && ix >= 0 && ix < W)
                     ? wasm_v128_load(base + ((size_t)iy * W + ix) * C + c)
                     : zero;
        }
        bt(m, r, 1);
        UNROLL
        for (int j = 0; j < a; j++) wasm_v128_store(o + (a * i + j) * plane, r[j]);
      }
      UNROLL
      for (int j = 0; j < a; j++) {
        v128_t r[6];
        UNROLL
        for (int i = 0; i < a; i++) r[i] = wasm_v128_load(o + (a * i + j) * plane);
        bt(m, r, 1);
        UNROLL
        for (int i = 0; i < a; i++) wasm_v128_store(o + (a * i + j) * plane, r[i]);
      }
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

/* ---- exported kernels: m is the tile size, 2 for F(2x2, 3x3) or 4 for F(4x4, 3x3) ---- */

/* u[a * a][C][K] = G g G^T for every (c, k), g [3][3][C][K]. */
ALWAYS_INLINE void filter_transform(const int m, const float *g, float *u, int C, int K) {
  const int a = m + 2, plane = C * K;
  for (int o = 0; o < plane; o += 4) {
    v128_t w[9], t[18], r[36];
    UNROLL
    for (int i = 0; i < 9; i++) w[i] = wasm_v128_load(g + i * plane + o);
    UNROLL
    for (int j = 0; j < 3; j++) g_(m, w + j, 3, t + j, 3); /* t [a][3] = G g */
    UNROLL
    for (int i = 0; i < a; i++) g_(m, t + 3 * i, 1, r + a * i, 1); /* r [a][a] = t G^T */
    UNROLL
    for (int xi = 0; xi < a * a; xi++) wasm_v128_store(u + xi * plane + o, r[xi]);
  }
}

__attribute__((export_name("wg_filter"))) void wg_filter(const float *g, float *u, int C, int K, int m) {
  if (m == 4)
    filter_transform(4, g, u, C, K);
  else
    filter_transform(2, g, u, C, K);
}

/*
 * y [n, Ho, Wo, K] = conv(x [n, H, W, C], the filter transformed by wg_filter), then + bias[K]
 * unless bias is 0, then max(., 0) if relu (tfjs's FusedConv2D). `scratch` holds
 * a * a * (PLANE(C) + PLANE(K)) floats.
 */
ALWAYS_INLINE void forward(const int m, const float *x, const float *u, float *y, float *scratch, int n,
                           int H, int W, int C, int K, int Ho, int Wo, int padTop, int padLeft,
                           const float *bias, int relu) {
  const int a = m + 2, freqs = a * a;
  const int tilesH = (Ho + m - 1) / m, tilesW = (Wo + m - 1) / m;
  const int tiles = n * tilesH * tilesW;
  float *v = scratch, *mm = scratch + freqs * PLANE(C);
  const v128_t zero = wasm_f32x4_splat(0.0f);
  for (int t0 = 0; t0 < tiles; t0 += TB) {
    const int count = tiles - t0 < TB ? tiles - t0 : TB;
    const int rows = (count + 3) & ~3;
    transform_inputs(m, x, v, t0, count, H, W, C, tilesH, tilesW, padTop, padLeft);
    for (int xi = 0; xi < freqs; xi++)
      product_tiles(rows, C, K, v + xi * PLANE(C), u + xi * C * K, mm + xi * PLANE(K));
    /* Y = A^T M A per tile, four output channels at a time; cut at the bottom and right edges. */
    for (int b = 0; b < count; b++) {
      int oy, ox;
      const int img = tile_origin(t0 + b, m, tilesH, tilesW, &oy, &ox);
      float *out = y + (((size_t)img * Ho + oy) * Wo + ox) * K;
      const int down = Ho - oy < m ? Ho - oy : m, across = Wo - ox < m ? Wo - ox : m;
      for (int k = 0; k < K; k += 4) {
        /* Frequency (i, j) of this tile and channel group at p + (a i + j) P; two passes as in
         * transform_inputs: along the rows, written back over each row's first m, then down
         * the first m columns to the outputs. */
        float *p = mm + b * K + k;
        const int P = PLANE(K);
        const v128_t add = bias ? wasm_v128_load(bias + k) : zero;
        UNROLL
        for (int i = 0; i < a; i++) {
          v128_t r[6], q[4];
          UNROLL
          for (int j = 0; j < a; j++) r[j] = wasm_v128_load(p + (a * i + j) * P);
          at(m, r, 1, q, 1);
          UNROLL
          for (int j = 0; j < m; j++) wasm_v128_store(p + (a * i + j) * P, q[j]);
        }
        UNROLL
        for (int j = 0; j < m; j++) {
          v128_t r[6], q[4];
          UNROLL
          for (int i = 0; i < a; i++) r[i] = wasm_v128_load(p + (a * i + j) * P);
          at(m, r, 1, q, 1);
          UNROLL
          for (int i = 0; i < m; i++) {
            v128_t value = q[i];
            if (bias) value = wasm_f32x4_add(value, add);
            if (relu) value = wasm_f32x4_max(value, zero);
            if (i < down && j < across) wasm_v128_store(out + ((size_t)i * Wo + j) * K + k, value);
          }
        }
      }
    }
  }
}

__attribute__((export_name("wg_forward"))) void wg_forward(const float *x, const float *u, float *y,
                                                           float *scratch, int n, int H, int W,
                                                           int C, int K, int Ho, int Wo, int padTop,
                                                           int padLeft, const float *bias, int relu,
                                                           int m) {
  if (m == 4)
    forward(4, x, u, y, scratch, n, H, W, C, K, Ho, Wo, padTop, padLeft, bias, relu);
  else
    forward(2, x, u, y, scratch, n, H, W, C, K, Ho, Wo, padTop, padLeft, bias, relu);
}

/*
 * s[a * a][C][K] += the filter gradient's frequencies for x [n, H, W, C] and dy [n, Ho, Wo, K];
 * zero s before the first call and finish with wg_filter_grad_out. `scratch` holds
 * a * a * (PLANE(C) + PLANE(K)) floats.
 */
ALWAYS_INLINE void filter_grad(const int m, const float *x, const float *dy, float *s, float *scratch,
                               int n, int H, int W, int C, int K, int Ho, int Wo, int padTop,
                               int padLeft) {
  const int a = m + 2, freqs = a * a;
  const int tilesH = (Ho + m - 1) / m, tilesW = (Wo + m - 1) / m;
  const int tiles = n * tilesH * tilesW;
  float *v = scratch, *z = scratch + freqs * PLANE(C);
  const v128_t zero = wasm_f32x4_splat(0.0f);
  for (int t0 = 0; t0 < tiles; t0 += TB) {
    const int count = tiles - t0 < TB ? tiles - t0 : TB;
    const int rows = (count + 3) & ~3;
    transform_inputs(m, x, v, t0, count, H, W, C, tilesH, tilesW, padTop, padLeft);
    /* Z = A dy A^T per tile (a x a from m x m), zeros past the edges and for padding rows. */
    for (int b = 0; b < rows; b++) {
      float *out = z + b * K;
      if (b >= count) {
        for (int xi = 0; xi < freqs; xi++)
          for (int k = 0; k < K; k += 4) wasm_v128_store(out + xi * PLANE(K) + k, zero);
        continue;
      }
      int oy, ox;
      const int img = tile_origin(t0 + b, m, tilesH, tilesW, &oy, &ox);
      const float *in = dy + (((size_t)img * Ho + oy) * Wo + ox) * K;
      const int down = Ho - oy < m ? Ho - oy : m, across = Wo - ox < m ? Wo - ox : m;
      for (int k = 0; k < K; k += 4) {
        /* Two passes as in transform_inputs: along dy's m rows into the frequency planes, then
         * down the a columns (m values to a each), in place. */
        float *q = out + k;
        const int P = PLANE(K);
        UNROLL
        for (int i = 0; i < m; i++) {
          v128_t e[4], r[6];
          UNROLL
          for (int j = 0; j < m; j++)
            e[j] = i < down && j < across ? wasm_v128_load(in + ((size_t)i * Wo + j) * K + k) : zero;
          a_(m, e, 1, r, 1);
          UNROLL
          for (int j = 0; j < a; j++) wasm_v128_store(q + (a * i + j) * P, r[j]);
        }
        UNROLL
        for (int j = 0; j < a; j++) {
          v128_t e[4], r[6];
          UNROLL
          for (int i = 0; i < m; i++) e[i] = wasm_v128_load(q + (a * i + j) * P);
          a_(m, e, 1, r, 1);
          UNROLL
          for (int i = 0; i < a; i++) wasm_v128_store(q + (a * i + j) * P, r[i]);
        }
      }
    }
    for (int xi = 0; xi < freqs; xi++)
      product_channels(rows, C, K, v + xi * PLANE(C), z + xi * PLANE(K), s + xi * C * K);
  }
}

__attribute__((export_name("wg_filter_grad"))) void wg_filter_grad(const float *x, const float *dy,
                                                                   float *s, float *scratch, int n,
                                                                   int H, int W, int C, int K,
                                                                   int Ho, int Wo, int padTop,
                                                                   int padLeft, int m) {
  if (m == 4)
    filter_grad(4, x, dy, s, scratch, n, H, W, C, K, Ho, Wo, padTop, padLeft);
  else
    filter_grad(2, x, dy, s, scratch, n, H, W, C, K, Ho, Wo, padTop, padLeft);
}

/* dg [3][3][C][K] = G^T S G from the summed frequencies s[a * a][C][K]. */
ALWAYS_INLINE void filter_grad_out(const int m, const float *s, float *dg, int C, int K) {
  const int a = m + 2, plane = C * K;
  for (int o = 0; o < plane; o += 4) {
    v128_t p[36], t[18], r[9];
    UNROLL
    for (int xi = 0; xi < a * a; xi++) p[xi] = wasm_v128_load(s + xi * plane + o);
    UNROLL
    for (int j = 0; j < a; j++) gt(m, p + j, a, t + j, a); /* t [3][a] = G^T S */
    UNROLL
    for (int i = 0; i < 3; i++) gt(m, t + a * i, 1, r + 3 * i, 1); /* r [3][3] = t G */
    UNROLL
    for (int i = 0; i < 9; i++) wasm_v128_store(dg + i * plane + o, r[i]);
  }
}

__attribute__((export_name("wg_filter_grad_out"))) void wg_filter_grad_out(const float *s, float *dg,
                                                                           int C, int K, int m) {
  if (m == 4)
    filter_grad_out(4, s, dg, C, K);
  else
    filter_grad_out(2, s, dg, C, K);
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

/* ---- element-wise kernels (src/backend/elementwise.ts); cols is a multiple of 4 ---- */

/* y[r][c] = x[r][c] + bias[c]: tfjs's Add of a [..., cols] tensor and a [cols] bias. */
__attribute__((export_name("bias_add"))) void bias_add(const float *x, const float *bias, float *y,
                                                       int rows, int cols) {
  for (int r = 0; r < rows; r++, x += cols, y += cols)
    for (int c = 0; c < cols; c += 4)
      wasm_v128_store(y + c, wasm_f32x4_add(wasm_v128_load(x + c), wasm_v128_load(bias + c)));
}

/*
 * out[c] = the sum over rows of x[r][c], in double: four rows are summed, then added to the
 * running sum, in the order the JavaScript loop it replaces used (elementwise.ts), so the
 * results are the same bits. `acc` holds cols doubles.
 */
__attribute__((export_name("sum_rows"))) void sum_rows(const float *x, float *out, double *acc, int rows,
                                                       int cols) {
  const v128_t zero = wasm_f64x2_splat(0.0);
  for (int c = 0; c < cols; c += 2) wasm_v128_store(acc + c, zero);
#define LOW(v) wasm_f64x2_promote_low_f32x4(v)
#define HIGH(v) wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1))
  int r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *p = x + (size_t)r * cols;
    for (int c = 0; c < cols; c += 4) {
      const v128_t a0 = wasm_v128_load(p + c), a1 = wasm_v128_load(p + cols + c);
      const v128_t a2 = wasm_v128_load(p + 2 * cols + c), a3 = wasm_v128_load(p + 3 * cols + c);
      const v128_t lo = wasm_f64x2_add(wasm_f64x2_add(wasm_f64x2_add(LOW(a0), LOW(a1)), LOW(a2)), LOW(a3));
      const v128_t hi =
          wasm_f64x2_add(wasm_f64x2_add(wasm_f64x2_add(HIGH(a0), HIGH(a1)), HIGH(a2)), HIGH(a3));
      wasm_v128_store(acc + c, wasm_f64x2_add(wasm_v128_load(acc + c), lo));
      wasm_v128_store(acc + c + 2, wasm_f64x2_add(wasm_v128_load(acc + c + 2), hi));
    }
  }
  for (; r < rows; r++) {
    const float *p = x + (size_t)r * cols;
    for (int c = 0; c < cols; c += 4) {
      const v128_t a = wasm_v128_load(p + c);
      wasm_v128_store(acc + c, wasm_f64x2_add(wasm_v128_load(acc + c), LOW(a)));
      wasm_v128_store(acc + c + 2, wasm_f64x2_add(wasm_v128_load(acc + c + 2), HIGH(a)));
    }
  }
#undef LOW
#undef HIGH
  for (int c = 0; c < cols; c += 4) {
    const v128_t lo = wasm_f32x4_demote_f64x2_zero(wasm_v128_load(acc + c));
    const v128_t hi = wasm_f32x4_demote_f64x2_zero(wasm_v128_load(acc + c + 2));
    wasm_v128_store(out + c, wasm_i32x4_shuffle(lo, hi, 0, 1, 4, 5));
  }
}

/*
 * dx = dy * step(x), the ReLU gradient as tfjs-core computes it (dy times 1 where x > 0, 0
 * elsewhere, NaN where x is NaN), in one pass instead of three (Step, Cast, Multiply); the same
 * products, so the same bits. n is the element count, any size.
 */
__attribute__((export_name("relu_grad"))) void relu_grad(const float *dy, const float *x, float *dx, int n) {
  const v128_t zero = wasm_f32x4_splat(0.0f), one = wasm_f32x4_splat(1.0f), nan = wasm_f32x4_splat(__builtin_nanf(""));
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t v = wasm_v128_load(x + i);
    v128_t s = wasm_v128_and(wasm_f32x4_gt(v, zero), one);
    s = wasm_v128_bitselect(nan, s, wasm_f32x4_ne(v, v));
    wasm_v128_store(dx + i, wasm_f32x4_mul(wasm_v128_load(dy + i), s));
  }
  for (; i < n; i++) {
    const float v = x[i];
    dx[i] = dy[i] * (v != v ? v : v > 0.0f ? 1.0f : 0.0f);
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
