// Hopper (sm_90a) score kernel (block_scores; the kernel lab's two-pass attn_search): S = Q K^T tile by
// tile with wgmma, reduced to one number per (query block, key block) with a given lse: the sum
// of exp(scale * s - lse). No V, no P V: the pass is bounded by the Q K^T wgmma and by the
// exponentials (one per score; at 128 x 128 tiles both cost about the same SM time at D 128, the
// exponentials twice the wgmma at D 64), so one warp's exponentials must run while the tensor
// cores compute other warps' Q K^T.
//
// Shape of a CTA: consumer warpgroups of 64 query rows each (one S tile each) that share 128-key
// tiles of K from a TMA ring filled by a producer warp. The op runs CTAs of four warpgroups (256
// rows, one CTA per SM) where the grid has at least one CTA per SM, else CTAs of two (128 rows, two
// CTAs per SM, so a small grid spreads over twice the SMs): either way four consumer warps per
// scheduler interleave their Q K^T waits and exponentials (run_block_scores, below). A warpgroup
// covers one query block at block 64, half of one at 128; a key tile two key blocks at 64, one at
// 128.
// Every consumer warp sums its share of a tile into shared memory and a writer warp adds the
// shares in a fixed order (deterministic scores) and stores them; mbarriers hand the slots over,
// so the consumers never wait for each other.
//
// The kernel body exists only when compiling for sm_90a (see flash_kernel_sm90.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cutlass/cutlass.h>
#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include <cmath>
#include <cstdint>

#include "adaspa/flash_kernel_sm90.h"
#include "adaspa/params.h"
#include "adaspa/softmax.h"
#include "adaspa/utils.h"

namespace adaspa::sm90 {

using namespace cute;

// kDiag (lab diagnostics, wrong scores; 0 in every op): 1 sums S without exponentials, 2 leaves
// the Q K^T wgmma out (the K ring and its barriers run as usual; each tile flips the low bit of
// S by a mask ptxas cannot know, one LOP3 per score: with S a known constant ptxas folded the
// exponentials to a few per row), to see what a tile's time is made of.
// kCtasPerSm: 2 gives each consumer one S tile and the ring two stages, so two CTAs share an SM;
// the TMA and writer warps are then the only other warps (320 threads x 96 registers, no
// setmaxnreg). 1 with two warpgroups (the lab's row "1c") is one CTA per SM whose consumers hold
// two S tiles each, the next tile's Q K^T in the tensor cores while one is reduced (240 registers
// after setmaxnreg). Two CTAs measured 1.02-1.07x that on an H200 (D 64 / 128, block 64 / 128).
// kConsumerWGs 4 (with kCtasPerSm 1): a CTA of 256 query rows whose four warpgroups (one S tile
// each) share every K tile: as many consumer warps per scheduler as two CTAs of two, half the K
// bytes from L2 and half the TMA writes into shared memory; 1.05-1.08x two CTAs of two on an H200.
// kPoly: of every 8 columns, how many take their exponential on the FMA pipe (exp2_poly, relative
// error < 8e-5) instead of MUFU. 1 at D 64, where MUFU binds (48 heads x 32K^2 exponentials at 16
// per clock and SM are ~0.7 of the pass): 1.015-1.03x on an H200 (four warpgroups); 2 measured
// 0.88-0.91x, and at D 128 (Q K^T binds) 1 measured 0.92-0.94x, so 0 there.
template <typename Element_, int kHeadDim_, int kBlockSize_, int kDiag_ = 0, int kCtasPerSm_ = 2,
          int kConsumerWGs_ = 2, int kPoly_ = 0>
struct ScoreTraits {
  static constexpr int kPoly = kPoly_;
  static_assert(0 <= kPoly && kPoly <= 8);
  static constexpr int kDiag = kDiag_;
  static constexpr int kCtasPerSm = kCtasPerSm_;
  static_assert(kCtasPerSm == 1 || kCtasPerSm == 2);
  static constexpr int kConsumerWGs = kConsumerWGs_;
  static_assert(kConsumerWGs == 2 || (kConsumerWGs == 4 && kCtasPerSm == 1));
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockSize = kBlockSize_;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head dim must be 64 or 128");
  static_assert(kBlockSize == 64 || kBlockSize == 128, "block size must be 64 or 128");

  static constexpr int kBlockM = 64 * kConsumerWGs, kBlockN = 128;
  static constexpr int kConsumerWarps = 4 * kConsumerWGs;
  // Query blocks per CTA, and the warpgroups of one query block.
  static constexpr int kQueryBlocks = kBlockM / kBlockSize, kWGsPerBlock = kBlockSize / 64;
  static constexpr int kConsumerThreads = 128 * kConsumerWGs;
  // One CTA per SM: each consumer holds two S tiles, 128 registers, more than a 12-warp CTA's 168
  // allow with the rest, so the producer warpgroup (a TMA warp and the writer warp working) hands
  // registers over, as in the flash kernel. Two CTAs: one S tile, a TMA warp and a writer warp.
  // Three S tiles, a share of the exponentials on the FMA pipe and warpgroups taking turns at the
  // tensor cores measured slower on an H200 (NOTES.md).
  static constexpr bool kSetMaxNReg = kCtasPerSm == 1 && kConsumerWGs == 2;
  static constexpr int kProducerThreads = kSetMaxNReg ? 128 : 64;
  static constexpr int kProducerRegs = 24, kConsumerRegs = 240;
  static constexpr int kSBuffers = kSetMaxNReg ? 2 : 1;
  static constexpr int kNThreads = kConsumerThreads + kProducerThreads;
  // K ring (no V: four stages fit next to Q at one CTA per SM, two at two) and the slots of
  // per-warp partial sums.
  static constexpr int kStages = kCtasPerSm == 1 ? 4 : 2, kSlots = 4;
  // Key blocks per key tile, and per consumer thread's partial sums.
  static constexpr int kHalves = kBlockN / kBlockSize;
  static_assert(kHalves * kWGsPerBlock == 2, "the writer's lanes go in pairs");

  using TiledMmaQK = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<_64, Int<kBlockN>, Int<kHeadDim>>>(),
      Layout<Shape<Int<kConsumerWGs>, _1, _1>>{}));
  using SmemAtom = GMMA::Layout_K_SW128_Atom<Element>;
  using SmemLayoutQ = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  using SmemLayoutK = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>, Int<kStages>>{}));
  static constexpr uint32_t kQBytes = kBlockM * kHeadDim * sizeof(Element);
  static constexpr uint32_t kKBytes = kBlockN * kHeadDim * sizeof(Element);

  using GmemTensor = typename FlashSparseTraits<Element, kHeadDim, 128>::GmemTensor;
  using TmaQ = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor{}, SmemLayoutQ{},
                                      Shape<Int<kBlockM>, Int<kHeadDim>>{}, _1{}));
  using TmaK = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor{}, SmemLayoutK{}(_, _, _0{}),
                                      Shape<Int<kBlockN>, Int<kHeadDim>>{}, _1{}));

  struct Params {
    AttnParams p;
    TmaQ tma_q;
    TmaK tma_k;
    float scale_log2;
  };

  struct SharedStorage {
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutQ>> q;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutK>> k;
    float part[kSlots][kConsumerWGs][4][kHalves];  // [slot][warpgroup][warp][key block of the tile]
    uint64_t bar_q;
    uint64_t full_k[kStages], empty_k[kStages], part_full[kSlots], part_empty[kSlots];
  };
  static constexpr int kSmemBytes = sizeof(SharedStorage) + 1024;
  static_assert(kCtasPerSm * (kSmemBytes + 1024) <= 228 * 1024, "shared memory for the CTAs per SM");
};

template <typename T>
__global__ void __launch_bounds__(T::kNThreads, T::kCtasPerSm) score_sm90_kernel(CUTE_GRID_CONSTANT typename T::Params const prm) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using SharedStorage = typename T::SharedStorage;
  constexpr int kBlockM = T::kBlockM, kBlockN = T::kBlockN, kHeadDim = T::kHeadDim;
  constexpr int kStages = T::kStages, kSlots = T::kSlots, kHalves = T::kHalves;
  using cutlass::arch::ClusterBarrier;
  using cutlass::arch::ClusterTransactionBarrier;

  extern __shared__ char smem_raw[];
  SharedStorage& ss = *reinterpret_cast<SharedStorage*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const AttnParams& p = prm.p;
  const CtaTile cta = linear_cta_tile<kBlockM>(p);
  const int m_tile = cta.m_block, h = cta.h, b = cta.b;
  const int64_t bh = int64_t(b) * p.heads + h;
  const int warp = __shfl_sync(0xffffffffu, threadIdx.x / 32, 0);
  const int lane = threadIdx.x % 32;
  const int ntiles = (p.nk + kBlockN - 1) / kBlockN;

  if (threadIdx.x == 0) {
    ClusterTransactionBarrier::init(&ss.bar_q, 1);
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < kStages; ++s) {
      ClusterTransactionBarrier::init(&ss.full_k[s], 1);
      ClusterBarrier::init(&ss.empty_k[s], T::kConsumerWarps);
    }
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < kSlots; ++s) {
      ClusterBarrier::init(&ss.part_full[s], T::kConsumerWarps);
      ClusterBarrier::init(&ss.part_empty[s], 1);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename T::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename T::SmemLayoutK{});

  if (warp >= T::kConsumerWarps) {
    if constexpr (T::kSetMaxNReg) cutlass::arch::warpgroup_reg_dealloc<T::kProducerRegs>();
    if (warp == T::kConsumerWarps) {
      // Producer warp: Q once, then every key tile through the ring.
      if (lane == 0) {
        prefetch_tma_descriptor(prm.tma_q.get_tma_descriptor());
        prefetch_tma_descriptor(prm.tma_k.get_tma_descriptor());
        Tensor mQ = prm.tma_q.get_tma_tensor(make_shape(p.nq, kHeadDim, p.heads, p.batch));
        Tensor gQ = local_tile(mQ(_, _, h, b), Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(m_tile, _0{}));
        auto [tQgQ, tQsQ] = tma_partition(prm.tma_q, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sQ), group_modes<0, 2>(gQ));
        ClusterTransactionBarrier::arrive_and_expect_tx(&ss.bar_q, T::kQBytes);
        copy(prm.tma_q.with(ss.bar_q, 0), tQgQ, tQsQ);
        Tensor mK = prm.tma_k.get_tma_tensor(make_shape(p.nk, kHeadDim, p.heads, p.batch));
        Tensor gK = local_tile(mK(_, _, h, b), Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, _0{}));
        auto [tKgK, tKsK] = tma_partition(prm.tma_k, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sK), group_modes<0, 2>(gK));
        for (int t = 0; t < ntiles; ++t) {
          const int s = t % kStages;
          if (t >= kStages) ClusterBarrier::wait(&ss.empty_k[s], ((t / kStages) - 1) & 1);
          ClusterTransactionBarrier::arrive_and_expect_tx(&ss.full_k[s], T::kKBytes);
          copy(prm.tma_k.with(ss.full_k[s], 0), tKgK(_, t), tKsK(_, s));
        }
      }
    } else if (warp == T::kConsumerWarps + 1) {
      // Writer warp: the consumer warps' partial sums of a tile, added in a fixed order, stored.
      float* scores = p.scores + bh * p.mq * p.mk;
      for (int t = 0; t < ntiles; ++t) {
        const int slot = t % kSlots;
        ClusterBarrier::wait(&ss.part_full[slot], (t / kSlots) & 1);
        if (lane < T::kConsumerWGs * kHalves) {
          // Lanes in pairs: (query block of the CTA, key block of the tile) at block 64, one query
          // block at 128, where the pair's first lane stores the sum over the block's two
          // warpgroups and their warps.
          const int qbl = T::kQueryBlocks == 1 ? 0 : lane / 2, half = kHalves == 2 ? lane % 2 : 0;
          float sum = 0.f;
          CUTLASS_PRAGMA_UNROLL
          for (int g = 0; g < T::kWGsPerBlock; ++g) {
            CUTLASS_PRAGMA_UNROLL
            for (int w = 0; w < 4; ++w) sum += ss.part[slot][qbl * T::kWGsPerBlock + g][w][half];
          }
          const int qb = T::kQueryBlocks * m_tile + qbl;
          const int kb = kHalves * t + half;
          if ((kHalves == 2 || lane == 2 * qbl) && qb < p.mq && kb < p.mk) scores[int64_t(qb) * p.mk + kb] = sum;
        }
        __syncwarp();
        if (lane == 0) ClusterBarrier::arrive(&ss.part_empty[slot]);
      }
    }
  } else {
    if constexpr (T::kSetMaxNReg) cutlass::arch::warpgroup_reg_alloc<T::kConsumerRegs>();
    const int tid = threadIdx.x;
    const int wg = tid / 128, wg_warp = warp % 4;
    typename T::TiledMmaQK mma;
    auto thr = mma.get_thread_slice(tid);
    Tensor tSrQ = thr.partition_fragment_A(sQ);  // (MMA, MMA_M, MMA_K) descriptors
    Tensor tSrK = thr.partition_fragment_B(sK);  // (MMA, MMA_N, MMA_K, stage)
    Tensor tSrS0 = partition_fragment_C(mma, Shape<Int<kBlockM>, Int<kBlockN>>{});
    Tensor tSrS1 = partition_fragment_C(mma, Shape<Int<kBlockM>, Int<kBlockN>>{});
    Tensor tScS = thr.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
    Tensor Sc = make_tensor(tScS.data(), rowcol(tScS.layout()));
    constexpr int kRows = decltype(size<0>(Sc))::value;  // 2
    constexpr int kCols = decltype(size<1>(Sc))::value;  // 64: pairs of columns every 8
    static_assert(kRows == 2 && kCols % kHalves == 0);

    // Log2-domain lse of this thread's rows; rows past Nq (zero-filled Q) get +inf and add 0 (2^-126
    // where exp2_poly runs).
    float lse_log2[kRows];
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const int grow = m_tile * kBlockM + get<0>(Sc(r, 0));
      lse_log2[r] = grow < p.nq ? p.lse[bh * p.nq + grow] * kLog2e : INFINITY;
    }
    const float scale_log2 = prm.scale_log2;
    const int last_cols = p.nk - (ntiles - 1) * kBlockN;  // valid columns of the last tile

    // Tile t's S (in tSrS): exponentials summed per key block of the tile, per warp, handed to the
    // writer; masked: the last tile, with columns past Nk. Column c of the (row, col) view is column 8 (c / 2) + 2 (lane % 4) + c % 2 of the tile,
    // so the first kCols / 2 are the tile's first 64 columns. Several running sums per thread keep
    // the additions from forming one long dependent chain.
    auto reduce_tile = [&](auto& tSrS, int t, auto masked) {
      Tensor S = make_tensor(tSrS.data(), rowcol(tSrS.layout()));
      float acc[kHalves][4];
      CUTLASS_PRAGMA_UNROLL
      for (int hf = 0; hf < kHalves; ++hf)
        CUTLASS_PRAGMA_UNROLL
        for (int j = 0; j < 4; ++j) acc[hf][j] = 0.f;
      CUTLASS_PRAGMA_UNROLL
      for (int r = 0; r < kRows; ++r) {
        CUTLASS_PRAGMA_UNROLL
        for (int c = 0; c < kCols; ++c) {
          const float x = S(r, c) * scale_log2 - lse_log2[r];
          const float e = T::kDiag == 1 ? S(r, c) : c % 8 < T::kPoly ? exp2_poly(x) : exp2_approx(x);
          float& a = acc[c / (kCols / kHalves)][(r * 2 + c) % 4];
          if constexpr (decltype(masked)::value) {
            if (get<1>(Sc(r, c)) < last_cols) a += e;
          } else {
            a += e;
          }
        }
      }
      float sums[kHalves];
      CUTLASS_PRAGMA_UNROLL
      for (int hf = 0; hf < kHalves; ++hf) sums[hf] = warp_sum((acc[hf][0] + acc[hf][1]) + (acc[hf][2] + acc[hf][3]));
      const int slot = t % kSlots;
      if (t >= kSlots) ClusterBarrier::wait(&ss.part_empty[slot], ((t / kSlots) - 1) & 1);
      if (lane == 0) {
        CUTLASS_PRAGMA_UNROLL
        for (int hf = 0; hf < kHalves; ++hf) ss.part[slot][wg][wg_warp][hf] = sums[hf];
        ClusterBarrier::arrive(&ss.part_full[slot]);
      }
    };
    auto issue = [&](auto& tSrS, int t) {
      ClusterTransactionBarrier::wait(&ss.full_k[t % kStages], (t / kStages) & 1);
      if constexpr (T::kDiag != 2) {
        wgmma_issue<true>(mma, tSrQ, tSrK(_, _, _, t % kStages), tSrS);
      } else {
        const uint32_t flip = (uint32_t(t) * 2654435761u) >> 31;
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < size(tSrS); ++i) tSrS(i) = __uint_as_float(__float_as_uint(tSrS(i)) ^ flip);
      }
    };
    // Tile t's Q K^T is complete in tSrS: free its K stage, reduce it.
    auto finish = [&](auto& tSrS, int t, auto masked) {
      warpgroup_fence_operand(tSrS);
      __syncwarp();
      if (lane == 0) ClusterBarrier::arrive(&ss.empty_k[t % kStages]);
      reduce_tile(tSrS, t, masked);
    };

    if (ntiles == 0) return;
    if constexpr (T::kDiag == 2) clear(tSrS0), clear(tSrS1);
    ClusterTransactionBarrier::wait(&ss.bar_q, 0);
    // The last tile: masked when partial.
    auto finish_last = [&](auto& tSrS, int t, bool partial) {
      if (partial) {
        finish(tSrS, t, std::true_type{});
      } else {
        finish(tSrS, t, std::false_type{});
      }
    };
    // One S tile: Q K^T, wait, reduce; the other CTA's warps fill the tensor cores meanwhile.
    if constexpr (T::kSBuffers == 1) {
      for (int t = 0; t + 1 < ntiles; ++t) {
        issue(tSrS0, t);
        warpgroup_wait<0>();
        finish(tSrS0, t, std::false_type{});
      }
      issue(tSrS0, ntiles - 1);
      warpgroup_wait<0>();
      finish_last(tSrS0, ntiles - 1, last_cols < kBlockN);
      return;
    }
    // Two S tiles alternate: Q K^T of tile t + 1 runs in the tensor cores while tile t is reduced.
    // Every issue is unconditional inside the loop and the tail is peeled, so ptxas can track which
    // accumulator is in flight (a conditional issue made it serialise the wgmmas: C7514).
    // Invariant at the loop head: tile t is in flight in S0.
    issue(tSrS0, 0);
    int t = 0;
    for (; t + 2 < ntiles; t += 2) {
      issue(tSrS1, t + 1);
      warpgroup_wait<1>();
      finish(tSrS0, t, std::false_type{});
      issue(tSrS0, t + 2);
      warpgroup_wait<1>();
      finish(tSrS1, t + 1, std::false_type{});
    }
    const bool partial_last = last_cols < kBlockN;
    if (t + 1 < ntiles) {
      issue(tSrS1, t + 1);
      warpgroup_wait<1>();
      finish(tSrS0, t, std::false_type{});
      warpgroup_wait<0>();
      finish_last(tSrS1, t + 1, partial_last);
    } else {
      warpgroup_wait<0>();
      finish_last(tSrS0, t, partial_last);
    }
  }
#endif
}

template <typename Element, int kHeadDim, int kBlockSize, int kDiag = 0, int kCtasPerSm = 2, int kConsumerWGs = 2,
          int kPoly = 0>
cudaError_t run_score(const AttnParams& p, cudaStream_t stream) {
  using T = ScoreTraits<Element, kHeadDim, kBlockSize, kDiag, kCtasPerSm, kConsumerWGs, kPoly>;
  if (!tma_compatible(p, sizeof(Element))) return cudaErrorInvalidValue;
  typename T::Params prm;
  prm.p = p;
  prm.p.tile_order = nullptr;
  prm.scale_log2 = p.scale * kLog2e;
  prm.tma_q = make_tma_rows<Element, kHeadDim, T::kBlockM>(p, p.q, p.nq, p.q_row_stride, p.q_head_stride,
                                                          p.q_batch_stride, typename T::SmemLayoutQ{});
  prm.tma_k = make_tma_rows<Element, kHeadDim, T::kBlockN>(p, p.k, p.nk, p.k_row_stride, p.k_head_stride,
                                                          p.k_batch_stride, typename T::SmemLayoutK{}(_, _, _0{}));
  return launch_query_tiles<T>(&score_sm90_kernel<T>, prm, p, stream);
}

// The op's score kernel: CTAs of four warpgroups when their grid has at least one CTA per SM of
// the current device, else two CTAs of two warpgroups per SM (a grid of fewer 256-row CTAs than
// SMs would leave SMs idle that the 128-row CTAs fill).
// Both shapes take the same exponentials on the FMA pipe (kPoly), so they give the same scores bit
// for bit.
template <typename Element, int kHeadDim, int kBlockSize, int kDiag = 0>
cudaError_t run_block_scores(const AttnParams& p, cudaStream_t stream) {
  constexpr int kPoly = kHeadDim == 64 ? 1 : 0;
  int device = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  if (linear_tiles<ScoreTraits<Element, kHeadDim, kBlockSize, kDiag, 1, 4>::kBlockM>(p) >= sms)
    return run_score<Element, kHeadDim, kBlockSize, kDiag, 1, 4, kPoly>(p, stream);
  return run_score<Element, kHeadDim, kBlockSize, kDiag, 2, 2, kPoly>(p, stream);
}

}  // namespace adaspa::sm90
