// Standalone timing of the attention kernels, without torch: build it on any machine with nvcc
// (bash benchmarks/kernel_lab.sh OUT [ARCH]: the extension's nvcc flags), carry the binary to the
// GPU machine, compare kernel variants there in one process each. Checks 16 output rows against
// a double-precision host reference, and that every row of block scores sums to its row count.
// Usage: kernel_lab <head_dim> <block_size> <n> <heads> <iters> <density>...
//        (LAB_SEARCH=1 also times attn_search and block_scores on the shape; LAB_GAUSS=1: ~N(0, 1)
//        data like bench_kernels.py instead of uniform [-1, 1))
//        (LAB_HOPPER=1: also the sm_90a sparse kernel, checked and timed beside the portable one,
//        and at block 64 the sm_90a wide-key-tile variant (row "sm90w", LAB_NOWIDE=1 leaves it
//        out); with LAB_SEARCH=1 also the sm_90a attn_search (the op's one pass, the two-pass
//        dense + score kernels "sm90 2p", the one pass with the early softmax "sm90 es") and
//        block_scores; at block 128 the sparse kernel with the early softmax, row "sm90 es";
//        the sparse kernel with lazy rescaling of O and without the early softmax, row "sm90 lr";
//        at D 128 the op runs the early softmax with Q in registers for Q K^T, so there "sm90 es"
//        is the op's kernel with Q read from shared memory (the op before session 22); the op's
//        block-128 kernel with a three-stage K / V ring, row "sm90 s3"; at D 64 block 64 the wide
//        kernel at two CTAs per SM is row "sm90w" and the 64-wide kernel the op ran before, row
//        "sm90 64w"; block_scores with one CTA of two warpgroups per SM, row "sm90 1c"; with two
//        such CTAs per SM (what the op runs when its four-warpgroup CTAs would not fill the SMs),
//        row "sm90 2c"; with four warpgroups and 1 / 2 of every 8 exponentials on the FMA pipe,
//        rows "sm90 4p1" / "sm90 4p2"; at block 128 the wide kernel over 64-row halves of each
//        query block as two-CTA clusters sharing each K / V tile by TMA multicast, row
//        "sm90 w128c" (the op's kernel at D 64, so there it repeats "sm90");
//        LAB_TRACE=1: at block 128 the ping-pong (the op's kernel at D 128) with each CTA's
//        timeline, summed (row "sm90 trace" and a "trace" line; "sm90 trace ds" with out stored
//        from the accumulators); at block 128 the ping-pong with out stored from the
//        accumulators instead of through shared memory and TMA, row "sm90 ds" (the op's kernel
//        at D 128 but for that);
//        LAB_SEARCH_AB=1: only attn_search, the op's (out stored from the accumulators) against
//        out through shared memory and TMA, three interleaved rounds, unchecked (the density
//        arguments are ignored);
//        LAB_DIAG=1: leave-one-out timings (rows "d1" / "d2" / "d3", wrong results, not checked,
//        against their base "d0", which is checked);
//        needs a 90a build)
//        (LAB_SHARE=f: odd query blocks keep a share f of the even neighbour's list, like the
//        overlapping lists of neighbouring query blocks in AdaSpa's searches)
//        (LAB_NK=n: n key tokens instead of N (Nq != Nk); LAB_MESSY=1: idx rows with -1 padding,
//        duplicates, out-of-range entries and empty rows, checked under the block_list.h rule)
//        kernel_lab l2 <buffer MiB>   (L2 -> SM read bandwidth: random 16 KB tiles by cp.async)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "adaspa/launch_sm80.h"
#include "adaspa/block_list.h"
#include "adaspa/flash_kernel_sm90_wide.h"
#include "adaspa/launch_sm90.h"

using namespace adaspa;
using Elem = cutlass::bfloat16_t;

#define CHECK(x)                                                                    \
  do {                                                                              \
    cudaError_t e_ = (x);                                                           \
    if (e_ != cudaSuccess) {                                                        \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

// Uniform in [-1, 1), or (gauss) close to N(0, 1): the sum of four uniforms, rescaled.
__global__ void fill(Elem* x, int64_t n, uint32_t seed, bool gauss) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < (gauss ? 4 : 1); ++j) {
      uint32_t h = (uint32_t(i) * 4u + j) * 2654435761u ^ seed;
      h ^= h >> 16; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
      acc += (h & 0xffff) / 32768.f - 1.f;
    }
    x[i] = Elem(gauss ? acc * 0.8660254f : acc);  // variance 4 / 3 -> 1
  }
}

// Every CTA streams random 16 KB tiles of a buffer into shared memory, 4 tiles in flight, the
// access pattern of the attention mainloop (cp.async.cg, 16 B per thread, 128-byte rows).
__global__ void __launch_bounds__(128) l2_read(const uint4* buf, int ntiles, int iters) {
  extern __shared__ uint4 stage[];  // 4 x 16 KB
  constexpr int kVec = 16384 / 16;  // 16-byte vectors per tile
  uint32_t h = blockIdx.x * 7919u + 17u;
  for (int it = 0; it < iters; ++it) {
    h = h * 1664525u + 1013904223u;
    const uint4* tile = buf + int64_t((h >> 8) % ntiles) * kVec;
    uint4* dst = stage + (it % 4) * kVec;
    for (int i = threadIdx.x; i < kVec; i += 128) {
      const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst + i));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(tile + i));
    }
    asm volatile("cp.async.commit_group;");
    asm volatile("cp.async.wait_group 3;");  // the buffer written next iteration has landed
  }
  asm volatile("cp.async.wait_group 0;");
}

int l2_main(int mib) {
  const int64_t bytes = int64_t(mib) << 20;
  uint4* buf;
  CHECK(cudaMalloc(&buf, bytes));
  CHECK(cudaMemset(buf, 1, bytes));
  CHECK(cudaFuncSetAttribute(l2_read, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int ctas = sms * 3, iters = 4000;
  const int ntiles = int(bytes / 16384);
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  l2_read<<<ctas, 128, 65536>>>(buf, ntiles, 100);
  CHECK(cudaEventRecord(a));
  l2_read<<<ctas, 128, 65536>>>(buf, ntiles, iters);
  CHECK(cudaEventRecord(b));
  CHECK(cudaEventSynchronize(b));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  std::printf("l2_read: %d MiB buffer, %d CTAs x %d random 16 KB tiles: %.3f ms, %.2f TB/s\n", mib, ctas, iters, ms,
              double(ctas) * iters * 16384 / (ms * 1e-3) * 1e-12);
  return 0;
}

template <int D, int BS, Kernel kKernel>
cudaError_t launch(const AttnParams& p) { return run_sm80<kKernel, DType::kBFloat16, D, BS>(p, nullptr); }

// attn_search: the dense flash kernel, then the score kernel reading its lse (as the op runs it).
template <int D, int BS>
cudaError_t launch_search(const AttnParams& p) {
  const cudaError_t err = launch<D, BS, Kernel::kFlashDense>(p);
  return err != cudaSuccess ? err : launch<D, BS, Kernel::kScore>(p);
}

template <int D, int BS>
cudaError_t launch_sm90(const AttnParams& p) { return run_sm90<Kernel::kFlashSparse, DType::kBFloat16, D, BS>(p, nullptr); }

// The hopper path's block_scores and attn_search (the one-pass kernel the op runs), and the
// two-pass attn_search it replaced (dense flash, then the score kernel; row "sm90 2p").
template <int D, int BS>
cudaError_t launch_score_sm90(const AttnParams& p) { return sm90::run_block_scores<Elem, D, BS>(p, nullptr); }
template <int D, int BS>
cudaError_t launch_search_sm90(const AttnParams& p) { return run_sm90<Kernel::kFlashSearch, DType::kBFloat16, D, BS>(p, nullptr); }
template <int D, int BS>
cudaError_t launch_search_2pass(const AttnParams& p) {
  const cudaError_t err = sm90::run_flash<Elem, D, BS, true>(p, nullptr);
  return err != cudaSuccess ? err : launch_score_sm90<D, BS>(p);
}

// The sparse kernel rescaling O lazily, without the early softmax (row "sm90 lr": kLazyRescale,
// the portable kernels' online_softmax_update): the wide variant at D 128 block 64, else
// flash_sm90_kernel.
template <int D, int BS>
cudaError_t launch_sm90_lazy(const AttnParams& p) {
  if constexpr (D == 128 && BS == 64) return sm90::run_flash_sparse_wide<Elem, D, BS, true>(p, nullptr);
  else return sm90::run_flash<Elem, D, BS, false, true>(p, nullptr);
}

// The ping-pong with the softmax of block j + 1 under the warpgroup's own P V of block j
// (kEarlySoftmax, rows "sm90 es"): the block-128 sparse kernel and the one-pass search (what the
// op runs at D 128).
template <int D, int BS>
cudaError_t launch_sm90_early(const AttnParams& p) { return sm90::run_flash<Elem, D, BS, false, true, true>(p, nullptr); }
template <int D, int BS>
cudaError_t launch_search_early(const AttnParams& p) { return sm90::run_flash_search<Elem, D, BS, true, true>(p, nullptr); }
// The op's attn_search with out stored through shared memory and TMA instead of from the
// accumulators (LAB_SEARCH_AB).
template <int D, int BS>
cudaError_t launch_search_tma(const AttnParams& p) {
  return sm90::run_flash_search<Elem, D, BS, true, D == 128, true>(p, nullptr);
}

// LAB_DIAG=1, leave-one-out diagnostics (wrong results, timed only): flash_sm90_kernel (lazy at
// block 128, the 64-wide eager kernel at 64; no early softmax; kDiag 0 = the base, row
// "d0") without its softmax (d1), without P V (d2) or without Q K^T (d3); the score kernel
// without exponentials (d1) or without Q K^T (d2).
template <int D, int BS, int kDiag>
cudaError_t launch_sm90_diag(const AttnParams& p) {
  return sm90::run_flash<Elem, D, BS, false, BS == 128, false, kDiag>(p, nullptr);
}
template <int D, int BS, int kDiag>
cudaError_t launch_score_diag(const AttnParams& p) { return sm90::run_block_scores<Elem, D, BS, kDiag>(p, nullptr); }
// block_scores with one CTA of two warpgroups per SM (two S tiles per consumer, four K stages;
// row "1c").
template <int D, int BS>
cudaError_t launch_score_1c(const AttnParams& p) { return sm90::run_score<Elem, D, BS, 0, 1>(p, nullptr); }
// block_scores with two CTAs of two warpgroups (128 query rows) per SM (row "2c"): the op's kernel
// on grids of fewer 256-row CTAs than SMs.
template <int D, int BS>
cudaError_t launch_score_2c(const AttnParams& p) { return sm90::run_score<Elem, D, BS, 0, 2, 2>(p, nullptr); }
// block_scores with four warpgroups per CTA and kPoly of every 8 exponentials on the FMA pipe
// (exp2_poly; rows "4p1", "4p2").
template <int D, int BS, int kPoly>
cudaError_t launch_score_poly(const AttnParams& p) { return sm90::run_score<Elem, D, BS, 0, 1, 4, kPoly>(p, nullptr); }
// The block-128 ping-pong as the op runs it at D 128 (Q in registers for Q K^T); kDiag 4 writes
// each CTA's timeline into p.scores (LAB_TRACE=1, rows "sm90 trace" / "sm90 trace ds"); kTmaStore
// false: out stored from the accumulators instead of through shared memory and TMA (rows
// "sm90 ds", "sm90 trace ds").
template <int D, int BS, int kDiag, bool kTmaStore>
cudaError_t launch_sm90_pingpong(const AttnParams& p) {
  return sm90::run_flash<Elem, D, BS, false, true, D == 128, kDiag, 2, kTmaStore, D == 128>(p, nullptr);
}

// The block-128 kernel as the op runs it (lazy; the early softmax and Q in registers at D 128) with
// a K / V ring of three stages instead of two (row "sm90 s3"). Not at block 64: there a third
// stage would cost a resident CTA (four per SM at D 64, two of the wide kernel at D 128), a
// confound.
template <int D, int BS>
cudaError_t launch_sm90_s3(const AttnParams& p) {
  return sm90::run_flash<Elem, D, BS, false, true, D == 128, 0, 3, true, D == 128>(p, nullptr);
}

// Block 64 with 128-wide key tiles of two listed blocks (flash_kernel_sm90_wide.h).
template <int D>
cudaError_t launch_sm90_wide(const AttnParams& p) { return sm90::run_flash_sparse_wide<Elem, D, 64>(p, nullptr); }
// Block 128 on the wide kernel (row "sm90 w128c", the op's kernel at D 64): a CTA takes one 64-row
// half of a query block, the two halves a cluster each loading half of every K / V tile into both
// by TMA multicast; lazy, three CTAs per SM at D 64 and two at D 128 as at block 64.
template <int D>
cudaError_t launch_sm90_w128(const AttnParams& p) {
  return sm90::run_flash_sparse_wide<Elem, D, 128, true, D == 64 ? 3 : 2>(p, nullptr);
}

using Launch = cudaError_t (*)(const AttnParams&);

float time_ms(Launch fn, const AttnParams& p, int iters, cudaEvent_t a, cudaEvent_t b) {
  for (int i = 0; i < 3; ++i) CHECK(fn(p));
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; ++i) {
    CHECK(cudaEventRecord(a));
    CHECK(fn(p));
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    CHECK(cudaEventElapsedTime(&ms[i], a, b));
  }
  std::sort(ms.begin(), ms.end());
  return ms[iters / 2];
}

// Element i of row r, head h of a host copy of q or out ([H, nq, D]) or of k or v ([H, nk, D]).
double host_at(int n, int D, const std::vector<Elem>& x, int h, int r, int i) {
  return double(float(x[(int64_t(h) * n + r) * D + i]));
}

// scale * q[h, r] . k[h, c] in double precision.
double host_logit(const AttnParams& p, int D, const std::vector<Elem>& hq, const std::vector<Elem>& hk, int h, int r,
                  int c) {
  double d = 0;
  for (int i = 0; i < D; ++i) d += host_at(p.nq, D, hq, h, r, i) * host_at(p.nk, D, hk, h, c, i);
  return d * p.scale;
}

// Max |out - reference| over random rows (64 below 8K tokens, else 16; double precision on the
// host, the same idx rows walked under the block_list.h rule; a row visiting nothing must be 0).
// hq, hk, hv: host copies of p.q, p.k, p.v.
double check_rows(const AttnParams& p, int D, int BS, const std::vector<int32_t>& hidx, std::mt19937& rng,
                  const std::vector<Elem>& hq, const std::vector<Elem>& hk, const std::vector<Elem>& hv) {
  std::vector<Elem> ho(hq.size());
  CHECK(cudaMemcpy(ho.data(), p.out, ho.size() * sizeof(Elem), cudaMemcpyDeviceToHost));
  const int N = p.nq, M = p.mq, H = p.heads, keep = p.kmax;
  double max_err = 0.0;
  for (int t = 0; t < (N < 8192 ? 64 : 16); ++t) {
    const int h = rng() % H, r = rng() % N, qb = r / BS;
    std::vector<int> cols;
    for (int j = 0, last = -1; j < keep; ++j) {
      const int blk = hidx[(int64_t(h) * M + qb) * keep + j];
      if (!block_accepted(blk, last, p.mk)) continue;
      last = blk;
      for (int c = blk * BS; c < std::min(p.nk, (blk + 1) * BS); ++c) cols.push_back(c);
    }
    std::vector<double> s, acc(D, 0.0);
    double mx = -1e300, sum = 0.0;
    for (int c : cols) {
      s.push_back(host_logit(p, D, hq, hk, h, r, c));
      mx = std::max(mx, s.back());
    }
    for (size_t j = 0; j < cols.size(); ++j) {
      const double e = std::exp(s[j] - mx);
      sum += e;
      for (int i = 0; i < D; ++i) acc[i] += e * host_at(p.nk, D, hv, h, cols[j], i);
    }
    for (int i = 0; i < D; ++i)
      max_err = std::max(max_err, std::abs((cols.empty() ? 0.0 : acc[i] / sum) - host_at(p.nq, D, ho, h, r, i)));
  }
  return max_err;
}

// Worst |score - reference| / (2e-3 * |reference| + 1e-4 * BS) over two random query blocks'
// whole score rows (the test's rtol 2e-3, atol 1e-4 * bs): lse and scores in double precision on
// the host.
double check_scores(const AttnParams& p, int D, int BS, std::mt19937& rng, const std::vector<Elem>& hq,
                    const std::vector<Elem>& hk, const std::vector<float>& hs) {
  const int N = p.nq, M = p.mq, H = p.heads;
  double worst = 0.0;
  for (int t = 0; t < 2; ++t) {
    const int h = rng() % H, qb = rng() % M;
    std::vector<double> ref(M, 0.0), s(N);
    for (int r = qb * BS; r < std::min(N, (qb + 1) * BS); ++r) {
      double mx = -1e300, sum = 0.0;
      for (int c = 0; c < N; ++c) {
        s[c] = host_logit(p, D, hq, hk, h, r, c);
        mx = std::max(mx, s[c]);
      }
      for (int c = 0; c < N; ++c) sum += s[c] = std::exp(s[c] - mx);
      for (int c = 0; c < N; ++c) ref[c / BS] += s[c] / sum;
    }
    for (int j = 0; j < M; ++j)
      worst = std::max(worst, std::abs(double(hs[(int64_t(h) * M + qb) * M + j]) - ref[j]) / (std::abs(ref[j]) * 2e-3 + 1e-4 * BS));
  }
  return worst;  // <= 1: within the test tolerance
}

// Resident CTAs per SM of the sm90 sparse kernel and (block 64) the wide variant, from the
// occupancy API after a launch has set their shared memory limits.
template <int D, int BS>
void print_occupancy() {
  using T = sm90::FlashSparseTraits<Elem, D, BS>;
  int n = 0, nw = 0;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, sm90::flash_sm90_kernel<T>, T::kNThreads, T::kSmemBytes));
  if constexpr (BS == 64) {
    using W = sm90::FlashWideTraits<Elem, D>;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nw, sm90::flash_wide_sm90_kernel<W>, W::kNThreads, W::kSmemBytes));
  }
  std::printf("CTAs per SM: sm90 %d (%d B smem)%s", n, T::kSmemBytes, BS == 64 ? "" : "\n");
  if constexpr (BS == 64) std::printf(", sm90w %d (%d B smem)\n", nw, sm90::FlashWideTraits<Elem, D>::kSmemBytes);
}

template <int D, int BS>
void kernels(Launch (&k)[28]) {
  k[0] = launch<D, BS, Kernel::kFlashSparse>, k[1] = launch_search<D, BS>, k[2] = launch<D, BS, Kernel::kScore>;
  k[3] = launch_sm90<D, BS>;
  if constexpr (BS == 64) if (!std::getenv("LAB_NOWIDE")) k[4] = launch_sm90_wide<D>;
  k[5] = launch_search_sm90<D, BS>, k[6] = launch_score_sm90<D, BS>;
  k[7] = launch_sm90_lazy<D, BS>, k[8] = launch_search_2pass<D, BS>;
  if constexpr (BS == 128) k[9] = launch_sm90_early<D, BS>;
  k[10] = launch_search_early<D, BS>;
  k[11] = launch_sm90_diag<D, BS, 1>, k[12] = launch_sm90_diag<D, BS, 2>;
  k[13] = launch_score_diag<D, BS, 1>, k[14] = launch_score_diag<D, BS, 2>;
  k[18] = launch_score_1c<D, BS>, k[19] = launch_score_2c<D, BS>;
  k[20] = launch_score_poly<D, BS, 1>, k[21] = launch_score_poly<D, BS, 2>;
  k[16] = launch_sm90_diag<D, BS, 3>, k[17] = launch_sm90_diag<D, BS, 0>;
  if constexpr (BS == 128) k[15] = launch_sm90_s3<D, BS>;
  // D 64 block 64: the 64-wide kernel at four CTAs per SM, O rescaled eagerly (row "sm90 64w", the
  // op's kernel before the wide one at three CTAs per SM): the diagnostics' base kernel.
  if constexpr (D == 64 && BS == 64) k[22] = k[17];
  if constexpr (BS == 128) k[23] = launch_sm90_w128<D>;
  if constexpr (BS == 128) {
    k[24] = launch_sm90_pingpong<D, BS, 4, true>, k[25] = launch_sm90_pingpong<D, BS, 0, false>;
    k[26] = launch_sm90_pingpong<D, BS, 4, false>;
  }
  k[27] = launch_search_tma<D, BS>;
}

// LAB_TRACE=1: a CTA's timeline (kDiag 4, clock64 of its SM) summed over the grid: mean cycles
// from its start to Q in shared memory, to the first K tile, its loop, its epilogue, and the gap
// between a CTA's end and the start of the next one on the same SM (one CTA per SM at block 128).
void print_trace(const AttnParams& p, int64_t ctas, int keep) {
  std::vector<long long> t(ctas * sm90::kTraceWords);
  CHECK(cudaMemcpy(t.data(), p.scores, t.size() * sizeof(long long), cudaMemcpyDeviceToHost));
  auto w = [&](int64_t c, int i) { return t[c * sm90::kTraceWords + i]; };
  double q = 0, k = 0, loop = 0, epi = 0, gap = 0, span = 0, busy = 0;
  int64_t ngap = 0;
  std::vector<std::vector<int64_t>> by_sm(1024);
  for (int64_t c = 0; c < ctas; ++c) {
    q += w(c, sm90::kTraceQ) - w(c, sm90::kTraceStart);
    k += w(c, sm90::kTraceFirstK) - w(c, sm90::kTraceStart);
    loop += w(c, sm90::kTraceLoopEnd) - w(c, sm90::kTraceFirstK);
    epi += w(c, sm90::kTraceEnd) - w(c, sm90::kTraceLoopEnd);
    busy += w(c, sm90::kTraceEnd) - w(c, sm90::kTraceStart);
    by_sm[w(c, sm90::kTraceSm) % 1024].push_back(c);
  }
  int sms = 0;
  for (auto& v : by_sm) {
    if (v.empty()) continue;
    ++sms;
    std::sort(v.begin(), v.end(), [&](int64_t a, int64_t b) { return w(a, sm90::kTraceStart) < w(b, sm90::kTraceStart); });
    for (size_t i = 1; i < v.size(); ++i, ++ngap) gap += w(v[i], sm90::kTraceStart) - w(v[i - 1], sm90::kTraceEnd);
    span += w(v.back(), sm90::kTraceEnd) - w(v.front(), sm90::kTraceStart);
  }
  const double n = double(ctas), step = loop / n / keep, mean_gap = ngap ? gap / ngap : 0.0;
  std::printf("  trace (cycles per CTA, mean over %lld CTAs on %d SMs; loop step = loop / %d): to Q %.0f, to first K "
              "%.0f, loop %.0f (step %.0f), epilogue %.0f, gap to the next CTA %.0f; start + epilogue + gap = %.2f "
              "steps; SM span / sum of CTA spans %.3f\n",
              (long long)ctas, sms, keep, q / n, k / n, loop / n, step, epi / n, mean_gap, keep,
              (k / n + epi / n + mean_gap) / step, span / busy);
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "l2") return l2_main(std::atoi(argv[2]));
  if (argc < 7) { std::fprintf(stderr, "usage: %s D BS N H iters density...\n", argv[0]); return 2; }
  const int D = std::atoi(argv[1]), BS = std::atoi(argv[2]), N = std::atoi(argv[3]), H = std::atoi(argv[4]);
  const int iters = std::atoi(argv[5]);
  Launch k[28] = {};
  if (D == 128 && BS == 64) kernels<128, 64>(k);
  if (D == 128 && BS == 128) kernels<128, 128>(k);
  if (D == 64 && BS == 64) kernels<64, 64>(k);
  if (D == 64 && BS == 128) kernels<64, 128>(k);
  if (!k[0]) { std::fprintf(stderr, "unsupported D/BS\n"); return 2; }

  // N query tokens, NK key tokens (LAB_NK, default N); M / MK blocks.
  const int NK = std::getenv("LAB_NK") ? std::atoi(std::getenv("LAB_NK")) : N;
  const bool messy = std::getenv("LAB_MESSY") != nullptr;
  const int M = (N + BS - 1) / BS, MK = (NK + BS - 1) / BS;
  const int64_t elems = int64_t(H) * N * D, kv_elems = int64_t(H) * NK * D;
  Elem *q, *k_, *v, *o;
  float *lse, *scores;
  int32_t* idx;
  CHECK(cudaMalloc(&q, elems * sizeof(Elem)));
  CHECK(cudaMalloc(&k_, kv_elems * sizeof(Elem)));
  CHECK(cudaMalloc(&v, kv_elems * sizeof(Elem)));
  CHECK(cudaMalloc(&o, elems * sizeof(Elem)));
  CHECK(cudaMalloc(&lse, int64_t(H) * N * sizeof(float)));
  CHECK(cudaMalloc(&scores, int64_t(H) * M * MK * sizeof(float)));
  CHECK(cudaMalloc(&idx, int64_t(H) * M * MK * sizeof(int32_t)));
  const bool gauss = std::getenv("LAB_GAUSS") != nullptr;  // torch.randn-like data, as in bench_kernels.py
  fill<<<1024, 256>>>(q, elems, 1, gauss);
  fill<<<1024, 256>>>(k_, kv_elems, 2, gauss);
  fill<<<1024, 256>>>(v, kv_elems, 3, gauss);
  std::vector<Elem> hq(elems), hk(kv_elems), hv(kv_elems);
  CHECK(cudaMemcpy(hq.data(), q, elems * sizeof(Elem), cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(hk.data(), k_, kv_elems * sizeof(Elem), cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(hv.data(), v, kv_elems * sizeof(Elem), cudaMemcpyDeviceToHost));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));

  AttnParams p{};
  p.q = q; p.k = k_; p.v = v; p.out = o; p.lse = lse; p.idx = idx; p.scores = scores;
  p.q_batch_stride = p.o_batch_stride = int64_t(H) * N * D;
  p.k_batch_stride = p.v_batch_stride = int64_t(H) * NK * D;
  p.q_head_stride = p.o_head_stride = int64_t(N) * D;
  p.k_head_stride = p.v_head_stride = int64_t(NK) * D;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = D;
  p.batch = 1; p.heads = H; p.nq = N; p.nk = NK; p.mq = M; p.mk = MK;
  p.scale = 1.f / std::sqrt(float(D));
  {  // the one-pass search's scratch slots and flags, sized as the bindings size them
    int sms = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    p.search_nslots = search_nslots(linear_tiles<kSearchRows>(p), sms);
    CHECK(cudaMalloc(&p.search_ws, search_ws_floats(p, p.search_nslots) * sizeof(float)));
    CHECK(cudaMalloc(&p.search_slots, p.search_nslots * sizeof(int32_t)));
  }
  if (NK != N || messy) std::printf("Nq=%d Nk=%d%s\n", N, NK, messy ? ", messy idx rows" : "");

  if (std::getenv("LAB_SEARCH_AB")) {  // timing only: the op's attn_search against the TMA store, interleaved
    for (int r = 0; r < 3; ++r) {
      const double t_op = time_ms(k[5], p, iters, a, b), t_tma = time_ms(k[27], p, iters, a, b);
      std::printf("D=%d bs=%d N=%d H=%d  attn_search round %d: op %.3f ms, TMA store %.3f ms (TMA / op %.3f)\n", D,
                  BS, N, H, r, t_op, t_tma, t_tma / t_op);
    }
    return 0;
  }
  int status = 0;
  std::mt19937 rng(0);
  std::vector<int32_t> perm(MK);
  // LAB_SHARE=f: each entry of the even neighbour's list kept with probability f, the rest replaced
  // by random blocks; unset: every row random, as bench_kernels.py.
  const double share = std::getenv("LAB_SHARE") ? std::atof(std::getenv("LAB_SHARE")) : 0.0;
  for (int arg = 6; arg < argc; ++arg) {
    const double density = std::atof(argv[arg]);
    const int keep = std::max(1, int(std::lround(density * MK)));
    std::vector<int32_t> hidx(int64_t(H) * M * keep), clean;
    for (int64_t r = 0; r < int64_t(H) * M; ++r) {  // keep distinct random blocks per row, ascending
      for (int i = 0; i < MK; ++i) perm[i] = i;
      for (int i = 0; i < keep; ++i) std::swap(perm[i], perm[i + rng() % (MK - i)]);
      // LAB_SHARE: keep a share of the neighbouring query block's list (its entries before
      // LAB_MESSY altered them; nothing to swap in when a list holds every block)
      if (share > 0 && r % M % 2 == 1 && keep < MK) {
        std::vector<char> in(MK, 0);
        const int32_t* prev = clean.data();
        for (int i = 0; i < keep; ++i) in[prev[i]] = 1;
        for (int i = 0; i < keep; ++i) perm[i] = prev[i];
        for (int i = 0; i < keep; ++i) {
          if (rng() % 1000 < share * 1000) continue;
          int x;
          do x = rng() % MK; while (in[x]);
          in[perm[i]] = 0, in[x] = 1, perm[i] = x;
        }
      }
      std::sort(perm.begin(), perm.begin() + keep);
      std::copy(perm.begin(), perm.begin() + keep, hidx.begin() + r * keep);
      clean.assign(perm.begin(), perm.begin() + keep);
      if (messy) {  // every 7th row empty (all -1); elsewhere some -1, duplicates, out-of-range entries
        int32_t* e = hidx.data() + r * keep;
        for (int j = 0; j < keep; ++j) {
          const uint32_t x = r % 7 == 3 ? 0 : rng() % 16 + 1;
          if (x <= 2) e[j] = -1;
          else if (x == 3 && j > 0) e[j] = e[j - 1];
          else if (x == 4) e[j] = MK + j;
          else if (x == 5 && j > 0) e[j] = e[j - 1] - 1;  // below the last visited: skipped
        }
      }
    }
    CHECK(cudaMemcpy(idx, hidx.data(), hidx.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    p.kmax = keep;
    CHECK(k[0](p));
    CHECK(cudaDeviceSynchronize());
    const double max_err = check_rows(p, D, BS, hidx, rng, hq, hk, hv);
    const double ms = time_ms(k[0], p, iters, a, b);
    const double flops = 4.0 * H * double(N) * double(keep) * BS * D;  // N, NK multiples of BS here
    std::printf("D=%d bs=%d N=%d H=%d density=%.2f keep=%d  sparse %.3f ms  %.1f TF/s  max_abs_err %.2e\n", D, BS, N, H,
                density, keep, ms, flops / ms * 1e-9, max_err);
    if (!(max_err < 2e-2)) status = 1;
    if (std::getenv("LAB_HOPPER")) {
      // A hopper kernel into a poisoned output (NaN where nothing is written): checked against
      // the host reference, then timed.
      auto check_and_time = [&](Launch fn, double& err) {
        CHECK(cudaMemset(o, 0xff, elems * sizeof(Elem)));
        CHECK(fn(p));
        CHECK(cudaDeviceSynchronize());
        err = check_rows(p, D, BS, hidx, rng, hq, hk, hv);
        if (!(err < 2e-2)) status = 1;
        return time_ms(fn, p, iters, a, b);
      };
      double err90 = 0, errw = 0;
      const double ms90 = check_and_time(k[3], err90);
      std::printf("D=%d bs=%d N=%d H=%d density=%.2f keep=%d  sm90   %.3f ms  %.1f TF/s  max_abs_err %.2e  "
                  "(%.2fx portable)\n", D, BS, N, H, density, keep, ms90, flops / ms90 * 1e-9, err90, ms / ms90);
      double ms_op = ms90;  // the kernel the op runs: sm90w at D 128 block 64 (unless LAB_NOWIDE), else sm90
      if (k[4]) {
        const double msw = check_and_time(k[4], errw);
        if (arg == 6) {  // after a launch has set the wide kernel's shared memory limit
          if (D == 128) print_occupancy<128, 64>();
          if (D == 64) print_occupancy<64, 64>();
        }
        if (D == 128) ms_op = msw;
        std::printf("D=%d bs=%d N=%d H=%d density=%.2f keep=%d  sm90w  %.3f ms  %.1f TF/s  max_abs_err %.2e  "
                    "(%.2fx portable, %.2fx sm90)\n", D, BS, N, H, density, keep, msw, flops / msw * 1e-9, errw,
                    ms / msw, ms90 / msw);
      }
      // a variant of the op's kernel, checked, timed and set against it
      auto variant = [&](const char* name, Launch fn) {
        double err = 0;
        const double msv = check_and_time(fn, err);
        std::printf("D=%d bs=%d N=%d H=%d density=%.2f keep=%d  %s %.3f ms  %.1f TF/s  max_abs_err %.2e  "
                    "(%.2fx the op's kernel)\n", D, BS, N, H, density, keep, name, msv, flops / msv * 1e-9, err,
                    ms_op / msv);
      };
      variant("sm90 lr", k[7]);             // lazy rescaling of O
      if (k[9]) variant("sm90 es", k[9]);  // block 128: the early softmax
      if (k[15]) variant("sm90 s3", k[15]);  // a three-stage K / V ring
      if (k[22]) variant("sm90 64w", k[22]);  // D 64 block 64: the 64-wide kernel at four CTAs per SM
      if (k[23]) variant("sm90 w128c", k[23]);  // block 128: 64-row halves on the wide kernel, clusters
      if (k[25]) variant("sm90 ds", k[25]);  // block 128: out stored from the accumulators
      if (k[24] && std::getenv("LAB_TRACE")) {  // the block-128 ping-pong, with its timeline
        for (Launch fn : {k[24], k[26]}) {
          variant(fn == k[24] ? "sm90 trace" : "sm90 trace ds", fn);
          CHECK(fn(p));
          CHECK(cudaDeviceSynchronize());
          print_trace(p, int64_t(H) * M, keep);
        }
      }
      if (std::getenv("LAB_DIAG")) {  // leave-one-out timings, wrong results, not checked
        // The base: the kernel the diagnostics leave parts out of (the op's at block 128 but for
        // the early softmax at D 128; at block 64 the 64-wide kernel, not the op's wide one),
        // checked like the variants.
        double err0 = 0;
        const double ms0 = check_and_time(k[17], err0);
        std::printf("D=%d bs=%d N=%d H=%d density=%.2f keep=%d  sm90 d0 (the base) %.3f ms  max_abs_err %.2e  "
                    "(%.2fx the op's kernel)\n", D, BS, N, H, density, keep, ms0, err0, ms_op / ms0);
        auto diag = [&](const char* name, Launch fn) {
          const double msd = time_ms(fn, p, iters, a, b);
          std::printf("D=%d bs=%d N=%d H=%d density=%.2f keep=%d  %s %.3f ms  (%.2fx d0's time; "
                      "diagnostic, unchecked)\n", D, BS, N, H, density, keep, name, msd, msd / ms0);
        };
        diag("sm90 d1 (no softmax)", k[11]);
        diag("sm90 d2 (no P V)", k[12]);
        diag("sm90 d3 (no Q K^T)", k[16]);
      }
    }
  }
  if (std::getenv("LAB_SEARCH") && NK == N) {  // the lse of the last sparse call stands in for a cached one
    // Check: every row of scores sums to the rows of its query block (the lse is the search's own).
    const bool hopper = std::getenv("LAB_HOPPER") != nullptr;
    // 2p: the dense flash kernel, then the score kernel; es: the one pass with the early softmax
    // 1c: the op's one pass, then block_scores with one CTA per SM
    // 2c: the op's one pass, then block_scores with two CTAs of two warpgroups per SM
    // 4p1 / 4p2: the op's one pass, then block_scores of four warpgroups with 1 / 2 of every 8
    // exponentials on the FMA pipe
    const char* names[8] = {"portable", "sm90", "sm90 2p", "sm90 es", "sm90 1c", "sm90 2c", "sm90 4p1", "sm90 4p2"};
    const Launch searches[8] = {k[1], k[5], k[8], k[10], k[5], k[5], k[5], k[5]};
    const Launch score_fns[8] = {k[2], k[6], k[6], k[6], k[18], k[19], k[20], k[21]};
    for (int path = 0; path < (hopper ? 8 : 1); ++path) {
      const Launch search = searches[path], score = score_fns[path];
      const double t_search = time_ms(search, p, iters, a, b), t_score = time_ms(score, p, iters, a, b);
      // fn (the search, then the score kernel with the search's lse) into poisoned scores: the
      // worst |row sum - rows| / rows, and the float64 check (<= 1: within tolerance)
      auto check = [&](Launch fn, double& worst, double& tol) {
        CHECK(cudaMemset(scores, 0xff, int64_t(H) * M * MK * sizeof(float)));
        CHECK(fn(p));
        std::vector<float> hs(int64_t(H) * M * M);
        CHECK(cudaMemcpy(hs.data(), scores, hs.size() * sizeof(float), cudaMemcpyDeviceToHost));
        worst = 0.0;
        for (int64_t r = 0; r < int64_t(H) * M; ++r) {
          double sum = 0.0;
          for (int j = 0; j < M; ++j) sum += hs[r * M + j];
          worst = std::max(worst, std::abs(sum - std::min(BS, N - int(r % M) * BS)) / BS);
        }
        tol = check_scores(p, D, BS, rng, hq, hk, hs);
        if (!(worst < 1e-3) || !(tol <= 1.0)) status = 1;
      };
      double worst = 0, tol = 0, worst_s = 0, tol_s = 0;
      check(search, worst, tol);
      check(score, worst_s, tol_s);
      std::printf("D=%d bs=%d N=%d H=%d  %s attn_search %.3f ms  block_scores %.3f ms  max |row sum - rows| / rows "
                  "%.2e / %.2e  scores err / tol %.3f / %.3f\n", D, BS, N, H, names[path], t_search, t_score, worst,
                  worst_s, tol, tol_s);
    }
    if (hopper && std::getenv("LAB_DIAG")) {
      const double t_score = time_ms(k[6], p, iters, a, b);
      const double t1 = time_ms(k[13], p, iters, a, b), t2 = time_ms(k[14], p, iters, a, b);
      std::printf("D=%d bs=%d N=%d H=%d  block_scores %.3f ms, d1 (no exponentials) %.3f ms (%.2fx), d2 (no Q K^T) "
                  "%.3f ms (%.2fx); diagnostic, unchecked\n", D, BS, N, H, t_score, t1, t1 / t_score, t2, t2 / t_score);
    }
  }
  return status;
}
