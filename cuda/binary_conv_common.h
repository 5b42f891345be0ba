// Shared math of bdc_occ::BinaryConv2d, usable from CUDA (__host__ __device__) and plain C++ (the CPU
// reference test compiles this header with g++).
//
// Operator (ONNX domain "bdc_occ", op "BinaryConv2d"; see bdc_occ_ros/export/custom_op.py):
//   Y[n, o, y, x] = alpha[o] * sum_{c, kh, kw} s(X)[n, c, y*S - P + kh, x*S - P + kw] * sign(W[o, c, kh, kw])
// with sign(v) = +1 for v >= 0 and -1 otherwise (the project convention, NOT ONNX Sign), s(X) = sign(X) when
// binarize_input = 1 and s(X) = X otherwise, and torch zero padding: taps outside the image contribute 0.
//
// Packing layout (identical to bdc_occ_ros/export/packing.py):
//   weights     int32 words, shape (Cout, KH, KW, ceil(Cin / 32)); bit b of word k is 1 iff
//               W[o, 32 k + b, kh, kw] >= 0; bits of channels >= Cin are 0.
//   activations int32 words, shape (N, H, W, ceil(Cin / 32)) (NHWC-packed), same bit rule on X.
// With both paddings 0, padded channel bits never differ, so per valid tap
//   dot = Cin - 2 * popcount(a XOR w).
#pragma once

#include <stdint.h>

#if defined(__CUDACC__)
#define BDC_HD __host__ __device__ __forceinline__
#else
#define BDC_HD inline
#endif

#define BDC_WORD_BITS 32

struct BdcConvShape {
  int n, cin, h, w;     // input
  int cout, kh, kw;     // weights
  int stride, pad;      // square stride and symmetric zero padding
  int ho, wo;           // output (see bdc_out_size)
};

BDC_HD int bdc_words(int cin) { return (cin + BDC_WORD_BITS - 1) / BDC_WORD_BITS; }

BDC_HD int bdc_out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

BDC_HD uint32_t bdc_sign_bit(float v) { return v >= 0.0f ? 1u : 0u; }

BDC_HD int bdc_popcount(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __popc(v);
#else
  return __builtin_popcount(v);
#endif
}

// One output of the XNOR-popcount conv: act = NHWC-packed sign bits, wgt = packed weights.
BDC_HD float bdc_xnor_output(const uint32_t* act, const uint32_t* wgt, const float* alpha, const BdcConvShape& s,
                             int n, int o, int oy, int ox) {
  const int kw_words = bdc_words(s.cin);
  int mismatches = 0;
  int valid_taps = 0;
  for (int ky = 0; ky < s.kh; ++ky) {
    const int iy = oy * s.stride - s.pad + ky;
    if (iy < 0 || iy >= s.h) continue;
    for (int kx = 0; kx < s.kw; ++kx) {
      const int ix = ox * s.stride - s.pad + kx;
      if (ix < 0 || ix >= s.w) continue;  // zero padding: the tap contributes nothing
      ++valid_taps;
      const uint32_t* a = act + ((static_cast<int64_t>(n) * s.h + iy) * s.w + ix) * kw_words;
      const uint32_t* b = wgt + ((static_cast<int64_t>(o) * s.kh + ky) * s.kw + kx) * kw_words;
      for (int k = 0; k < kw_words; ++k) mismatches += bdc_popcount(a[k] ^ b[k]);
    }
  }
  return alpha[o] * static_cast<float>(valid_taps * s.cin - 2 * mismatches);
}

// One output of the binary-weight conv on real-valued NCHW input (adds and subtracts, no multiplies).
BDC_HD float bdc_real_output(const float* x, const uint32_t* wgt, const float* alpha, const BdcConvShape& s, int n,
                             int o, int oy, int ox) {
  const int kw_words = bdc_words(s.cin);
  float acc = 0.0f;
  for (int c = 0; c < s.cin; ++c) {
    const float* xc = x + (static_cast<int64_t>(n) * s.cin + c) * s.h * s.w;
    for (int ky = 0; ky < s.kh; ++ky) {
      const int iy = oy * s.stride - s.pad + ky;
      if (iy < 0 || iy >= s.h) continue;
      for (int kx = 0; kx < s.kw; ++kx) {
        const int ix = ox * s.stride - s.pad + kx;
        if (ix < 0 || ix >= s.w) continue;
        const uint32_t word = wgt[((static_cast<int64_t>(o) * s.kh + ky) * s.kw + kx) * kw_words + c / BDC_WORD_BITS];
        const float v = xc[iy * s.w + ix];
        acc += ((word >> (c % BDC_WORD_BITS)) & 1u) ? v : -v;
      }
    }
  }
  return alpha[o] * acc;
}

// Host packing (reference for the Python packer and for the CPU test). w: (Cout, Cin, KH, KW) float.
inline void bdc_pack_weights_host(const float* w, int cout, int cin, int kh, int kw, uint32_t* out) {
  const int words = bdc_words(cin);
  for (int64_t i = 0; i < static_cast<int64_t>(cout) * kh * kw * words; ++i) out[i] = 0u;
  for (int o = 0; o < cout; ++o)
    for (int c = 0; c < cin; ++c)
      for (int y = 0; y < kh; ++y)
        for (int x = 0; x < kw; ++x) {
          const float v = w[((static_cast<int64_t>(o) * cin + c) * kh + y) * kw + x];
          out[((static_cast<int64_t>(o) * kh + y) * kw + x) * words + c / BDC_WORD_BITS] |=
              bdc_sign_bit(v) << (c % BDC_WORD_BITS);
        }
}

// x: (N, C, H, W) float -> (N, H, W, ceil(C/32)) sign words.
inline void bdc_pack_activations_host(const float* x, int n, int c, int h, int w, uint32_t* out) {
  const int words = bdc_words(c);
  for (int64_t i = 0; i < static_cast<int64_t>(n) * h * w * words; ++i) out[i] = 0u;
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int y = 0; y < h; ++y)
        for (int px = 0; px < w; ++px) {
          const float v = x[((static_cast<int64_t>(b) * c + ch) * h + y) * w + px];
          out[((static_cast<int64_t>(b) * h + y) * w + px) * words + ch / BDC_WORD_BITS] |=
              bdc_sign_bit(v) << (ch % BDC_WORD_BITS);
        }
}
