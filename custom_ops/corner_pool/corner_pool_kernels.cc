// Corner pooling: CPU kernels, and the TensorFlow OpKernels for CPU (and GPU
// when built with CORNERNET_TF_WITH_CUDA=1, see custom_ops/build.py).
//
// CPU strategy. In the [outer, length, row] view of corner_pool.h every pool is
// a running max along `length` of rows of `row` contiguous elements. A task
// owns a block of K contiguous row elements of one outer index and walks the
// `length` positions in scan order, updating K running maxima as a vector (the
// inner loops have no branch and vectorise; the next rows are prefetched, since
// hardware prefetchers follow the descending scans of top/left poorly). Tasks
// are independent and run on TensorFlow's intra-op thread pool (ParallelFor
// with a cost estimate). Float outputs of 8 MB or more are written with
// non-temporal stores (no read-for-ownership of a destination that would not
// stay in cache anyway).
//
// Backward, per block (two passes, both vectorised, every element of x, dy and
// dx touched once in memory; the scratch stays in L2):
//   pass 1, in scan order: R[i] = "x[i] replaces the running argmax";
//           P[i] = sum of dy over the current argmax's segment so far, in scan
//           order (so float sums match the official scatter-add bit for bit);
//   pass 2, in reverse: a segment's total is P at its last position; dx[i] is
//           that total where R[i] (i is an argmax) and 0 elsewhere.
//
// Fused corner pool: one pass over a, b and y, column by column (FusedBlock).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/platform/threadpool.h"

#if CORNERNET_TF_WITH_CUDA
#include "xla/stream_executor/stream.h"
#endif

#include "corner_pool.h"

namespace cornernet_tf {
namespace corner_pool {

// The CPU "device": TensorFlow's intra-op worker threads.
struct CpuThreads {
  tensorflow::thread::ThreadPool* workers;
};

namespace {

template <typename T>
inline float Load(const T& v) {
  return static_cast<float>(v);
}
template <typename T>
inline T Store(float v) {
  return static_cast<T>(v);  // round to nearest even for half / bfloat16
}

// Branch-free selection on bit masks (all ones / all zeros). GCC does not
// if-convert float selects whose operands it sank into branches (FP ops may
// trap), so the row loops select through integer masks; they then vectorise.
inline uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
inline float Float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
inline uint32_t Mask(bool b) { return 0u - static_cast<uint32_t>(b); }
inline float Select(uint32_t mask, float if_set, float if_clear) {
  return Float((Bits(if_set) & mask) | (Bits(if_clear) & ~mask));
}

// Elements per task block (K * length); K is a multiple of 16 when possible.
constexpr int64_t kForwardBlockElements = 1 << 16;
constexpr int64_t kBackwardBlockElements = 1 << 14;  // 16 K x (4 + 4) B scratch

// Rows prefetched ahead in scan order: hardware prefetchers follow short
// descending runs (top/left scans) poorly.
constexpr int64_t kPrefetchRows = 4;

template <typename T>
inline void PrefetchRow(const T* row, int64_t n) {
  const char* bytes = reinterpret_cast<const char*>(row);
  for (int64_t b = 0; b < n * static_cast<int64_t>(sizeof(T)); b += 64) {
    __builtin_prefetch(bytes + b);
  }
}

struct Blocks {
  int64_t width;      // K: row elements per block
  int64_t per_outer;  // blocks per outer index
  int64_t total;      // outer * per_outer
};

Blocks MakeBlocks(const LineView& v, int64_t target_elements) {
  Blocks b;
  int64_t k = std::max<int64_t>(16, target_elements / std::max<int64_t>(1, v.length));
  k = std::max<int64_t>(16, k / 16 * 16);
  b.width = std::min(k, v.row);
  b.per_outer = (v.row + b.width - 1) / b.width;
  b.total = v.outer * b.per_outer;
  return b;
}

// Runs fn(outer, r0, K) for every block, in parallel; cost in cycles/element.
template <typename Fn>
void ForEachBlock(const CpuThreads& d, const LineView& v, const Blocks& b,
                  int64_t cycles_per_element, const Fn& fn) {
  auto work = [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t o = u / b.per_outer;
      const int64_t r0 = (u - o * b.per_outer) * b.width;
      fn(o, r0, std::min(b.width, v.row - r0));
    }
  };
  const int64_t cost = cycles_per_element * b.width * v.length;
  if (d.workers == nullptr || b.total == 1) {
    work(0, b.total);
  } else {
    d.workers->ParallelFor(
        b.total,
        tensorflow::thread::ThreadPool::SchedulingParams::Adaptive(cost),
        work);
  }
}

// Writes a row of n floats to dst as T. With `stream` (a large float output)
// and a 16-byte aligned dst, non-temporal stores bypass the caches: no
// read-for-ownership of the destination, which the output would not fit in
// anyway (about a third less memory traffic in the backward).
template <typename T>
inline void WriteRow(T* __restrict__ dst, const float* __restrict__ src,
                     int64_t n, bool /*stream*/) {
  for (int64_t k = 0; k < n; ++k) dst[k] = Store<T>(src[k]);
}

template <>
inline void WriteRow<float>(float* __restrict__ dst,
                            const float* __restrict__ src, int64_t n,
                            bool stream) {
#if defined(__SSE2__)
  if (stream && (reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) _mm_stream_ps(dst + k, _mm_loadu_ps(src + k));
    for (; k < n; ++k) dst[k] = src[k];
    return;
  }
#endif
  std::memcpy(dst, src, n * sizeof(float));
}

// Orders a block's non-temporal stores before the block is reported done.
inline void StreamFence(bool stream) {
#if defined(__SSE2__)
  if (stream) _mm_sfence();
#endif
}

// Outputs at least this large are written with non-temporal stores (float).
constexpr int64_t kStreamBytes = int64_t{8} << 20;

template <typename T>
bool UseStreaming(const Shape4& s) {
  return std::is_same<T, float>::value &&
         s.size() * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
}

// The row kernels below take __restrict__ parameters so that the compiler
// vectorises them without runtime alias checks, and select through bit masks.

// Forward, one later position: m = max(m, x) under the argmax rule.
template <typename T>
inline void ForwardUpdateRow(int64_t n, const T* __restrict__ xi,
                             float* __restrict__ m) {
  for (int64_t k = 0; k < n; ++k) {
    const float xv = Load(xi[k]);
    const float mk = m[k];
    m[k] = Select(Mask(Replaces(xv, mk)), xv, mk);
  }
}

inline void AddRows(int64_t n, const float* __restrict__ p,
                    const float* __restrict__ q, float* __restrict__ out) {
  for (int64_t k = 0; k < n; ++k) out[k] = p[k] + q[k];
}

template <typename T>
inline void LoadRow(int64_t n, const T* __restrict__ xi, float* __restrict__ m) {
  for (int64_t k = 0; k < n; ++k) m[k] = Load(xi[k]);
}

// y = pool(x) on one block; m: n floats.
template <typename T>
void ForwardBlock(const LineView& v, int64_t o, int64_t r0, int64_t n,
                  const T* x, T* y, float* m, bool stream) {
  int64_t p = v.start(o, r0);
  for (int64_t i = 0; i < v.length; ++i, p += v.step) {
    if (i + kPrefetchRows < v.length) {
      PrefetchRow(x + p + kPrefetchRows * v.step, n);
    }
    if (i == 0) {
      LoadRow(n, x + p, m);
    } else {
      ForwardUpdateRow(n, x + p, m);
    }
    WriteRow(y + p, m, n, stream);
  }
  StreamFence(stream);
}

template <typename T>
void Forward(const CpuThreads& d, Direction dir, const Shape4& s, const T* x,
             T* y) {
  const LineView v = MakeLineView(dir, s);
  const Blocks b = MakeBlocks(v, kForwardBlockElements);
  const bool stream = UseStreaming<T>(s);
  ForEachBlock(d, v, b, 2, [&](int64_t o, int64_t r0, int64_t n) {
    std::unique_ptr<float[]> m(new float[n]);
    ForwardBlock<T>(v, o, r0, n, x, y, m.get(), stream);
  });
}

// Fused corner pool in one pass over a, b and y. A task owns image n and the
// channels [c0, c0 + cb). It walks the columns w in the horizontal scan order
// (top_left: right to left, bottom_right: left to right) and, in each column,
// the rows h in the vertical scan order (top_left: bottom-up, bottom_right:
// top-down), keeping the vertical running max of a for the current column
// (col, cb floats) and the horizontal running max of b of every row (runs,
// H x cb floats, carried from column to column). y[h, w] = col + runs[h],
// summed in float and rounded once, is written right away: a and b are read
// once and y written once (a pool-then-accumulate version makes 5 passes).
// Walking column by column reads cb contiguous elements per step, like the
// single vertical pool, which measured faster than whole-row traversals.
template <typename T>
void FusedBlock(const Shape4& s, Corner corner, int64_t n, int64_t c0,
                int64_t cb, const T* a, const T* b, T* y, float* col,
                float* runs, float* out, bool stream) {
  const bool top_left = corner == Corner::kTopLeft;
  const int64_t H = s.h, W = s.w, C = s.c;
  const int64_t row_step = (top_left ? -1 : 1) * W * C;
  for (int64_t q = 0; q < W; ++q) {
    const int64_t w = top_left ? W - 1 - q : q;
    int64_t p = (n * H + (top_left ? H - 1 : 0)) * W * C + w * C + c0;
    for (int64_t j = 0; j < H; ++j, p += row_step) {
      if (j + kPrefetchRows < H) {
        PrefetchRow(a + p + kPrefetchRows * row_step, cb);
        PrefetchRow(b + p + kPrefetchRows * row_step, cb);
      }
      const int64_t h = top_left ? H - 1 - j : j;
      float* run = runs + h * cb;
      if (j == 0) {
        LoadRow(cb, a + p, col);
      } else {
        ForwardUpdateRow(cb, a + p, col);
      }
      if (q == 0) {
        LoadRow(cb, b + p, run);
      } else {
        ForwardUpdateRow(cb, b + p, run);
      }
      AddRows(cb, col, run, out);
      WriteRow(y + p, out, cb, stream);
    }
  }
  StreamFence(stream);
}

template <typename T>
void FusedForward(const CpuThreads& d, Corner corner, const Shape4& s,
                  const T* a, const T* b, T* y) {
  // Channel blocks only when there are fewer images than threads (narrower
  // blocks read shorter contiguous runs, which costs bandwidth).
  const int64_t threads = d.workers ? d.workers->NumThreads() : 1;
  const int64_t wanted = std::max<int64_t>(1, (threads + s.n - 1) / s.n);
  const int64_t blocks =
      std::min<int64_t>(wanted, std::max<int64_t>(1, s.c / 32));
  int64_t cb = (s.c + blocks - 1) / blocks;
  if (cb < s.c) cb = std::min<int64_t>(s.c, (cb + 15) / 16 * 16);
  const int64_t per_n = (s.c + cb - 1) / cb;
  const bool stream = UseStreaming<T>(s);
  auto work = [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> col(new float[cb]);
    std::unique_ptr<float[]> runs(new float[s.h * cb]);
    std::unique_ptr<float[]> out(new float[cb]);
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / per_n;
      const int64_t c0 = (u - n * per_n) * cb;
      FusedBlock<T>(s, corner, n, c0, std::min(cb, s.c - c0), a, b, y,
                    col.get(), runs.get(), out.get(), stream);
    }
  };
  const int64_t units = s.n * per_n;
  if (d.workers == nullptr || units == 1) {
    work(0, units);
  } else {
    d.workers->ParallelFor(
        units,
        tensorflow::thread::ThreadPool::SchedulingParams::Adaptive(
            4 * s.h * s.w * cb),
        work);
  }
}

// Backward pass 1, first scanned position: it starts the first segment, whose
// sum starts from dy itself (the official code copies it). R holds masks: all
// ones where the position becomes the argmax.
template <typename T>
inline void BackwardFirstRow(int64_t n, const T* __restrict__ xi,
                             const T* __restrict__ gi, float* __restrict__ m,
                             float* __restrict__ Pi, uint32_t* __restrict__ Ri) {
  for (int64_t k = 0; k < n; ++k) {
    m[k] = Load(xi[k]);
    Pi[k] = Load(gi[k]);
    Ri[k] = ~0u;
  }
}

// Backward pass 1, a later position: update the running max m, mark new
// argmaxes in R, extend the segment sums P (in scan order).
template <typename T>
inline void BackwardScanRow(int64_t n, const T* __restrict__ xi,
                            const T* __restrict__ gi, float* __restrict__ m,
                            const float* __restrict__ prev,
                            float* __restrict__ Pi, uint32_t* __restrict__ Ri) {
  for (int64_t k = 0; k < n; ++k) {
    const float xv = Load(xi[k]);
    const float g = Load(gi[k]);
    const float mk = m[k];
    const float extended = prev[k] + g;
    // A new argmax starts from the official zero-initialised output: 0 + g.
    const float started = 0.0f + g;
    const uint32_t r = Mask(Replaces(xv, mk));
    m[k] = Select(r, xv, mk);
    Pi[k] = Select(r, started, extended);
    Ri[k] = r;
  }
}

// Backward pass 2, one position (walking back): `total` is the sum of the
// segment being walked through; a position whose successor starts a segment
// (next set) ends its own, whose total is then its P. out is that total at an
// argmax, +0 elsewhere.
inline void BackwardTotalsRow(int64_t n, const float* __restrict__ Pi,
                              const uint32_t* __restrict__ Ri,
                              const uint32_t* __restrict__ next,
                              float* __restrict__ total,
                              float* __restrict__ out) {
  for (int64_t k = 0; k < n; ++k) {
    const float t = Select(next[k], Pi[k], total[k]);
    total[k] = t;
    out[k] = Float(Bits(t) & Ri[k]);
  }
}

// Scratch of one backward block.
struct BackwardScratch {
  explicit BackwardScratch(int64_t length, int64_t n)
      : m(new float[n]),
        out(new float[n]),
        P(new float[length * n]),
        R(new uint32_t[length * n]),
        ones(new uint32_t[n]) {
    std::fill(ones.get(), ones.get() + n, ~0u);
  }
  std::unique_ptr<float[]> m, out, P;
  std::unique_ptr<uint32_t[]> R, ones;  // ones: "a segment starts after the end"
};

// dx for one block (see the file comment).
template <typename T>
void BackwardBlock(const LineView& v, int64_t o, int64_t r0, int64_t n,
                   const T* x, const T* dy, T* dx, BackwardScratch& w,
                   bool stream) {
  const int64_t length = v.length;
  float* m = w.m.get();
  float* P = w.P.get();
  uint32_t* R = w.R.get();
  int64_t p = v.start(o, r0);
  BackwardFirstRow<T>(n, x + p, dy + p, m, P, R);
  for (int64_t i = 1; i < length; ++i) {
    p += v.step;
    if (i + kPrefetchRows < length) {
      PrefetchRow(x + p + kPrefetchRows * v.step, n);
      PrefetchRow(dy + p + kPrefetchRows * v.step, n);
    }
    BackwardScanRow<T>(n, x + p, dy + p, m, P + (i - 1) * n, P + i * n,
                       R + i * n);
  }
  // Pass 2, reverse scan order; p is at the last scanned position and `m` is
  // reused for the segment totals.
  for (int64_t i = length - 1; i >= 0; --i, p -= v.step) {
    const uint32_t* next = i + 1 < length ? R + (i + 1) * n : w.ones.get();
    BackwardTotalsRow(n, P + i * n, R + i * n, next, m, w.out.get());
    WriteRow(dx + p, w.out.get(), n, stream);
  }
  StreamFence(stream);
}

template <typename T>
void Backward(const CpuThreads& d, Direction dir, const Shape4& s, const T* x,
              const T* dy, T* dx) {
  const LineView v = MakeLineView(dir, s);
  const Blocks b = MakeBlocks(v, kBackwardBlockElements);
  const bool stream = UseStreaming<T>(s);
  ForEachBlock(d, v, b, 6, [&](int64_t o, int64_t r0, int64_t n) {
    BackwardScratch scratch(v.length, n);
    BackwardBlock<T>(v, o, r0, n, x, dy, dx, scratch, stream);
  });
}

}  // namespace

template <typename T>
struct CornerPoolFunctor<CpuThreads, T> {
  const char* operator()(const CpuThreads& d, Direction dir, const Shape4& s,
                         const T* x, T* y) const {
    if (s.size() > 0) Forward<T>(d, dir, s, x, y);
    return nullptr;
  }
};

template <typename T>
struct CornerPoolGradFunctor<CpuThreads, T> {
  const char* operator()(const CpuThreads& d, Direction dir, const Shape4& s,
                         const T* x, const T* dy, T* dx) const {
    if (s.size() > 0) Backward<T>(d, dir, s, x, dy, dx);
    return nullptr;
  }
};

template <typename T>
struct FusedCornerPoolFunctor<CpuThreads, T> {
  const char* operator()(const CpuThreads& d, Corner corner, const Shape4& s,
                         const T* a, const T* b, T* y) const {
    if (s.size() == 0) return nullptr;
    FusedForward<T>(d, corner, s, a, b, y);
    return nullptr;
  }
};

// ---------------------------------------------------------------------------
// TensorFlow op kernels.

namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

absl::Status ParseDirection(const std::string& name, Direction* out) {
  if (name == "top") {
    *out = Direction::kTop;
  } else if (name == "bottom") {
    *out = Direction::kBottom;
  } else if (name == "left") {
    *out = Direction::kLeft;
  } else if (name == "right") {
    *out = Direction::kRight;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "direction must be one of 'top', 'bottom', 'left', 'right'; got '",
        name, "'"));
  }
  return absl::OkStatus();
}

absl::Status ParseCorner(const std::string& name, Corner* out) {
  if (name == "top_left") {
    *out = Corner::kTopLeft;
  } else if (name == "bottom_right") {
    *out = Corner::kBottomRight;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "corner must be 'top_left' or 'bottom_right'; got '", name, "'"));
  }
  return absl::OkStatus();
}

absl::Status CheckRank4(const Tensor& t, const char* op, const char* name) {
  if (t.dims() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": input '", name,
        "' must be a rank-4 NHWC tensor [batch, height, width, channels], got "
        "shape ",
        t.shape().DebugString()));
  }
  return absl::OkStatus();
}

absl::Status CheckSameShape(const Tensor& t, const Tensor& ref, const char* op,
                            const char* name, const char* ref_name) {
  if (t.shape() != ref.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": input '", name, "' has shape ", t.shape().DebugString(),
        " but input '", ref_name, "' has shape ", ref.shape().DebugString(),
        "; they must be equal"));
  }
  return absl::OkStatus();
}

Shape4 ShapeOf(const Tensor& t) {
  return Shape4{t.dim_size(0), t.dim_size(1), t.dim_size(2), t.dim_size(3)};
}

template <typename Device>
Device MakeDevice(OpKernelContext* ctx);

template <>
CpuThreads MakeDevice<CpuThreads>(OpKernelContext* ctx) {
  return CpuThreads{ctx->device()->tensorflow_cpu_worker_threads()->workers};
}

// The element type the functor sees: TensorFlow's own type on the CPU, a
// layout-compatible storage type on the GPU (nvcc never sees Eigen).
template <typename Device, typename T>
struct Storage {
  using type = T;
};

#if CORNERNET_TF_WITH_CUDA
template <>
GpuStream MakeDevice<GpuStream>(OpKernelContext* ctx) {
  return GpuStream{
      ctx->op_device_context()->stream()->platform_specific_handle().stream};
}
template <>
struct Storage<GpuStream, Eigen::half> {
  using type = Half16;
};
template <>
struct Storage<GpuStream, Eigen::bfloat16> {
  using type = BFloat16;
};
static_assert(sizeof(Eigen::half) == sizeof(Half16), "half layout");
static_assert(sizeof(Eigen::bfloat16) == sizeof(BFloat16), "bfloat16 layout");
#endif

template <typename Device, typename T>
const typename Storage<Device, T>::type* In(const Tensor& t) {
  return reinterpret_cast<const typename Storage<Device, T>::type*>(
      t.flat<T>().data());
}
template <typename Device, typename T>
typename Storage<Device, T>::type* Out(Tensor* t) {
  return reinterpret_cast<typename Storage<Device, T>::type*>(
      t->flat<T>().data());
}

absl::Status LaunchStatus(const char* op, const char* error) {
  if (error == nullptr) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(op, ": kernel failed: ", error));
}

template <typename Device, typename T>
class CornerPoolOp : public OpKernel {
 public:
  explicit CornerPoolOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string direction;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("direction", &direction));
    OP_REQUIRES_OK(ctx, ParseDirection(direction, &direction_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES_OK(ctx, CheckRank4(x, "CornerPool", "x"));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &y));
    if (x.NumElements() == 0) return;
    using S = typename Storage<Device, T>::type;
    OP_REQUIRES_OK(ctx, LaunchStatus("CornerPool",
                                     CornerPoolFunctor<Device, S>()(
                                         MakeDevice<Device>(ctx), direction_,
                                         ShapeOf(x), In<Device, T>(x),
                                         Out<Device, T>(y))));
  }

 private:
  Direction direction_;
};

template <typename Device, typename T>
class CornerPoolGradOp : public OpKernel {
 public:
  explicit CornerPoolGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string direction;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("direction", &direction));
    OP_REQUIRES_OK(ctx, ParseDirection(direction, &direction_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckRank4(x, "CornerPoolGrad", "x"));
    OP_REQUIRES_OK(ctx, CheckSameShape(dy, x, "CornerPoolGrad", "dy", "x"));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    if (x.NumElements() == 0) return;
    using S = typename Storage<Device, T>::type;
    OP_REQUIRES_OK(
        ctx, LaunchStatus("CornerPoolGrad",
                          CornerPoolGradFunctor<Device, S>()(
                              MakeDevice<Device>(ctx), direction_, ShapeOf(x),
                              In<Device, T>(x), In<Device, T>(dy),
                              Out<Device, T>(dx))));
  }

 private:
  Direction direction_;
};

template <typename Device, typename T>
class FusedCornerPoolOp : public OpKernel {
 public:
  explicit FusedCornerPoolOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string corner;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("corner", &corner));
    OP_REQUIRES_OK(ctx, ParseCorner(corner, &corner_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& a = ctx->input(0);
    const Tensor& b = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckRank4(a, "FusedCornerPool", "a"));
    OP_REQUIRES_OK(ctx, CheckSameShape(b, a, "FusedCornerPool", "b", "a"));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, a.shape(), &y));
    if (a.NumElements() == 0) return;
    using S = typename Storage<Device, T>::type;
    OP_REQUIRES_OK(ctx, LaunchStatus("FusedCornerPool",
                                     FusedCornerPoolFunctor<Device, S>()(
                                         MakeDevice<Device>(ctx), corner_,
                                         ShapeOf(a), In<Device, T>(a),
                                         In<Device, T>(b), Out<Device, T>(y))));
  }

 private:
  Corner corner_;
};

template <typename Device, typename T>
class FusedCornerPoolGradOp : public OpKernel {
 public:
  explicit FusedCornerPoolGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string corner;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("corner", &corner));
    OP_REQUIRES_OK(ctx, ParseCorner(corner, &corner_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& a = ctx->input(0);
    const Tensor& b = ctx->input(1);
    const Tensor& dy = ctx->input(2);
    OP_REQUIRES_OK(ctx, CheckRank4(a, "FusedCornerPoolGrad", "a"));
    OP_REQUIRES_OK(ctx, CheckSameShape(b, a, "FusedCornerPoolGrad", "b", "a"));
    OP_REQUIRES_OK(ctx,
                   CheckSameShape(dy, a, "FusedCornerPoolGrad", "dy", "a"));
    Tensor* da = nullptr;
    Tensor* db = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, a.shape(), &da));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, a.shape(), &db));
    if (a.NumElements() == 0) return;
    using S = typename Storage<Device, T>::type;
    const Device device = MakeDevice<Device>(ctx);
    const Shape4 s = ShapeOf(a);
    CornerPoolGradFunctor<Device, S> grad;
    OP_REQUIRES_OK(
        ctx, LaunchStatus("FusedCornerPoolGrad",
                          grad(device, FirstDirection(corner_), s,
                               In<Device, T>(a), In<Device, T>(dy),
                               Out<Device, T>(da))));
    OP_REQUIRES_OK(
        ctx, LaunchStatus("FusedCornerPoolGrad",
                          grad(device, SecondDirection(corner_), s,
                               In<Device, T>(b), In<Device, T>(dy),
                               Out<Device, T>(db))));
  }

 private:
  Corner corner_;
};

}  // namespace

#define CORNER_POOL_REGISTER(DEVICE_NAME, DeviceType, T)                       \
  REGISTER_KERNEL_BUILDER(Name("CornerPool")                               \
                              .Device(::tensorflow::DEVICE_NAME)           \
                              .TypeConstraint<T>("T"),                     \
                          CornerPoolOp<DeviceType, T>);                        \
  REGISTER_KERNEL_BUILDER(Name("CornerPoolGrad")                           \
                              .Device(::tensorflow::DEVICE_NAME)           \
                              .TypeConstraint<T>("T"),                     \
                          CornerPoolGradOp<DeviceType, T>);                    \
  REGISTER_KERNEL_BUILDER(Name("FusedCornerPool")                          \
                              .Device(::tensorflow::DEVICE_NAME)           \
                              .TypeConstraint<T>("T"),                     \
                          FusedCornerPoolOp<DeviceType, T>);                   \
  REGISTER_KERNEL_BUILDER(Name("FusedCornerPoolGrad")                      \
                              .Device(::tensorflow::DEVICE_NAME)           \
                              .TypeConstraint<T>("T"),                     \
                          FusedCornerPoolGradOp<DeviceType, T>);

CORNER_POOL_REGISTER(DEVICE_CPU, CpuThreads, float)
CORNER_POOL_REGISTER(DEVICE_CPU, CpuThreads, Eigen::half)
CORNER_POOL_REGISTER(DEVICE_CPU, CpuThreads, Eigen::bfloat16)

#if CORNERNET_TF_WITH_CUDA
CORNER_POOL_REGISTER(DEVICE_GPU, GpuStream, float)
CORNER_POOL_REGISTER(DEVICE_GPU, GpuStream, Eigen::half)
CORNER_POOL_REGISTER(DEVICE_GPU, GpuStream, Eigen::bfloat16)
#endif

#undef CORNER_POOL_REGISTER

}  // namespace corner_pool
}  // namespace cornernet_tf
