// Vectorised CPU kernels of cortexnet's CSR backend (cortexnet/sparse/native.py builds and loads this file).
//
// Two products over a matrix stored as column panels (cortexnet/sparse/_csr_index.py: panel p holds columns
// [c0, c1) as its own CSR block with local column indices and row pointers local to its synapse slice):
//
//   spmm:  out[r, k] += sum_e val[e] * x[c0 + col[e], k]                         (W @ X, W^T @ G)
//   sddmm: acc[e]    += sum_s sum_k g[s, r, k] * x[s, c0 + col[e], k]             (value gradient)
//
// Why a kernel of our own: MKL's sparse x dense product and PyTorch's sampled_addmm run at a quarter of the
// GEMM ceiling on the dev CPU (benchmarks/README.md). Here the dense operand's row slice of a panel stays in
// L1/L2, a synapse costs one index and one value load plus K/16 vector FMAs, and the accumulators of an output
// row (spmm) or of a synapse's partial dot products (sddmm) live in registers. GCC/Clang vector extensions
// (no intrinsics): the compiler lowers a 64-byte vector to one AVX-512 register or two AVX2/NEON ones.
//
// Determinism: every output element is summed by one thread in a fixed order (synapses in panel order, the
// K axis in fixed chunks), so results do not depend on the thread count. No allocation, no torch headers: the
// entry points take raw pointers and are called through ctypes, which releases the GIL.

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#define CN_INLINE inline __attribute__((always_inline))

namespace {

// The vector width of the target: one register (AVX-512: 64 bytes, AVX/AVX2: 32, SSE/NEON: 16).
#if defined(__AVX512F__)
constexpr int VBYTES = 64;
#elif defined(__AVX__)
constexpr int VBYTES = 32;
#else
constexpr int VBYTES = 16;
#endif

template <typename T>
struct V {
  typedef T type __attribute__((vector_size(VBYTES)));
  static constexpr int L = VBYTES / sizeof(T);
};

// A chunk of the K axis is up to 4 vectors (AVX2: 32 floats, one B = 32 row): two accumulator sets of 4 plus
// the operands fit the 16 registers of AVX2. The accumulators are named variables, not arrays, so that the
// compiler keeps them in registers (GCC spills arrays of vectors to the stack).
template <typename T>
CN_INLINE typename V<T>::type load(const T* p) {
  typename V<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
CN_INLINE void store(T* p, typename V<T>::type v) {
  std::memcpy(p, &v, sizeof(v));
}

// Horizontal sum by halving: add the upper half of the vector to the lower (extracts of the register, no
// shuffle masks) down to 16 bytes, then a fixed tree over the last lanes; a fixed order, so deterministic.
template <typename T, int BYTES>
CN_INLINE T hsum_bytes(const T* p) {
  if constexpr (BYTES <= 16) {
    constexpr int n = BYTES / int(sizeof(T));
    if constexpr (n == 1) {
      return p[0];
    } else if constexpr (n == 2) {
      return p[0] + p[1];
    } else {
      return (p[0] + p[2]) + (p[1] + p[3]);
    }
  } else {
    typedef T H __attribute__((vector_size(BYTES / 2)));
    H lo, hi;
    std::memcpy(&lo, p, sizeof(H));
    std::memcpy(&hi, p + BYTES / 2 / sizeof(T), sizeof(H));
    lo += hi;
    T buf[BYTES / 2 / sizeof(T)];
    std::memcpy(buf, &lo, sizeof(H));
    return hsum_bytes<T, BYTES / 2>(buf);
  }
}

template <typename T>
CN_INLINE T hsum(typename V<T>::type v) {
  T buf[V<T>::L];
  std::memcpy(buf, &v, sizeof(v));
  return hsum_bytes<T, VBYTES>(buf);
}

// Run f(part) for part in [0, parts) on `parts` threads. Built with OpenMP, the parts run on the OpenMP runtime
// already in the process: PyTorch's (its wheels bundle libgomp.so.1 and the loader reuses a loaded library of the
// same soname), so the kernels share its thread team. Separate threads would compete with that team's threads,
// which spin for a while after each PyTorch op: on 2 cores that doubled the time of a product.
template <typename F>
void run_parts(int parts, F f) {
  if (parts <= 1) {
    f(0);
    return;
  }
#if defined(_OPENMP)
#pragma omp parallel num_threads(parts)
  {
    const int t = omp_get_thread_num();
    if (t < parts) f(t);
  }
#else
  std::vector<std::thread> pool;
  pool.reserve(parts - 1);
  for (int t = 1; t < parts; ++t) pool.emplace_back(f, t);
  f(0);
  for (auto& th : pool) th.join();
#endif
}

// ---- spmm -------------------------------------------------------------------------------------------------
// One row of one panel, one chunk of NV vectors (1, 2 or 4) of the K axis; two accumulator sets for even/odd
// synapses so that 2 NV independent FMA chains hide the FMA latency.
template <typename T, typename I, int NV>
CN_INLINE void spmm_row_vec(const I* col, const T* val, int64_t e0, int64_t e1, const T* x, int64_t ldx, T* o) {
  using Vt = typename V<T>::type;
  constexpr int L = V<T>::L;
  Vt a0 = load(o), a1{}, a2{}, a3{}, b0{}, b1{}, b2{}, b3{};
  if constexpr (NV > 1) a1 = load(o + L);
  if constexpr (NV > 2) {
    a2 = load(o + 2 * L);
    a3 = load(o + 3 * L);
  }
  int64_t e = e0;
  for (; e + 1 < e1; e += 2) {
    const T* x0 = x + int64_t(col[e]) * ldx;
    const T* x1 = x + int64_t(col[e + 1]) * ldx;
    const T v0 = val[e], v1 = val[e + 1];
    a0 += v0 * load(x0);
    b0 += v1 * load(x1);
    if constexpr (NV > 1) {
      a1 += v0 * load(x0 + L);
      b1 += v1 * load(x1 + L);
    }
    if constexpr (NV > 2) {
      a2 += v0 * load(x0 + 2 * L);
      b2 += v1 * load(x1 + 2 * L);
      a3 += v0 * load(x0 + 3 * L);
      b3 += v1 * load(x1 + 3 * L);
    }
  }
  if (e < e1) {
    const T* x0 = x + int64_t(col[e]) * ldx;
    const T v0 = val[e];
    a0 += v0 * load(x0);
    if constexpr (NV > 1) a1 += v0 * load(x0 + L);
    if constexpr (NV > 2) {
      a2 += v0 * load(x0 + 2 * L);
      a3 += v0 * load(x0 + 3 * L);
    }
  }
  store(o, a0 + b0);
  if constexpr (NV > 1) store(o + L, a1 + b1);
  if constexpr (NV > 2) {
    store(o + 2 * L, a2 + b2);
    store(o + 3 * L, a3 + b3);
  }
}

// The columns [k0, k1) of a row that do not fill a vector (k1 - k0 < L), scalar.
template <typename T, typename I>
CN_INLINE void spmm_row_tail(const I* col, const T* val, int64_t e0, int64_t e1, const T* x, int64_t ldx, T* o,
                          int64_t width) {
  T acc[V<T>::L];
  for (int64_t k = 0; k < width; ++k) acc[k] = o[k];
  for (int64_t e = e0; e < e1; ++e) {
    const T* xr = x + int64_t(col[e]) * ldx;
    const T v = val[e];
    for (int64_t k = 0; k < width; ++k) acc[k] += v * xr[k];
  }
  for (int64_t k = 0; k < width; ++k) o[k] = acc[k];
}

template <typename T, typename I>
void spmm_rows(int64_t r0, int64_t r1, int64_t n_panels, int64_t n_rows, int64_t K, const int64_t* bounds,
               const I* crow, const I* col, const T* val, const T* x, int64_t ldx, T* out, int64_t ldo) {
  constexpr int L = V<T>::L;
  for (int64_t p = 0; p < n_panels; ++p) {
    const int64_t c0 = bounds[4 * p], e0 = bounds[4 * p + 2], e1 = bounds[4 * p + 3];
    if (e1 == e0) continue;
    const I* cp = crow + p * (n_rows + 1);
    const I* colp = col + e0;
    const T* valp = val + e0;
    const T* xp = x + c0 * ldx;
    // K outermost within the panel: the dense slice touched is (panel columns x chunk), whatever K is.
    for (int64_t k = 0; k < K;) {
      const int64_t left = K - k;
      const int nv = left >= 4 * L ? 4 : left >= 2 * L ? 2 : left >= L ? 1 : 0;
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t a = cp[r], b = cp[r + 1];
        if (a == b) continue;
        T* o = out + r * ldo + k;
        const T* xk = xp + k;
        if (nv == 4)
          spmm_row_vec<T, I, 4>(colp, valp, a, b, xk, ldx, o);
        else if (nv == 2)
          spmm_row_vec<T, I, 2>(colp, valp, a, b, xk, ldx, o);
        else if (nv == 1)
          spmm_row_vec<T, I, 1>(colp, valp, a, b, xk, ldx, o);
        else
          spmm_row_tail<T, I>(colp, valp, a, b, xk, ldx, o, left);
      }
      k += nv > 0 ? int64_t(nv) * L : left;
    }
  }
}

// ---- sddmm ------------------------------------------------------------------------------------------------
// Synapses e and e+1 of one row (when `two`), a chunk of NV vectors (1, 2 or 4) of K, steps [0, S): the
// partial dot products stay in registers over the steps and are reduced once; g's vectors serve both synapses.
template <typename T, typename I, int NV>
CN_INLINE void sddmm_pair_vec(const I* col, int64_t e, bool two, const T* g, int64_t gs, const T* x, int64_t xs,
                              int64_t ldx, int64_t S, T* acc) {
  using Vt = typename V<T>::type;
  constexpr int L = V<T>::L;
  Vt a0{}, a1{}, a2{}, a3{}, b0{}, b1{}, b2{}, b3{};
  const int64_t o0 = int64_t(col[e]) * ldx, o1 = two ? int64_t(col[e + 1]) * ldx : o0;
  for (int64_t s = 0; s < S; ++s) {
    const T* gr = g + s * gs;
    const T* x0 = x + s * xs + o0;
    const T* x1 = x + s * xs + o1;
    Vt gv = load(gr);
    a0 += gv * load(x0);
    b0 += gv * load(x1);
    if constexpr (NV > 1) {
      gv = load(gr + L);
      a1 += gv * load(x0 + L);
      b1 += gv * load(x1 + L);
    }
    if constexpr (NV > 2) {
      gv = load(gr + 2 * L);
      a2 += gv * load(x0 + 2 * L);
      b2 += gv * load(x1 + 2 * L);
      gv = load(gr + 3 * L);
      a3 += gv * load(x0 + 3 * L);
      b3 += gv * load(x1 + 3 * L);
    }
  }
  acc[e] += hsum<T>((a0 + a1) + (a2 + a3));
  if (two) acc[e + 1] += hsum<T>((b0 + b1) + (b2 + b3));
}

template <typename T, typename I>
CN_INLINE void sddmm_one_tail(const I* col, int64_t e, const T* g, int64_t gs, const T* x, int64_t xs, int64_t ldx,
                           int64_t S, int64_t width, T* acc) {
  const int64_t o = int64_t(col[e]) * ldx;
  T s_acc = 0;
  for (int64_t s = 0; s < S; ++s) {
    const T* gr = g + s * gs;
    const T* xr = x + s * xs + o;
    for (int64_t k = 0; k < width; ++k) s_acc += gr[k] * xr[k];
  }
  acc[e] += s_acc;
}

// Steps per block: the dense slices a block touches, panel columns x block x chunk, stay in L2.
constexpr int64_t SDDMM_STEP_BLOCK = 4;

template <typename T, typename I>
void sddmm_rows(int64_t r0, int64_t r1, int64_t n_panels, int64_t n_rows, int64_t S, int64_t K,
                const int64_t* bounds, const I* crow, const I* col, const T* g, int64_t gs, int64_t ldg,
                const T* x, int64_t xs, int64_t ldx, T* acc) {
  constexpr int L = V<T>::L;
  // Steps outermost: a block's rows of g (4 steps x this thread's rows) stay in L3 while every panel reads them;
  // with panels outermost all of g came from memory once per panel (~90 ms of 415 at N = 10,000, p = 0.1).
  for (int64_t s0 = 0; s0 < S; s0 += SDDMM_STEP_BLOCK) {
    const int64_t sn = S - s0 < SDDMM_STEP_BLOCK ? S - s0 : SDDMM_STEP_BLOCK;
    for (int64_t p = 0; p < n_panels; ++p) {
      const int64_t c0 = bounds[4 * p], e0 = bounds[4 * p + 2], e1 = bounds[4 * p + 3];
      if (e1 == e0) continue;
      const I* cp = crow + p * (n_rows + 1);
      const I* colp = col + e0;
      T* accp = acc + e0;
      for (int64_t k = 0; k < K;) {
        const int64_t left = K - k;
        const int nv = left >= 4 * L ? 4 : left >= 2 * L ? 2 : left >= L ? 1 : 0;
        const T* xk = x + s0 * xs + c0 * ldx + k;
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t a = cp[r], b = cp[r + 1];
          if (a == b) continue;
          const T* gk = g + s0 * gs + r * ldg + k;
          if (nv == 0) {
            for (int64_t e = a; e < b; ++e) sddmm_one_tail<T, I>(colp, e, gk, gs, xk, xs, ldx, sn, left, accp);
            continue;
          }
          for (int64_t e = a; e < b; e += 2) {
            const bool two = e + 1 < b;
            if (nv == 4)
              sddmm_pair_vec<T, I, 4>(colp, e, two, gk, gs, xk, xs, ldx, sn, accp);
            else if (nv == 2)
              sddmm_pair_vec<T, I, 2>(colp, e, two, gk, gs, xk, xs, ldx, sn, accp);
            else
              sddmm_pair_vec<T, I, 1>(colp, e, two, gk, gs, xk, xs, ldx, sn, accp);
          }
        }
        k += nv > 0 ? int64_t(nv) * L : left;
      }
    }
  }
}

// ---- permutations ---------------------------------------------------------------------------------------
// dst[i] = src[perm[i]] (gather) or dst[perm[i]] = src[i] (scatter): canonical <-> panel order of the values
// and of their gradient, once per batch. PyTorch's index_select / index_copy_ run these on one core.
template <typename T, typename I>
void permute(bool scatter, int64_t n, const void* src, const void* perm, void* dst, int parts) {
  const T* s = static_cast<const T*>(src);
  const I* p = static_cast<const I*>(perm);
  T* d = static_cast<T*>(dst);
  run_parts(parts, [&](int t) {
    const int64_t a = n * t / parts, b = n * (t + 1) / parts;
    if (scatter)
      for (int64_t i = a; i < b; ++i) d[p[i]] = s[i];
    else
      for (int64_t i = a; i < b; ++i) d[i] = s[p[i]];
  });
}

// ---- layout ---------------------------------------------------------------------------------------------
// dst (A, C, R) = src (A, R, C) with src rows of stride ld (unit stride along C), in 16 x 16 tiles that stay in
// L1: the recurrence's (T, B, N) <-> (T, N, B) copies, four per batch, ~3x faster than PyTorch's strided copy.
template <typename T>
void swap_last(int64_t A, int64_t R, int64_t C, const void* src, int64_t sa, int64_t ld, void* dst, int parts) {
  constexpr int64_t TB = 16;
  const T* s = static_cast<const T*>(src);
  T* d = static_cast<T*>(dst);
  const int64_t tiles_c = (C + TB - 1) / TB;
  const int64_t jobs = A * tiles_c;
  run_parts(parts, [&](int t) {
    for (int64_t job = jobs * t / parts; job < jobs * (t + 1) / parts; ++job) {
      const int64_t a = job / tiles_c, c0 = (job % tiles_c) * TB, c1 = c0 + TB < C ? c0 + TB : C;
      const T* sa_ = s + a * sa;
      T* da = d + a * C * R;
      for (int64_t r0 = 0; r0 < R; r0 += TB) {
        const int64_t r1 = r0 + TB < R ? r0 + TB : R;
        for (int64_t c = c0; c < c1; ++c)
          for (int64_t r = r0; r < r1; ++r) da[c * R + r] = sa_[r * ld + c];
      }
    }
  });
}

template <typename T, typename I>
void spmm(int64_t n_panels, int64_t n_rows, int64_t K, const int64_t* bounds, const void* crow, const void* col,
          const void* val, const void* x, int64_t ldx, void* out, int64_t ldo, const int64_t* splits, int parts) {
  run_parts(parts, [&](int t) {
    spmm_rows<T, I>(splits[t], splits[t + 1], n_panels, n_rows, K, bounds, static_cast<const I*>(crow),
                    static_cast<const I*>(col), static_cast<const T*>(val), static_cast<const T*>(x), ldx,
                    static_cast<T*>(out), ldo);
  });
}

template <typename T, typename I>
void sddmm(int64_t n_panels, int64_t n_rows, int64_t S, int64_t K, const int64_t* bounds, const void* crow,
           const void* col, const void* g, int64_t gs, int64_t ldg, const void* x, int64_t xs, int64_t ldx,
           void* acc, const int64_t* splits, int parts) {
  run_parts(parts, [&](int t) {
    sddmm_rows<T, I>(splits[t], splits[t + 1], n_panels, n_rows, S, K, bounds, static_cast<const I*>(crow),
                     static_cast<const I*>(col), static_cast<const T*>(g), gs, ldg, static_cast<const T*>(x), xs,
                     ldx, static_cast<T*>(acc));
  });
}

}  // namespace

// C entry points. dtype: 0 float32, 1 float64; itype: 0 int32, 1 int64. Row ranges [splits[t], splits[t+1])
// per thread t < parts. Returns 0, or -1 for an unknown type code.
extern "C" {

int cn_abi_version() { return 2; }

int cn_spmm(int dtype, int itype, int64_t n_panels, int64_t n_rows, int64_t K, const int64_t* bounds,
            const void* crow, const void* col, const void* val, const void* x, int64_t ldx, void* out, int64_t ldo,
            const int64_t* splits, int parts) {
  if (dtype == 0 && itype == 0)
    spmm<float, int32_t>(n_panels, n_rows, K, bounds, crow, col, val, x, ldx, out, ldo, splits, parts);
  else if (dtype == 0 && itype == 1)
    spmm<float, int64_t>(n_panels, n_rows, K, bounds, crow, col, val, x, ldx, out, ldo, splits, parts);
  else if (dtype == 1 && itype == 0)
    spmm<double, int32_t>(n_panels, n_rows, K, bounds, crow, col, val, x, ldx, out, ldo, splits, parts);
  else if (dtype == 1 && itype == 1)
    spmm<double, int64_t>(n_panels, n_rows, K, bounds, crow, col, val, x, ldx, out, ldo, splits, parts);
  else
    return -1;
  return 0;
}

int cn_sddmm(int dtype, int itype, int64_t n_panels, int64_t n_rows, int64_t S, int64_t K, const int64_t* bounds,
             const void* crow, const void* col, const void* g, int64_t gs, int64_t ldg, const void* x, int64_t xs,
             int64_t ldx, void* acc, const int64_t* splits, int parts) {
  if (dtype == 0 && itype == 0)
    sddmm<float, int32_t>(n_panels, n_rows, S, K, bounds, crow, col, g, gs, ldg, x, xs, ldx, acc, splits, parts);
  else if (dtype == 0 && itype == 1)
    sddmm<float, int64_t>(n_panels, n_rows, S, K, bounds, crow, col, g, gs, ldg, x, xs, ldx, acc, splits, parts);
  else if (dtype == 1 && itype == 0)
    sddmm<double, int32_t>(n_panels, n_rows, S, K, bounds, crow, col, g, gs, ldg, x, xs, ldx, acc, splits, parts);
  else if (dtype == 1 && itype == 1)
    sddmm<double, int64_t>(n_panels, n_rows, S, K, bounds, crow, col, g, gs, ldg, x, xs, ldx, acc, splits, parts);
  else
    return -1;
  return 0;
}

int cn_permute(int dtype, int itype, int scatter, int64_t n, const void* src, const void* perm, void* dst, int parts) {
  if (dtype == 0 && itype == 0)
    permute<float, int32_t>(scatter != 0, n, src, perm, dst, parts);
  else if (dtype == 0 && itype == 1)
    permute<float, int64_t>(scatter != 0, n, src, perm, dst, parts);
  else if (dtype == 1 && itype == 0)
    permute<double, int32_t>(scatter != 0, n, src, perm, dst, parts);
  else if (dtype == 1 && itype == 1)
    permute<double, int64_t>(scatter != 0, n, src, perm, dst, parts);
  else
    return -1;
  return 0;
}

int cn_swap_last(int dtype, int64_t A, int64_t R, int64_t C, const void* src, int64_t sa, int64_t ld, void* dst,
                 int parts) {
  if (dtype == 0)
    swap_last<float>(A, R, C, src, sa, ld, dst, parts);
  else if (dtype == 1)
    swap_last<double>(A, R, C, src, sa, ld, dst, parts);
  else
    return -1;
  return 0;
}

}  // extern "C"
