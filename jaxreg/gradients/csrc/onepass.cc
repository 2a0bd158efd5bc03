// jaxreg's one-pass CPU kernel: the value and gradient of a separable loss of a linear model
// (one output, or k outputs up to a vector's lanes) in a single read of X, for
// `jaxreg.gradients.native` (see its docstring).
//
// XLA:CPU computes z = X w, the per-element loss and dL/dz, and X^T dL/dz as separate
// kernels, so X streams from memory twice a step. Here each block of rows is read once:
// its logits, losses, dL/dz and its share of the gradient are computed while the block is
// in cache. Rows are split into fixed chunks (the same chunks whatever the thread count, so
// the result does not depend on it); each chunk sums its blocks in double precision and the
// chunks are added in order.
//
// Losses (attribute "kind"): 0 squared error (z - t)^2; 1 binary cross-entropy of
// p = sigmoid(z) with torch's clamps (logs at -100, the gradient's p(1 - p) at float(1e-12));
// 2 binary cross-entropy on logits, torch's stable form. Attribute "scale": 1/n for a mean,
// 1 for a sum (multiplies dL/dz as jnp.mean's VJP does); "mean": divide the value by n.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__GLIBC__) && !defined(JAXREG_NO_MVEC)
// glibc's vector math library (libmvec) has SIMD versions of these; declaring them lets the
// `omp simd` loops below call them (the C headers declare them only under -ffast-math).
extern "C" {
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float logf(float);
#pragma omp declare simd notinbranch
float log1pf(float);
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
double log(double);
#pragma omp declare simd notinbranch
double log1p(double);
}
#endif

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kBlock = 256;    // rows whose logits and dL/dz stay in L1
constexpr int64_t kChunk = 32768;  // rows a thread takes at a time
constexpr int kMaxVectors = 8;     // up to 8 vectors of features a row (128 float32, 64 float64)

template <typename T>
struct Vec {
  static constexpr int L = 64 / sizeof(T);
  typedef T type __attribute__((vector_size(64), aligned(sizeof(T))));
  typedef typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type I;
  typedef I index __attribute__((vector_size(64)));
};

inline float Exp(float v) { return expf(v); }
inline double Exp(double v) { return exp(v); }
inline float Log(float v) { return logf(v); }
inline double Log(double v) { return log(v); }
inline float Log1p(float v) { return log1pf(v); }
inline double Log1p(double v) { return log1p(v); }

// The sums of the lanes of L vectors, as one vector (lane j = sum of p[j]): a shuffle-add
// tree, L - 1 shuffle pairs for L rows instead of a horizontal sum per row.
template <typename T, int S>
struct Masks {
  typename Vec<T>::index lo, hi;
  Masks() {
    constexpr int L = Vec<T>::L;
    for (int i = 0; i < L; ++i) {
      int g = i / (2 * S), r = i % (2 * S);
      lo[i] = r < S ? g * 2 * S + r : L + g * 2 * S + r - S;
      hi[i] = r < S ? g * 2 * S + S + r : L + g * 2 * S + r;
    }
  }
};

template <typename T, int S, int COUNT>
inline void Tree(typename Vec<T>::type* p) {
  if constexpr (COUNT > 1) {
    static const Masks<T, S> m;
    const auto lo = m.lo, hi = m.hi;
#pragma GCC unroll 16
    for (int k = 0; k < COUNT / 2; ++k)
      p[k] = __builtin_shuffle(p[2 * k], p[2 * k + 1], lo) +
             __builtin_shuffle(p[2 * k], p[2 * k + 1], hi);
    Tree<T, 2 * S, COUNT / 2>(p);
  }
}

// Per-element losses (summed) and dL/dz * scale of m logits z against targets t.
template <typename T>
T Elementwise(int kind, const T* z, const T* t, T scale, int64_t m, T* r) {
  T acc = 0;
  if (kind == 0) {
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < m; ++j) {
      T d = z[j] - t[j];
      acc += d * d;
      r[j] = scale * (T(2) * d);
    }
  } else if (kind == 1) {
    const T eps = T(float(1e-12));
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < m; ++j) {
      T p = T(1) / (T(1) + Exp(-z[j]));
      T q = T(1) - p;
      T log_p = std::max(Log(p), T(-100));
      T log_q = std::max(p < T(0.3) ? Log1p(-p) : Log(q), T(-100));
      acc += (t[j] - T(1)) * log_q - t[j] * log_p;
      T pq = p * q;
      r[j] = scale * ((p - t[j]) / std::max(pq, eps) * pq);
    }
  } else {
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < m; ++j) {
      T zj = z[j];
      acc += (T(1) - t[j]) * zj - (std::min(zj, T(0)) - Log1p(Exp(-std::abs(zj))));
      r[j] = scale * (T(1) / (T(1) + Exp(-zj)) - t[j]);
    }
  }
  return acc;
}

// One chunk's sums: the value, and for each output o its gradient row (padded to whole
// vectors, o * padded features + feature) and bias entry.
struct Partial {
  double value = 0;
  std::vector<double> grad_w, grad_b;
};

// Rows [i0, i0 + m) of x (n, d) as rows of dp >= d values: x itself when d == dp, else
// the rows copied, zero-padded, into `scratch` (at least m * dp values).
template <typename T>
const T* BlockRows(const T* x, int64_t i0, int64_t m, int64_t d, int64_t dp,
                   std::vector<T>& scratch) {
  const T* xb = x + i0 * d;
  if (d == dp) return xb;
  for (int64_t j = 0; j < m; ++j) std::memcpy(&scratch[j * dp], xb + j * d, d * sizeof(T));
  return scratch.data();
}

// One chunk of rows [lo, hi), NV vectors of features a row (zero-padded copies of the rows
// when d is not a multiple of the vector length).
template <typename T, int NV>
void Chunk(int kind, const T* x, const T* y, const T* w, T bias, int64_t lo, int64_t hi,
           int64_t d, T scale, Partial* part) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  constexpr int64_t dp = NV * L;
  alignas(64) T wp[dp] = {};
  std::memcpy(wp, w, d * sizeof(T));
  V wv[NV];
  for (int v = 0; v < NV; ++v) std::memcpy(&wv[v], wp + v * L, sizeof(V));
  std::vector<T> scratch(d != dp ? kBlock * dp : 0, T(0));
  alignas(64) T z[kBlock], r[kBlock];
  for (int64_t i0 = lo; i0 < hi; i0 += kBlock) {
    const int64_t m = std::min(kBlock, hi - i0);
    const T* xb = BlockRows(x, i0, m, d, dp, scratch);
    auto row = [&](int64_t j) {
      V acc = *reinterpret_cast<const V*>(xb + j * dp) * wv[0];
      for (int v = 1; v < NV; ++v) acc += *reinterpret_cast<const V*>(xb + j * dp + v * L) * wv[v];
      return acc;
    };
    int64_t j = 0;
    for (; j + L <= m; j += L) {
      V p[L];
      for (int q = 0; q < L; ++q) p[q] = row(j + q);
      Tree<T, 1, L>(p);
      *reinterpret_cast<V*>(z + j) = p[0] + bias;
    }
    for (; j < m; ++j) {
      V acc = row(j);
      T s = 0;
      for (int i = 0; i < L; ++i) s += acc[i];
      z[j] = s + bias;
    }
    part->value += double(Elementwise<T>(kind, z, y + i0, scale, m, r));
    V g[NV] = {};
    T gb = 0;
    for (j = 0; j < m; ++j) {
      const T rj = r[j];
      gb += rj;
      for (int v = 0; v < NV; ++v) g[v] += rj * *reinterpret_cast<const V*>(xb + j * dp + v * L);
    }
    part->grad_b[0] += double(gb);
    for (int v = 0; v < NV; ++v)
      for (int i = 0; i < L; ++i) part->grad_w[v * L + i] += double(g[v][i]);
  }
}

// The same for k > 1 outputs (k <= L): a row's k logits are one vector, the sum over its
// features of x[i] times the vector of the k weights of feature i (no horizontal sums);
// the gradient of output o is the sum over rows of dL/dz[o] times the row.
template <typename T, int NV>
void ChunkK(int kind, const T* x, const T* y, const T* w, const T* bias, int64_t k,
            int64_t lo, int64_t hi, int64_t d, T scale, Partial* part) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  constexpr int64_t dp = NV * L;
  V wt[dp];  // wt[i][o] = w[o][i]
  for (int64_t i = 0; i < dp; ++i) {
    wt[i] = V{};
    for (int64_t o = 0; o < k && i < d; ++o) wt[i][o] = w[o * d + i];
  }
  V b{};
  for (int64_t o = 0; o < k && bias; ++o) b[o] = bias[o];
  std::vector<T> scratch(d != dp ? kBlock * dp : 0, T(0));
  std::vector<T> z(kBlock * k), r(kBlock * k);
  for (int64_t i0 = lo; i0 < hi; i0 += kBlock) {
    const int64_t m = std::min(kBlock, hi - i0);
    const T* xb = BlockRows(x, i0, m, d, dp, scratch);
    int64_t j = 0;
    for (; j + 4 <= m; j += 4) {  // four rows at a time: four independent sums
      const T* r0 = xb + j * dp;
      V a0 = b, a1 = b, a2 = b, a3 = b;
      for (int64_t i = 0; i < d; ++i) {
        const V wi = wt[i];
        a0 += r0[i] * wi;
        a1 += r0[dp + i] * wi;
        a2 += r0[2 * dp + i] * wi;
        a3 += r0[3 * dp + i] * wi;
      }
      std::memcpy(&z[j * k], &a0, k * sizeof(T));
      std::memcpy(&z[(j + 1) * k], &a1, k * sizeof(T));
      std::memcpy(&z[(j + 2) * k], &a2, k * sizeof(T));
      std::memcpy(&z[(j + 3) * k], &a3, k * sizeof(T));
    }
    for (; j < m; ++j) {
      V acc = b;
      for (int64_t i = 0; i < d; ++i) acc += xb[j * dp + i] * wt[i];
      std::memcpy(&z[j * k], &acc, k * sizeof(T));
    }
    part->value += double(Elementwise<T>(kind, z.data(), y + i0 * k, scale, m * k, r.data()));
    for (int64_t o = 0; o < k; ++o) {  // output by output: its sums stay in registers
      V g[NV] = {};
      T gb = 0;
      for (j = 0; j < m; ++j) {
        const T ro = r[j * k + o];
        gb += ro;
        for (int v = 0; v < NV; ++v) g[v] += ro * *reinterpret_cast<const V*>(xb + j * dp + v * L);
      }
      part->grad_b[o] += double(gb);
      for (int v = 0; v < NV; ++v)
        for (int i = 0; i < L; ++i) part->grad_w[o * dp + v * L + i] += double(g[v][i]);
    }
  }
}

template <typename T, int NV>
void Chunks(int kind, const T* x, const T* y, const T* w, const T* bias, int64_t k, int64_t n,
            int64_t d, T scale, int64_t threads, std::vector<Partial>& parts) {
  const int64_t chunks = static_cast<int64_t>(parts.size());
  std::atomic<int64_t> next{0};
  auto work = [&]() {
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      if (k == 1)
        Chunk<T, NV>(kind, x, y, w, bias ? *bias : T(0), lo, hi, d, scale, &parts[c]);
      else
        ChunkK<T, NV>(kind, x, y, w, bias, k, lo, hi, d, scale, &parts[c]);
    }
  };
  std::vector<std::thread> helpers;
  for (int64_t h = 1; h < std::min(threads, chunks); ++h) helpers.emplace_back(work);
  work();
  for (auto& h : helpers) h.join();
}

template <ffi::DataType DT>
ffi::Error Impl(ffi::ThreadPool pool, ffi::Buffer<DT> x, ffi::Buffer<DT> y, ffi::Buffer<DT> w,
                ffi::Buffer<DT> b, int64_t kind, double scale, bool mean,
                ffi::ResultBuffer<DT> value, ffi::ResultBuffer<DT> grad_w,
                ffi::ResultBuffer<DT> grad_b) {
  using T = ffi::NativeType<DT>;
  constexpr int L = Vec<T>::L;
  const int64_t n = x.dimensions()[0], d = x.dimensions()[1];
  const int64_t k = w.dimensions().size() == 2 ? w.dimensions()[0] : 0;
  if (x.dimensions().size() != 2 || k < 1 || k > L || w.element_count() != k * d ||
      y.element_count() != n * k || (b.element_count() != 0 && b.element_count() != k) ||
      d < 1 || d > kMaxVectors * L || kind < 0 || kind > 2)
    return ffi::Error::InvalidArgument("jaxreg onepass: unsupported shapes or loss");
  const int64_t nv = (d + L - 1) / L, dp = nv * L;
  const int64_t chunks = std::max<int64_t>(1, (n + kChunk - 1) / kChunk);
  std::vector<Partial> parts(chunks);
  for (auto& p : parts) {
    p.grad_w.assign(k * dp, 0.0);
    p.grad_b.assign(k, 0.0);
  }
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const T* xs = x.typed_data();
  const T* ys = y.typed_data();
  const T* ws = w.typed_data();
  const T* bias = b.element_count() ? b.typed_data() : nullptr;
  const T s = T(scale);
  switch (nv) {
    case 1: Chunks<T, 1>(int(kind), xs, ys, ws, bias, k, n, d, s, threads, parts); break;
    case 2: Chunks<T, 2>(int(kind), xs, ys, ws, bias, k, n, d, s, threads, parts); break;
    case 3: Chunks<T, 3>(int(kind), xs, ys, ws, bias, k, n, d, s, threads, parts); break;
    case 4: Chunks<T, 4>(int(kind), xs, ys, ws, bias, k, n, d, s, threads, parts); break;
    case 5: Chunks<T, 5>(int(kind), xs, ys, ws, bias, k, n, d, s, threads, parts); break;
    case 6: Chunks<T, 6>(int(kind), xs, ys, ws, bias, k, n, d, s, threads, parts); break;
    case 7: Chunks<T, 7>(int(kind), xs, ys, ws, bias, k, n, d, s, threads, parts); break;
    default: Chunks<T, 8>(int(kind), xs, ys, ws, bias, k, n, d, s, threads, parts); break;
  }
  double total = 0;
  std::vector<double> gw(k * dp, 0.0), gb(k, 0.0);
  for (const auto& p : parts) {
    total += p.value;
    for (int64_t o = 0; o < k; ++o) gb[o] += p.grad_b[o];
    for (int64_t i = 0; i < k * dp; ++i) gw[i] += p.grad_w[i];
  }
  value->typed_data()[0] = T(mean ? total / double(n * k) : total);
  for (int64_t o = 0; o < k; ++o)
    for (int64_t i = 0; i < d; ++i) grad_w->typed_data()[o * d + i] = T(gw[o * dp + i]);
  if (grad_b->element_count())
    for (int64_t o = 0; o < k; ++o) grad_b->typed_data()[o] = T(gb[o]);
  return ffi::Error::Success();
}

// Rows idx[0..b) of each array (n, ...) into its (b, ...) result, for a mini-batch: the
// rows are random, so each is a cache miss; prefetching a few rows ahead overlaps them
// (a plain loop waits for each in turn). An index outside 0..n-1 is an error.
ffi::Error GatherRows(ffi::AnyBuffer idx, ffi::RemainingArgs arrays, ffi::RemainingRets outs) {
  constexpr int64_t kAhead = 12;  // rows prefetched ahead of the one copied
  const int64_t b = static_cast<int64_t>(idx.element_count());
  const bool wide = idx.element_type() == ffi::DataType::S64;
  if (!wide && idx.element_type() != ffi::DataType::S32)
    return ffi::Error::InvalidArgument("jaxreg gather_rows: indices must be int32 or int64");
  const void* ip = idx.untyped_data();
  auto at = [&](int64_t j) -> int64_t {
    return wide ? static_cast<const int64_t*>(ip)[j] : static_cast<const int32_t*>(ip)[j];
  };
  struct Rows {
    const char* src;
    char* dst;
    int64_t bytes, n;
  };
  std::vector<Rows> rows;
  if (arrays.size() != outs.size())
    return ffi::Error::InvalidArgument("jaxreg gather_rows: one result an array");
  for (size_t i = 0; i < arrays.size(); ++i) {
    auto a = arrays.get<ffi::AnyBuffer>(i);
    auto o = outs.get<ffi::AnyBuffer>(i);
    if (!a.has_value() || !o.has_value())
      return ffi::Error::InvalidArgument("jaxreg gather_rows: arguments must be arrays");
    const auto dims = a->dimensions();
    const int64_t n = dims.size() ? dims[0] : 0;
    if (n < 1 || (*o)->size_bytes() * n != a->size_bytes() * b)
      return ffi::Error::InvalidArgument("jaxreg gather_rows: a result of other rows' shape");
    rows.push_back({static_cast<const char*>(a->untyped_data()),
                    static_cast<char*>((*o)->untyped_data()),
                    static_cast<int64_t>(a->size_bytes()) / n, n});
  }
  for (int64_t j = 0; j < b; ++j) {
    const int64_t r = at(j);
    if (j + kAhead < b) {
      const int64_t ra = at(j + kAhead);
      for (const auto& a : rows)
        if (ra >= 0 && ra < a.n)
          for (int64_t off = 0; off < a.bytes; off += 64) __builtin_prefetch(a.src + ra * a.bytes + off);
    }
    for (const auto& a : rows) {
      if (r < 0 || r >= a.n)
        return ffi::Error::InvalidArgument("jaxreg gather_rows: a row index out of range");
      std::memcpy(a.dst + j * a.bytes, a.src + r * a.bytes, a.bytes);
    }
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxreg_gather_rows, GatherRows,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .RemainingArgs()
                                  .RemainingRets());

#define JAXREG_BIND(DT)                  \
  ffi::Ffi::Bind()                       \
      .Ctx<ffi::ThreadPool>()            \
      .Arg<ffi::Buffer<DT>>()            \
      .Arg<ffi::Buffer<DT>>()            \
      .Arg<ffi::Buffer<DT>>()            \
      .Arg<ffi::Buffer<DT>>()            \
      .Attr<int64_t>("kind")             \
      .Attr<double>("scale")             \
      .Attr<bool>("mean")                \
      .Ret<ffi::Buffer<DT>>()            \
      .Ret<ffi::Buffer<DT>>()            \
      .Ret<ffi::Buffer<DT>>()

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxreg_onepass_f32, Impl<ffi::DataType::F32>,
                              JAXREG_BIND(ffi::DataType::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxreg_onepass_f64, Impl<ffi::DataType::F64>,
                              JAXREG_BIND(ffi::DataType::F64));
