// CUDA kernels for bdc_occ::BinaryConv2d (the TensorRT plugin's compute). Math, packing layout and the
// sign(0) = +1 convention: binary_conv_common.h. Build (Orin = sm_87):
//   nvcc -O3 -arch=sm_87 -Xcompiler -fPIC -shared cuda/binary_conv.cu -o libbdc_occ_binary_conv.so
// Status: compiled here for sm_87 and sm_90 (CUDA 13.0); never executed on a GPU (none on the dev machine).
//
// Three paths:
//  * binarize_input = 1, generic: pack sign bits of X into NHWC words, then one thread per output does
//    XNOR + popcount over the valid taps (bdc_xnor_output).
//  * binarize_input = 1, Cin % 128 == 0, Cout % 8 == 0, sm_80+: implicit GEMM on the 1-bit tensor cores
//    (WMMA b1 8x8x128, XOR + POPC). Padded taps feed zero bits, so their popcount(0 ^ w) = popcount(w) is
//    subtracted again in the epilogue; set BDC_OCC_DISABLE_MMA=1 to force the generic path.
//  * binarize_input = 0 (binary weights on real-valued input, e.g. BDC's 1x1 convs): one thread per
//    output adds or subtracts inputs by the weight bit (bdc_real_output).
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdlib>

#include "binary_conv_common.h"

namespace {

constexpr int kThreads = 256;
constexpr int kMmaBits = 128;                      // K of one b1 MMA
constexpr int kMmaWords = kMmaBits / BDC_WORD_BITS;  // 4 words

__global__ void pack_activations_kernel(const float* __restrict__ x, uint32_t* __restrict__ out, int n, int c, int h,
                                        int w) {
  const int words = bdc_words(c);
  const int64_t total = static_cast<int64_t>(n) * h * w * words;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  // i enumerates (b, k, y, x) with x fastest so neighbouring threads read neighbouring floats.
  const int px = static_cast<int>(i % w);
  const int py = static_cast<int>((i / w) % h);
  const int k = static_cast<int>((i / (static_cast<int64_t>(w) * h)) % words);
  const int b = static_cast<int>(i / (static_cast<int64_t>(w) * h * words));
  uint32_t bits = 0u;
  const int c0 = k * BDC_WORD_BITS;
  const int c1 = min(c, c0 + BDC_WORD_BITS);
  for (int ch = c0; ch < c1; ++ch) {
    bits |= bdc_sign_bit(x[((static_cast<int64_t>(b) * c + ch) * h + py) * w + px]) << (ch - c0);
  }
  out[((static_cast<int64_t>(b) * h + py) * w + px) * words + k] = bits;
}

__device__ __forceinline__ void decode_output(int64_t i, const BdcConvShape& s, int* n, int* o, int* oy, int* ox) {
  *ox = static_cast<int>(i % s.wo);
  *oy = static_cast<int>((i / s.wo) % s.ho);
  *o = static_cast<int>((i / (static_cast<int64_t>(s.wo) * s.ho)) % s.cout);
  *n = static_cast<int>(i / (static_cast<int64_t>(s.wo) * s.ho * s.cout));
}

__global__ void xnor_conv_kernel(const uint32_t* __restrict__ act, const uint32_t* __restrict__ wgt,
                                 const float* __restrict__ alpha, float* __restrict__ y, BdcConvShape s) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<int64_t>(s.n) * s.cout * s.ho * s.wo) return;
  int n, o, oy, ox;
  decode_output(i, s, &n, &o, &oy, &ox);
  y[i] = bdc_xnor_output(act, wgt, alpha, s, n, o, oy, ox);  // i is already the NCHW output index
}

__global__ void real_input_conv_kernel(const float* __restrict__ x, const uint32_t* __restrict__ wgt,
                                       const float* __restrict__ alpha, float* __restrict__ y, BdcConvShape s) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<int64_t>(s.n) * s.cout * s.ho * s.wo) return;
  int n, o, oy, ox;
  decode_output(i, s, &n, &o, &oy, &ox);
  y[i] = bdc_real_output(x, wgt, alpha, s, n, o, oy, ox);
}

// One warp computes an 8 (output pixels) x 8 (output channels) tile on the 1-bit tensor cores.
__global__ void xnor_conv_mma_kernel(const uint32_t* __restrict__ act, const uint32_t* __restrict__ wgt,
                                     const float* __restrict__ alpha, float* __restrict__ y, BdcConvShape s) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  __shared__ __align__(32) uint32_t a_tile[8 * kMmaWords];
  __shared__ __align__(32) uint32_t b_tile[8 * kMmaWords];
  __shared__ int c_tile[8 * 8];
  const int lane = threadIdx.x;  // blockDim.x == 32: one warp per block
  const int words = bdc_words(s.cin);
  const int64_t pixels = static_cast<int64_t>(s.n) * s.ho * s.wo;
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * 8;
  const int o0 = blockIdx.y * 8;

  // The lane's row of the A tile (one output pixel) and of the B tile (one output channel).
  const int row = lane / kMmaWords;
  const int word_in_chunk = lane % kMmaWords;
  const int64_t p = p0 + row;
  const bool p_ok = p < pixels;
  const int pn = p_ok ? static_cast<int>(p / (static_cast<int64_t>(s.ho) * s.wo)) : 0;
  const int poy = p_ok ? static_cast<int>((p / s.wo) % s.ho) : 0;
  const int pox = p_ok ? static_cast<int>(p % s.wo) : 0;

  wmma::fragment<wmma::matrix_a, 8, 8, 128, wmma::experimental::precision::b1, wmma::row_major> a_frag;
  wmma::fragment<wmma::matrix_b, 8, 8, 128, wmma::experimental::precision::b1, wmma::col_major> b_frag;
  wmma::fragment<wmma::accumulator, 8, 8, 128, int> c_frag;
  wmma::fill_fragment(c_frag, 0);

  for (int ky = 0; ky < s.kh; ++ky) {
    for (int kx = 0; kx < s.kw; ++kx) {
      const int iy = poy * s.stride - s.pad + ky;
      const int ix = pox * s.stride - s.pad + kx;
      const bool tap_ok = p_ok && iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
      const uint32_t* a_src = act + ((static_cast<int64_t>(pn) * s.h + iy) * s.w + ix) * words;
      const uint32_t* b_src = wgt + ((static_cast<int64_t>(o0 + row) * s.kh + ky) * s.kw + kx) * words;
      for (int k0 = 0; k0 < words; k0 += kMmaWords) {
        a_tile[lane] = tap_ok ? a_src[k0 + word_in_chunk] : 0u;
        b_tile[lane] = b_src[k0 + word_in_chunk];
        __syncwarp();
        wmma::load_matrix_sync(a_frag, a_tile, kMmaBits);
        wmma::load_matrix_sync(b_frag, b_tile, kMmaBits);
        wmma::bmma_sync(c_frag, a_frag, b_frag, c_frag, wmma::experimental::bmmaBitOpXOR,
                        wmma::experimental::bmmaAccumulateOpPOPC);
        __syncwarp();
      }
    }
  }
  wmma::store_matrix_sync(c_tile, c_frag, 8, wmma::mem_row_major);
  __syncwarp();

  // Epilogue: two outputs per lane; undo the padded taps' popcount(w) and apply alpha.
  for (int e = lane; e < 64; e += 32) {
    const int r = e / 8;
    const int o = o0 + e % 8;
    const int64_t q = p0 + r;
    if (q >= pixels) continue;
    const int n = static_cast<int>(q / (static_cast<int64_t>(s.ho) * s.wo));
    const int oy = static_cast<int>((q / s.wo) % s.ho);
    const int ox = static_cast<int>(q % s.wo);
    int mismatches = c_tile[e];
    int valid_taps = 0;
    for (int ky = 0; ky < s.kh; ++ky) {
      for (int kx = 0; kx < s.kw; ++kx) {
        const int iy = oy * s.stride - s.pad + ky;
        const int ix = ox * s.stride - s.pad + kx;
        if (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) {
          ++valid_taps;
          continue;
        }
        const uint32_t* wt = wgt + ((static_cast<int64_t>(o) * s.kh + ky) * s.kw + kx) * words;
        for (int k = 0; k < words; ++k) mismatches -= __popc(wt[k]);
      }
    }
    y[((static_cast<int64_t>(n) * s.cout + o) * s.ho + oy) * s.wo + ox] =
        alpha[o] * static_cast<float>(valid_taps * s.cin - 2 * mismatches);
  }
#else
  __trap();  // launched only after a compute-capability check (see use_mma)
#endif
}

unsigned int blocks_for(int64_t total) { return static_cast<unsigned int>((total + kThreads - 1) / kThreads); }

bool use_mma(const BdcConvShape& s) {
  if (s.cin % kMmaBits != 0 || s.cout % 8 != 0) return false;
  const char* off = std::getenv("BDC_OCC_DISABLE_MMA");
  if (off != nullptr && off[0] == '1') return false;
  int device = 0;
  int major = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
  return major >= 8;
}

}  // namespace

extern "C" {

// Bytes of scratch memory forward() needs (the packed activations); 0 for real-valued input.
size_t bdc_binary_conv2d_workspace_bytes(int n, int cin, int h, int w, int binarize_input) {
  if (!binarize_input) return 0;
  return static_cast<size_t>(n) * h * w * bdc_words(cin) * sizeof(uint32_t);
}

// y = BinaryConv2d(x) on `stream`; all pointers are device memory, NCHW float32 tensors, packed int32 weights
// (Cout, KH, KW, ceil(Cin/32)). Returns a cudaError_t (0 = success).
int bdc_binary_conv2d_forward(const float* x, const int32_t* w_packed, const float* alpha, float* y, int n, int cin,
                              int h, int w, int cout, int kh, int kw, int stride, int pad, int binarize_input,
                              void* workspace, cudaStream_t stream) {
  BdcConvShape s{n, cin, h, w, cout, kh, kw, stride, pad, bdc_out_size(h, kh, stride, pad),
                 bdc_out_size(w, kw, stride, pad)};
  const auto* wgt = reinterpret_cast<const uint32_t*>(w_packed);
  const int64_t outputs = static_cast<int64_t>(n) * cout * s.ho * s.wo;
  if (!binarize_input) {
    real_input_conv_kernel<<<blocks_for(outputs), kThreads, 0, stream>>>(x, wgt, alpha, y, s);
    return static_cast<int>(cudaGetLastError());
  }
  auto* act = static_cast<uint32_t*>(workspace);
  pack_activations_kernel<<<blocks_for(static_cast<int64_t>(n) * h * w * bdc_words(cin)), kThreads, 0, stream>>>(
      x, act, n, cin, h, w);
  if (use_mma(s)) {
    const dim3 grid(static_cast<unsigned int>((static_cast<int64_t>(n) * s.ho * s.wo + 7) / 8), cout / 8);
    xnor_conv_mma_kernel<<<grid, 32, 0, stream>>>(act, wgt, alpha, y, s);
  } else {
    xnor_conv_kernel<<<blocks_for(outputs), kThreads, 0, stream>>>(act, wgt, alpha, y, s);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
