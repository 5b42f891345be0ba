// CPU build of the plugin's per-output math (binary_conv_common.h), for tests on machines without a GPU:
//   g++ -O2 -shared -fPIC cuda/binary_conv_ref.cpp -o libbdc_occ_binary_conv_ref.so
// Same arguments as bdc_binary_conv2d_forward in binary_conv.cu, but host pointers and no stream.
#include <cstddef>
#include <vector>

#include "binary_conv_common.h"

extern "C" {

void bdc_pack_weights(const float* w, int cout, int cin, int kh, int kw, int32_t* out) {
  bdc_pack_weights_host(w, cout, cin, kh, kw, reinterpret_cast<uint32_t*>(out));
}

void bdc_pack_activations(const float* x, int n, int c, int h, int w, int32_t* out) {
  bdc_pack_activations_host(x, n, c, h, w, reinterpret_cast<uint32_t*>(out));
}

void bdc_binary_conv2d_ref(const float* x, const int32_t* w_packed, const float* alpha, float* y, int n, int cin,
                           int h, int w, int cout, int kh, int kw, int stride, int pad, int binarize_input) {
  const BdcConvShape s{n, cin, h, w, cout, kh, kw, stride, pad, bdc_out_size(h, kh, stride, pad),
                       bdc_out_size(w, kw, stride, pad)};
  const auto* wgt = reinterpret_cast<const uint32_t*>(w_packed);
  std::vector<uint32_t> act;
  if (binarize_input) {
    act.resize(static_cast<size_t>(n) * h * w * bdc_words(cin));
    bdc_pack_activations_host(x, n, cin, h, w, act.data());
  }
  for (int b = 0; b < n; ++b)
    for (int o = 0; o < cout; ++o)
      for (int oy = 0; oy < s.ho; ++oy)
        for (int ox = 0; ox < s.wo; ++ox)
          y[((static_cast<int64_t>(b) * cout + o) * s.ho + oy) * s.wo + ox] =
              binarize_input ? bdc_xnor_output(act.data(), wgt, alpha, s, b, o, oy, ox)
                             : bdc_real_output(x, wgt, alpha, s, b, o, oy, ox);
}

}  // extern "C"
