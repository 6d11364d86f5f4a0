// Standalone harness for the corner-pool CUDA kernels (corner_pool_cuda.cuh),
// no TensorFlow: correctness against a CPU reference, then bandwidth.
//
//   make -C custom_ops/corner_pool/tests          (or ./build.sh; ARCH=sm_90 by default)
//   custom_ops/corner_pool/tests/harness [--quick] [--bench-only] [--no-bench]
//
// Correctness: every direction, float / half / bfloat16, odd sizes, 1xN and
// Nx1 maps, C = 1, inputs with many ties, constant planes and NaNs; forward,
// backward (official tie rule) and the fused top-left / bottom-right pools.
// All comparisons are bitwise: the max is exact, and gradient sums are made in
// float in scan order on both sides, then rounded once.
//
// Bandwidth: each kernel on a large tensor against cudaMemcpy device-to-device
// in the same run (GB/s = bytes read + written / time; memcpy reads and writes
// each byte once). Prints one PASS/FAIL line per check and a final summary;
// exits 1 on any failure.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../corner_pool_cuda.cuh"

using cornernet_tf::corner_pool::Corner;
using cornernet_tf::corner_pool::Direction;
using cornernet_tf::corner_pool::Shape4;
namespace cp = cornernet_tf::corner_pool::cuda;

#define CUDA_CHECK(expr)                                                     \
  do {                                                                       \
    cudaError_t err_ = (expr);                                               \
    if (err_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", #expr, __FILE__, \
                   __LINE__, cudaGetErrorString(err_));                      \
      std::exit(2);                                                          \
    }                                                                        \
  } while (0)

static int g_failures = 0;
static int g_checks = 0;

// ---------------------------------------------------------------------------
// Host-side element conversions.

static float HostToFloat(float v) { return v; }
static float HostToFloat(__half v) { return __half2float(v); }
static float HostToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
T HostFromFloat(float v);
template <>
float HostFromFloat<float>(float v) {
  return v;
}
template <>
__half HostFromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__nv_bfloat16 HostFromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <typename T>
const char* TypeName();
template <>
const char* TypeName<float>() {
  return "float";
}
template <>
const char* TypeName<__half>() {
  return "half";
}
template <>
const char* TypeName<__nv_bfloat16>() {
  return "bfloat16";
}

static const char* DirName(Direction d) {
  switch (d) {
    case Direction::kTop: return "top";
    case Direction::kBottom: return "bottom";
    case Direction::kLeft: return "left";
    default: return "right";
  }
}

// ---------------------------------------------------------------------------
// CPU reference, written from the definition (explicit NHWC loops, independent
// of the LineView machinery of the kernels).

struct Index {
  Shape4 s;
  int64_t operator()(int64_t n, int64_t h, int64_t w, int64_t c) const {
    return ((n * s.h + h) * s.w + w) * s.c + c;
  }
};

static bool RefReplaces(float v, float m) {
  return v > m || (std::isnan(v) && !std::isnan(m));
}

// Visits every scan line: calls line(positions) with the flat indices of the
// line in scan order (from the far edge).
template <typename F>
static void ForEachLine(Direction d, const Shape4& s, F line) {
  Index at{s};
  std::vector<int64_t> pos;
  const bool vertical = d == Direction::kTop || d == Direction::kBottom;
  const bool from_far_end = d == Direction::kTop || d == Direction::kLeft;
  const int64_t len = vertical ? s.h : s.w;
  const int64_t across = vertical ? s.w : s.h;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t a = 0; a < across; ++a)
      for (int64_t c = 0; c < s.c; ++c) {
        pos.clear();
        for (int64_t i = 0; i < len; ++i) {
          const int64_t j = from_far_end ? len - 1 - i : i;
          pos.push_back(vertical ? at(n, j, a, c) : at(n, a, j, c));
        }
        line(pos);
      }
}

template <typename T>
static void RefForward(Direction d, const Shape4& s, const std::vector<T>& x,
                       std::vector<float>* y) {
  y->assign(x.size(), 0.0f);
  ForEachLine(d, s, [&](const std::vector<int64_t>& pos) {
    float m = HostToFloat(x[pos[0]]);
    for (size_t i = 0; i < pos.size(); ++i) {
      const float v = HostToFloat(x[pos[i]]);
      if (i > 0 && RefReplaces(v, m)) m = v;
      (*y)[pos[i]] = m;
    }
  });
}

// The official backward: argmax from the far edge, replaced only by a strictly
// greater value; dx[argmax] accumulates dy in scan order (0 + ... for a new
// argmax, a copy of dy for the first position).
template <typename T>
static void RefBackward(Direction d, const Shape4& s, const std::vector<T>& x,
                        const std::vector<T>& dy, std::vector<T>* dx) {
  std::vector<float> acc(x.size(), 0.0f);
  ForEachLine(d, s, [&](const std::vector<int64_t>& pos) {
    float m = HostToFloat(x[pos[0]]);
    int64_t arg = pos[0];
    acc[arg] = HostToFloat(dy[pos[0]]);
    for (size_t i = 1; i < pos.size(); ++i) {
      const float v = HostToFloat(x[pos[i]]);
      if (RefReplaces(v, m)) {
        m = v;
        arg = pos[i];
      }
      acc[arg] += HostToFloat(dy[pos[i]]);
    }
  });
  dx->resize(x.size());
  for (size_t i = 0; i < x.size(); ++i) (*dx)[i] = HostFromFloat<T>(acc[i]);
}

// ---------------------------------------------------------------------------
// Device helpers.

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t count = 0;
  explicit DeviceBuffer(size_t n) : count(n) {
    CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)));
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  void Upload(const std::vector<T>& h) {
    CUDA_CHECK(cudaMemcpy(ptr, h.data(), count * sizeof(T),
                          cudaMemcpyHostToDevice));
  }
  std::vector<T> Download() const {
    std::vector<T> h(count);
    CUDA_CHECK(cudaMemcpy(h.data(), ptr, count * sizeof(T),
                          cudaMemcpyDeviceToHost));
    return h;
  }
  void Fill(unsigned char byte) {
    CUDA_CHECK(cudaMemset(ptr, byte, count * sizeof(T)));
  }
};

// Bitwise equality, except that any two NaNs match (NaN payloads may differ
// between host and device float -> half conversions).
template <typename T>
static bool BitwiseEqual(const std::vector<T>& a, const std::vector<T>& b,
                         size_t* first_bad) {
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(HostToFloat(a[i])) && std::isnan(HostToFloat(b[i]))) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) {
      *first_bad = i;
      return false;
    }
  }
  return true;
}

template <typename T>
static void Report(bool ok, const std::string& what, const std::vector<T>& got,
                   const std::vector<T>& want, size_t bad) {
  ++g_checks;
  if (ok) {
    std::printf("PASS %s\n", what.c_str());
  } else {
    ++g_failures;
    std::printf("FAIL %s: first mismatch at flat index %zu: got %.9g, want %.9g\n",
                what.c_str(), bad, HostToFloat(got[bad]),
                HostToFloat(want[bad]));
  }
}

// Input patterns.
enum class Pattern { kNormal, kTies, kConstant, kWithNaN };
static const char* PatternName(Pattern p) {
  switch (p) {
    case Pattern::kNormal: return "normal";
    case Pattern::kTies: return "ties";
    case Pattern::kConstant: return "constant";
    default: return "nan";
  }
}

template <typename T>
static std::vector<T> MakeInput(const Shape4& s, Pattern p, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-2, 2);
  std::vector<T> v(s.size());
  for (auto& e : v) {
    float f = 0.0f;
    switch (p) {
      case Pattern::kNormal: f = normal(rng); break;
      case Pattern::kTies: f = static_cast<float>(small(rng)); break;
      case Pattern::kConstant: f = -1.5f; break;
      case Pattern::kWithNaN:
        f = (rng() % 17 == 0) ? NAN : static_cast<float>(small(rng));
        break;
    }
    e = HostFromFloat<T>(f);
  }
  return v;
}

// ---------------------------------------------------------------------------
// Correctness.

template <typename T>
static void CheckShape(const Shape4& s, Pattern pattern, uint32_t seed) {
  const std::vector<T> x = MakeInput<T>(s, pattern, seed);
  const std::vector<T> dy = MakeInput<T>(s, Pattern::kNormal, seed + 1);
  const std::vector<T> b = MakeInput<T>(s, Pattern::kTies, seed + 2);
  DeviceBuffer<T> dx_in(s.size()), ddy(s.size()), db(s.size()), dout(s.size());
  dx_in.Upload(x);
  ddy.Upload(dy);
  db.Upload(b);
  char shape[96];
  std::snprintf(shape, sizeof(shape), "[%lld,%lld,%lld,%lld]",
                static_cast<long long>(s.n), static_cast<long long>(s.h),
                static_cast<long long>(s.w), static_cast<long long>(s.c));
  const std::string tag = std::string(TypeName<T>()) + " " + shape + " " +
                          PatternName(pattern);
  const Direction dirs[] = {Direction::kTop, Direction::kBottom,
                            Direction::kLeft, Direction::kRight};
  std::vector<std::vector<float>> ref_fwd(4);
  for (int i = 0; i < 4; ++i) {
    const Direction d = dirs[i];
    // forward
    RefForward(d, s, x, &ref_fwd[i]);
    std::vector<T> want(s.size());
    for (size_t k = 0; k < want.size(); ++k)
      want[k] = HostFromFloat<T>(ref_fwd[i][k]);
    dout.Fill(0xAB);  // garbage: every element must be written
    CUDA_CHECK(cp::LaunchCornerPool(0, d, s, dx_in.ptr, dout.ptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> got = dout.Download();
    size_t bad = 0;
    Report(BitwiseEqual(got, want, &bad),
           std::string("forward ") + DirName(d) + " " + tag, got, want, bad);
    // backward
    std::vector<T> want_dx;
    RefBackward(d, s, x, dy, &want_dx);
    dout.Fill(0xAB);
    CUDA_CHECK(cp::LaunchCornerPoolGrad(0, d, s, dx_in.ptr, ddy.ptr, dout.ptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    got = dout.Download();
    Report(BitwiseEqual(got, want_dx, &bad),
           std::string("backward ") + DirName(d) + " " + tag, got, want_dx,
           bad);
  }
  // fused: first pool of x + second pool of b, summed in float, rounded once
  const Corner corners[] = {Corner::kTopLeft, Corner::kBottomRight};
  for (Corner k : corners) {
    std::vector<float> second;
    RefForward(cornernet_tf::corner_pool::SecondDirection(k), s, b, &second);
    const std::vector<float>& first =
        ref_fwd[k == Corner::kTopLeft ? 0 : 1];
    std::vector<T> want(s.size());
    for (size_t e = 0; e < want.size(); ++e) {
      want[e] = HostFromFloat<T>(HostToFloat(HostFromFloat<T>(first[e])) +
                                 HostToFloat(HostFromFloat<T>(second[e])));
    }
    dout.Fill(0xAB);
    CUDA_CHECK(cp::LaunchFusedCornerPool(0, k, s, dx_in.ptr, db.ptr, dout.ptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<T> got = dout.Download();
    size_t bad = 0;
    Report(BitwiseEqual(got, want, &bad),
           std::string("fused ") +
               (k == Corner::kTopLeft ? "top_left " : "bottom_right ") + tag,
           got, want, bad);
  }
}

template <typename T>
static void CheckType(bool quick) {
  std::vector<Shape4> shapes = {
      {2, 7, 9, 3},    // the reference fixture's size
      {1, 1, 17, 5},   // 1 x N map
      {1, 19, 1, 5},   // N x 1 map
      {3, 13, 11, 1},  // one channel
      {2, 33, 65, 37}, // odd sizes, lines longer than the unroll
  };
  if (!quick) shapes.push_back({1, 128, 128, 64});
  uint32_t seed = 1;
  for (const Shape4& s : shapes) {
    CheckShape<T>(s, Pattern::kNormal, seed++);
    CheckShape<T>(s, Pattern::kTies, seed++);
  }
  CheckShape<T>({2, 9, 10, 4}, Pattern::kConstant, seed++);
  CheckShape<T>({2, 21, 23, 6}, Pattern::kWithNaN, seed++);
}

// ---------------------------------------------------------------------------
// Bandwidth.

struct Timer {
  cudaEvent_t start, stop;
  Timer() {
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~Timer() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  // Median-free but warm: average over `reps` launches after 3 warm-ups.
  template <typename F>
  double Milliseconds(F fn, int reps) {
    for (int i = 0; i < 3; ++i) fn();
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaEventRecord(start));
    for (int i = 0; i < reps; ++i) fn();
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return ms / reps;
  }
};

template <typename T>
static void Bench(const Shape4& s, int reps) {
  const size_t bytes = s.size() * sizeof(T);
  DeviceBuffer<T> x(s.size()), dy(s.size()), b(s.size()), y(s.size());
  x.Upload(MakeInput<T>(s, Pattern::kNormal, 11));
  dy.Upload(MakeInput<T>(s, Pattern::kNormal, 12));
  b.Upload(MakeInput<T>(s, Pattern::kNormal, 13));
  Timer timer;
  const double copy_ms = timer.Milliseconds(
      [&] {
        CUDA_CHECK(cudaMemcpyAsync(y.ptr, x.ptr, bytes,
                                   cudaMemcpyDeviceToDevice, 0));
      },
      reps);
  const double copy_gbs = 2.0 * bytes / (copy_ms * 1e6);
  std::printf(
      "BENCH %s [%lld,%lld,%lld,%lld] (%.1f MB/tensor): cudaMemcpy D2D %.3f ms "
      "= %.0f GB/s\n",
      TypeName<T>(), static_cast<long long>(s.n), static_cast<long long>(s.h),
      static_cast<long long>(s.w), static_cast<long long>(s.c), bytes / 1e6,
      copy_ms, copy_gbs);
  auto line = [&](const std::string& what, double ms, double passes) {
    const double gbs = passes * bytes / (ms * 1e6);
    std::printf("GB/s %-32s %8.3f ms  %7.0f GB/s  %5.1f%% of memcpy\n",
                what.c_str(), ms, gbs, 100.0 * gbs / copy_gbs);
  };
  const Direction dirs[] = {Direction::kTop, Direction::kBottom,
                            Direction::kLeft, Direction::kRight};
  for (Direction d : dirs) {
    line(std::string("forward ") + DirName(d),
         timer.Milliseconds(
             [&] { CUDA_CHECK(cp::LaunchCornerPool(0, d, s, x.ptr, y.ptr)); },
             reps),
         2.0);
  }
  for (Direction d : dirs) {
    line(std::string("backward ") + DirName(d),
         timer.Milliseconds(
             [&] {
               CUDA_CHECK(
                   cp::LaunchCornerPoolGrad(0, d, s, x.ptr, dy.ptr, y.ptr));
             },
             reps),
         3.0);
  }
  // Fused top-left: read a, write y, read b, read y, write y = 5 passes, vs
  // 7 for top(a), left(b) and their sum as three kernels.
  line("fused top_left",
       timer.Milliseconds(
           [&] {
             CUDA_CHECK(cp::LaunchFusedCornerPool(0, Corner::kTopLeft, s, x.ptr,
                                                  b.ptr, y.ptr));
           },
           reps),
       5.0);
}

// Unroll sweep for the float forward (tuning aid for DefaultUnroll).
template <int kUnroll>
static void BenchUnroll(const Shape4& s, int reps, float* x, float* y,
                        double copy_gbs) {
  Timer timer;
  const size_t bytes = s.size() * sizeof(float);
  const Direction dirs[] = {Direction::kTop, Direction::kLeft};
  for (Direction d : dirs) {
    const double ms = timer.Milliseconds(
        [&] {
          CUDA_CHECK((cp::LaunchCornerPool<float, kUnroll>(0, d, s, x, y)));
        },
        reps);
    const double gbs = 2.0 * bytes / (ms * 1e6);
    std::printf("GB/s forward %-6s float unroll %-2d      %8.3f ms  %7.0f GB/s  "
                "%5.1f%% of memcpy\n",
                DirName(d), kUnroll, ms, gbs, 100.0 * gbs / copy_gbs);
  }
}

int main(int argc, char** argv) {
  bool quick = false, bench = true, check = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--no-bench") bench = false;
    else if (a == "--bench-only") check = false;
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--no-bench] [--bench-only]\n",
                   argv[0]);
      return 2;
    }
  }
  int device = 0;
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::printf("device: %s (sm_%d%d, %.1f GB)\n", prop.name, prop.major,
              prop.minor, prop.totalGlobalMem / 1e9);

  if (check) {
    CheckType<float>(quick);
    CheckType<__half>(quick);
    CheckType<__nv_bfloat16>(quick);
    // Empty tensors launch nothing and succeed.
    ++g_checks;
    if (cp::LaunchCornerPool<float>(0, Direction::kTop, Shape4{0, 4, 4, 4},
                                    nullptr, nullptr) == cudaSuccess) {
      std::printf("PASS empty tensor\n");
    } else {
      ++g_failures;
      std::printf("FAIL empty tensor\n");
    }
  }
  if (bench) {
    const int reps = quick ? 5 : 20;
    // CornerNet's pool input at batch 8 (Hourglass-104: 128 channels, 128x128)
    // and a larger one.
    Bench<float>({8, 128, 128, 128}, reps);
    Bench<float>({32, 128, 128, 128}, reps);
    Bench<__half>({8, 128, 128, 128}, reps);
    Bench<__nv_bfloat16>({8, 128, 128, 128}, reps);
    const Shape4 s{8, 128, 128, 128};
    DeviceBuffer<float> x(s.size()), y(s.size());
    x.Upload(MakeInput<float>(s, Pattern::kNormal, 21));
    Timer timer;
    const size_t bytes = s.size() * sizeof(float);
    const double copy_ms = timer.Milliseconds(
        [&] {
          CUDA_CHECK(cudaMemcpyAsync(y.ptr, x.ptr, bytes,
                                     cudaMemcpyDeviceToDevice, 0));
        },
        reps);
    const double copy_gbs = 2.0 * bytes / (copy_ms * 1e6);
    BenchUnroll<1>(s, reps, x.ptr, y.ptr, copy_gbs);
    BenchUnroll<4>(s, reps, x.ptr, y.ptr, copy_gbs);
    BenchUnroll<8>(s, reps, x.ptr, y.ptr, copy_gbs);
    BenchUnroll<16>(s, reps, x.ptr, y.ptr, copy_gbs);
  }
  if (check) {
    std::printf("%s: %d checks, %d failed\n", g_failures ? "FAIL" : "PASS",
                g_checks, g_failures);
  }
  return g_failures ? 1 : 0;
}
