// Corner pooling: the GPU functors, a thin wrapper that launches the kernels of
// corner_pool_cuda.cuh on the CUDA stream TensorFlow hands the op (see
// GpuStream in corner_pool.h). Compiled by nvcc only when the CUDA build is
// enabled (custom_ops/build.py); it includes no TensorFlow header, so nvcc
// never parses TensorFlow or Eigen.
#include <cuda_runtime.h>

#include "corner_pool.h"
#include "corner_pool_cuda.cuh"

namespace cornernet_tf {
namespace corner_pool {
namespace {

// The CUDA element type behind each storage type (same size and layout).
template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<Half16> {
  using type = __half;
};
template <>
struct CudaType<BFloat16> {
  using type = __nv_bfloat16;
};

static_assert(sizeof(Half16) == sizeof(__half), "half layout");
static_assert(sizeof(BFloat16) == sizeof(__nv_bfloat16), "bfloat16 layout");

template <typename T>
const typename CudaType<T>::type* AsCuda(const T* p) {
  return reinterpret_cast<const typename CudaType<T>::type*>(p);
}
template <typename T>
typename CudaType<T>::type* AsCuda(T* p) {
  return reinterpret_cast<typename CudaType<T>::type*>(p);
}

cudaStream_t StreamOf(const GpuStream& d) {
  return static_cast<cudaStream_t>(d.stream);
}

const char* Message(cudaError_t err) {
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

#define CORNER_POOL_DEFINE_GPU(T)                                              \
  template <>                                                                  \
  const char* CornerPoolFunctor<GpuStream, T>::operator()(                     \
      const GpuStream& d, Direction dir, const Shape4& s, const T* x, T* y)    \
      const {                                                                  \
    return Message(                                                            \
        cuda::LaunchCornerPool(StreamOf(d), dir, s, AsCuda(x), AsCuda(y)));    \
  }                                                                            \
  template <>                                                                  \
  const char* CornerPoolGradFunctor<GpuStream, T>::operator()(                 \
      const GpuStream& d, Direction dir, const Shape4& s, const T* x,          \
      const T* dy, T* dx) const {                                              \
    return Message(cuda::LaunchCornerPoolGrad(StreamOf(d), dir, s, AsCuda(x),  \
                                              AsCuda(dy), AsCuda(dx)));        \
  }                                                                            \
  template <>                                                                  \
  const char* FusedCornerPoolFunctor<GpuStream, T>::operator()(                \
      const GpuStream& d, Corner corner, const Shape4& s, const T* a,          \
      const T* b, T* y) const {                                                \
    return Message(cuda::LaunchFusedCornerPool(StreamOf(d), corner, s,         \
                                               AsCuda(a), AsCuda(b),           \
                                               AsCuda(y)));                    \
  }

CORNER_POOL_DEFINE_GPU(float)
CORNER_POOL_DEFINE_GPU(Half16)
CORNER_POOL_DEFINE_GPU(BFloat16)

#undef CORNER_POOL_DEFINE_GPU

}  // namespace corner_pool
}  // namespace cornernet_tf
