// Corner pooling (CornerNet): shared definitions for the CPU and GPU kernels.
//
// This header includes no TensorFlow and no CUDA header, so it is shared by
//   - corner_pool_kernels.cc     (CPU kernels, TensorFlow op kernels),
//   - corner_pool_cuda.cuh       (plain CUDA kernels),
//   - corner_pool_kernels.cu.cc  (the GPU launchers, compiled by nvcc),
//   - tests/harness.cu           (standalone nvcc harness, no TensorFlow).
//
// Semantics (x is NHWC, [N, H, W, C]):
//   top:    y[h, w] = max x[h:, w]      (the position and everything below)
//   bottom: y[h, w] = max x[:h+1, w]    (the position and everything above)
//   left:   y[h, w] = max x[h, w:]      (the position and everything to the right)
//   right:  y[h, w] = max x[h, :w+1]    (the position and everything to the left)
// Every pool is a running maximum along one axis, scanned from the "far edge"
// (top: row H-1 upward, bottom: row 0 downward, left: column W-1 leftward,
// right: column 0 rightward).
//
// Backward (the official CornerNet rule): the gradient of each output goes
// wholly to one argmax of its window. The argmax is tracked along the scan and
// replaced only by a strictly greater value, so on ties the gradient goes to the
// tied element farthest from the output position. The gradients reaching one
// input element are summed in scan order, in float, starting from the element
// itself; this reproduces the official float32 results bit for bit.
//
// NaN: a NaN replaces a non-NaN running maximum (and is never replaced), so a
// NaN in the window makes the output NaN, like tf.maximum; its gradient goes to
// the NaN element.
//
// Memory view used by every kernel: for a direction, the tensor is read as
// [outer, length, row] with `row` contiguous:
//   vertical pools   (top, bottom): outer = N,     length = H, row = W * C
//   horizontal pools (left, right): outer = N * H, length = W, row = C
// Each (outer, r) pair with r in [0, row) is one independent scan line whose
// consecutive elements are `row` apart. On the GPU one thread owns one line, so
// neighbouring threads read neighbouring addresses (threads over (n, w, c) for
// vertical pools and over (n, h, c) for horizontal ones). On the CPU one task
// owns a contiguous block of r values and updates them as vectors.
#ifndef CORNERNET_TF_CUSTOM_OPS_CORNER_POOL_CORNER_POOL_H_
#define CORNERNET_TF_CUSTOM_OPS_CORNER_POOL_CORNER_POOL_H_

#include <cstdint>

#if defined(__CUDACC__)
#define CORNER_POOL_HD __host__ __device__ __forceinline__
#else
#define CORNER_POOL_HD inline
#endif

namespace cornernet_tf {
namespace corner_pool {

enum class Direction : int { kTop = 0, kBottom = 1, kLeft = 2, kRight = 3 };
enum class Corner : int { kTopLeft = 0, kBottomRight = 1 };

// Sizes of an NHWC tensor.
struct Shape4 {
  int64_t n, h, w, c;
  CORNER_POOL_HD int64_t size() const { return n * h * w * c; }
};

CORNER_POOL_HD bool IsVertical(Direction d) {
  return d == Direction::kTop || d == Direction::kBottom;
}

// True when the scan runs towards increasing h (bottom) or w (right).
CORNER_POOL_HD bool ScansForward(Direction d) {
  return d == Direction::kBottom || d == Direction::kRight;
}

// The two pools of a fused corner: top_left = top(a) + left(b),
// bottom_right = bottom(a) + right(b).
CORNER_POOL_HD Direction FirstDirection(Corner k) {
  return k == Corner::kTopLeft ? Direction::kTop : Direction::kBottom;
}
CORNER_POOL_HD Direction SecondDirection(Corner k) {
  return k == Corner::kTopLeft ? Direction::kLeft : Direction::kRight;
}

// The [outer, length, row] view of a tensor for one direction (see above).
struct LineView {
  int64_t outer;   // independent blocks (N, or N * H)
  int64_t length;  // positions along the pooled axis (H or W)
  int64_t row;     // contiguous elements per position (W * C, or C)
  int64_t first;   // offset of the first scanned position inside a block
  int64_t step;    // signed offset between consecutive scanned positions

  // Offset of the first scanned element of line (o, r).
  CORNER_POOL_HD int64_t start(int64_t o, int64_t r) const {
    return o * length * row + first + r;
  }
};

CORNER_POOL_HD LineView MakeLineView(Direction d, const Shape4& s) {
  LineView v;
  if (IsVertical(d)) {
    v.outer = s.n;
    v.length = s.h;
    v.row = s.w * s.c;
  } else {
    v.outer = s.n * s.h;
    v.length = s.w;
    v.row = s.c;
  }
  if (ScansForward(d)) {
    v.first = 0;
    v.step = v.row;
  } else {
    v.first = (v.length - 1) * v.row;
    v.step = -v.row;
  }
  return v;
}

// The argmax update rule: does value v replace the running maximum m?
// Strictly greater only (ties keep the element farthest from the output), and a
// NaN replaces a number once (then stays).
// (Bitwise operators: no branch, so the CPU loops vectorise.)
CORNER_POOL_HD bool Replaces(float v, float m) {
  return (v > m) | ((v != v) & (m == m));
}

// Storage types for half precision, layout-compatible with Eigen::half /
// Eigen::bfloat16 (TensorFlow) and __half / __nv_bfloat16 (CUDA). They only
// name the element type across the TensorFlow / nvcc boundary.
struct Half16 {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

// Functors, specialised per device and element type: the CPU ones in
// corner_pool_kernels.cc (Device = a handle on TensorFlow's CPU thread pool),
// the GPU ones in corner_pool_kernels.cu.cc (Device = GpuStream, T = float,
// Half16 or BFloat16). All pointers point to dense NHWC tensors of shape `s`
// on that device; inputs and outputs may not alias. Each returns nullptr on
// success, else a static error message (a failed kernel launch).

// y = pool_dir(x).
template <typename Device, typename T>
struct CornerPoolFunctor {
  const char* operator()(const Device& d, Direction dir, const Shape4& s,
                         const T* x, T* y) const;
};

// dx = gradient of pool_dir at x for the output gradient dy (official rule).
template <typename Device, typename T>
struct CornerPoolGradFunctor {
  const char* operator()(const Device& d, Direction dir, const Shape4& s,
                         const T* x, const T* dy, T* dx) const;
};

// y = pool_first(a) + pool_second(b), summed in float, rounded once to T.
template <typename Device, typename T>
struct FusedCornerPoolFunctor {
  const char* operator()(const Device& d, Corner corner, const Shape4& s,
                         const T* a, const T* b, T* y) const;
};

// The GPU "device": the CUDA stream (cudaStream_t) that TensorFlow runs the op
// on, passed as void* so that this header needs no CUDA include.
struct GpuStream {
  void* stream;
};

// The GPU specialisations, defined in corner_pool_kernels.cu.cc.
#define CORNER_POOL_DECLARE_GPU(T)                                            \
  template <>                                                                 \
  const char* CornerPoolFunctor<GpuStream, T>::operator()(                    \
      const GpuStream& d, Direction dir, const Shape4& s, const T* x, T* y)   \
      const;                                                                  \
  template <>                                                                 \
  const char* CornerPoolGradFunctor<GpuStream, T>::operator()(                \
      const GpuStream& d, Direction dir, const Shape4& s, const T* x,         \
      const T* dy, T* dx) const;                                              \
  template <>                                                                 \
  const char* FusedCornerPoolFunctor<GpuStream, T>::operator()(               \
      const GpuStream& d, Corner corner, const Shape4& s, const T* a,         \
      const T* b, T* y) const;
CORNER_POOL_DECLARE_GPU(float)
CORNER_POOL_DECLARE_GPU(Half16)
CORNER_POOL_DECLARE_GPU(BFloat16)
#undef CORNER_POOL_DECLARE_GPU

}  // namespace corner_pool
}  // namespace cornernet_tf

#endif  // CORNERNET_TF_CUSTOM_OPS_CORNER_POOL_CORNER_POOL_H_
