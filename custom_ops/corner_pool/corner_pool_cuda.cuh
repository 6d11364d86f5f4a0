// Corner pooling: the CUDA kernels. Plain CUDA, no TensorFlow include, so the
// standalone harness (tests/harness.cu) builds and checks exactly this code.
//
// One thread owns one scan line (see the [outer, length, row] view in
// corner_pool.h): threads over (n, w, c) for vertical pools and over (n, h, c)
// for horizontal ones, so a warp reads 32 neighbouring elements of one row at
// every step (coalesced along channels). Every element is read once and written
// once (forward: x -> y; backward: x, dy -> dx). Loads are issued kUnroll
// positions ahead so that enough bytes are in flight when there are few lines.
// Values are compared and accumulated in float; for half and bfloat16 the max
// is exact (it is one of the inputs) and gradient sums are rounded once.
#ifndef CORNERNET_TF_CUSTOM_OPS_CORNER_POOL_CORNER_POOL_CUDA_CUH_
#define CORNERNET_TF_CUSTOM_OPS_CORNER_POOL_CORNER_POOL_CUDA_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "corner_pool.h"

namespace cornernet_tf {
namespace corner_pool {
namespace cuda {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Loads issued ahead per thread (float: 8 x 4 bytes, 16-bit types: 16 x 2).
template <typename T>
struct DefaultUnroll {
  static constexpr int value = sizeof(T) >= 4 ? 8 : 16;
};

constexpr int kThreadsPerBlock = 256;

// y = pool(x) along the lines of `v`; with kAccumulate, y = y + pool(x)
// (rounded once to T: the second half of a fused corner pool).
template <typename T, bool kAccumulate, int kUnroll>
__global__ void __launch_bounds__(kThreadsPerBlock)
    CornerPoolForwardKernel(const T* __restrict__ x, T* __restrict__ y,
                            LineView v) {
  const int64_t lines = v.outer * v.row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       t < lines; t += stride) {
    const int64_t o = t / v.row;
    const int64_t r = t - o * v.row;
    int64_t p = v.start(o, r);
    float m = ToFloat(x[p]);
    y[p] = kAccumulate ? FromFloat<T>(ToFloat(y[p]) + m) : x[p];
    int64_t i = 1;
    for (; i + kUnroll <= v.length; i += kUnroll) {
      float xs[kUnroll];
      float ys[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        xs[k] = ToFloat(x[p + (k + 1) * v.step]);
        if (kAccumulate) ys[k] = ToFloat(y[p + (k + 1) * v.step]);
      }
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        if (Replaces(xs[k], m)) m = xs[k];
        y[p + (k + 1) * v.step] = FromFloat<T>(kAccumulate ? ys[k] + m : m);
      }
      p += kUnroll * v.step;
    }
    for (; i < v.length; ++i) {
      p += v.step;
      const float xv = ToFloat(x[p]);
      if (Replaces(xv, m)) m = xv;
      y[p] = FromFloat<T>(kAccumulate ? ToFloat(y[p]) + m : m);
    }
  }
}

// dx = gradient of pool(x) for dy, by the official rule: the running argmax
// `arg` is replaced only by a strictly greater value; the gradients it
// collects are summed in scan order in `acc` and written when it is replaced
// (or at the end of the line). Non-argmax elements get 0 right away, so each
// element of dx is written exactly once.
template <typename T, int kUnroll>
__global__ void __launch_bounds__(kThreadsPerBlock)
    CornerPoolBackwardKernel(const T* __restrict__ x, const T* __restrict__ dy,
                             T* __restrict__ dx, LineView v) {
  const int64_t lines = v.outer * v.row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const T zero = FromFloat<T>(0.0f);
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       t < lines; t += stride) {
    const int64_t o = t / v.row;
    const int64_t r = t - o * v.row;
    int64_t p = v.start(o, r);
    float m = ToFloat(x[p]);
    float acc = ToFloat(dy[p]);
    int64_t arg = p;
    int64_t i = 1;
    for (; i + kUnroll <= v.length; i += kUnroll) {
      float xs[kUnroll];
      float gs[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        xs[k] = ToFloat(x[p + (k + 1) * v.step]);
        gs[k] = ToFloat(dy[p + (k + 1) * v.step]);
      }
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        const int64_t q = p + (k + 1) * v.step;
        if (Replaces(xs[k], m)) {
          dx[arg] = FromFloat<T>(acc);
          m = xs[k];
          arg = q;
          acc = 0.0f + gs[k];  // as the official 0-initialised scatter-add
        } else {
          acc += gs[k];
          dx[q] = zero;
        }
      }
      p += kUnroll * v.step;
    }
    for (; i < v.length; ++i) {
      p += v.step;
      const float xv = ToFloat(x[p]);
      const float g = ToFloat(dy[p]);
      if (Replaces(xv, m)) {
        dx[arg] = FromFloat<T>(acc);
        m = xv;
        arg = p;
        acc = 0.0f + g;
      } else {
        acc += g;
        dx[p] = zero;
      }
    }
    dx[arg] = FromFloat<T>(acc);
  }
}

inline unsigned int NumBlocks(int64_t lines) {
  const int64_t blocks = (lines + kThreadsPerBlock - 1) / kThreadsPerBlock;
  const int64_t kMaxBlocks = int64_t{1} << 20;  // the kernels grid-stride beyond
  return static_cast<unsigned int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// Host launchers. T is float, __half or __nv_bfloat16; pointers are device
// pointers to dense NHWC tensors of shape s. They return the launch status.
template <typename T, int kUnroll = DefaultUnroll<T>::value>
cudaError_t LaunchCornerPool(cudaStream_t stream, Direction dir,
                             const Shape4& s, const T* x, T* y,
                             bool accumulate = false) {
  if (s.size() == 0) return cudaSuccess;
  const LineView v = MakeLineView(dir, s);
  const unsigned int blocks = NumBlocks(v.outer * v.row);
  if (accumulate) {
    CornerPoolForwardKernel<T, true, kUnroll>
        <<<blocks, kThreadsPerBlock, 0, stream>>>(x, y, v);
  } else {
    CornerPoolForwardKernel<T, false, kUnroll>
        <<<blocks, kThreadsPerBlock, 0, stream>>>(x, y, v);
  }
  return cudaGetLastError();
}

template <typename T, int kUnroll = DefaultUnroll<T>::value>
cudaError_t LaunchCornerPoolGrad(cudaStream_t stream, Direction dir,
                                 const Shape4& s, const T* x, const T* dy,
                                 T* dx) {
  if (s.size() == 0) return cudaSuccess;
  const LineView v = MakeLineView(dir, s);
  CornerPoolBackwardKernel<T, kUnroll>
      <<<NumBlocks(v.outer * v.row), kThreadsPerBlock, 0, stream>>>(x, dy, dx,
                                                                     v);
  return cudaGetLastError();
}

// y = pool_first(a) + pool_second(b): the first pool writes y, the second adds
// to it in place (two launches on the same stream; 5 tensor passes instead of
// the 7 of pool + pool + add).
template <typename T, int kUnroll = DefaultUnroll<T>::value>
cudaError_t LaunchFusedCornerPool(cudaStream_t stream, Corner corner,
                                  const Shape4& s, const T* a, const T* b,
                                  T* y) {
  cudaError_t err = LaunchCornerPool<T, kUnroll>(
      stream, FirstDirection(corner), s, a, y, /*accumulate=*/false);
  if (err != cudaSuccess) return err;
  return LaunchCornerPool<T, kUnroll>(stream, SecondDirection(corner), s, b, y,
                                      /*accumulate=*/true);
}

}  // namespace cuda
}  // namespace corner_pool
}  // namespace cornernet_tf

#endif  // CORNERNET_TF_CUSTOM_OPS_CORNER_POOL_CORNER_POOL_CUDA_CUH_
