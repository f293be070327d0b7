// Hopper (sm_90a) block-sparse flash forward at block 64 with 128-wide key tiles: each key tile is
// two consecutive entries of the query block's list, so a loop step is one m64n128 Q K^T, one
// softmax over 128 columns and one K = 128 P V instead of two of each at 64. The listed blocks are
// separate row ranges of K / V, so the producer issues one TMA box per 64-row half of the stage,
// each at its own block's row coordinate; wgmma reads the stage as one 128-row tile (the halves
// sit where rows 0-63 and 64-127 of a 128-row tile sit in the 128-byte-swizzled layout).
//
// Shape of a CTA: as the block-64 kernel of flash_kernel_sm90.h (one query block of 64 rows, one
// consumer warpgroup, one producer warp; two CTAs per SM at D 128, interleaving their phases
// without explicit ping-pong).
//
// Used at D 128: 1.04-1.22x the 64-wide kernel on an H200 (32K tokens, density 0.1-1.0). At D 64
// with two CTAs per SM (against the 64-wide kernel's four) it measured 0.86-1.05x; bounded to three
// (kMinCtasPerSm) and rescaling O lazily, 1.02-1.07x, so D 64 uses it that way (launch_sm90.h;
// NOTES.md).
//
// Block 128 (kListBlock 128, used at D 64): a CTA takes one 64-row half of a query block, a key
// tile is one listed block (its two 64-row halves are the two TMA boxes). The two CTAs of a query
// block walk the same list, so they form a cluster (kCluster): each loads one half of every
// K / V tile and multicasts it into both CTAs' stage, which halves the L2 -> SM bytes (64 query
// rows per 128-key tile are 64 FLOP per byte otherwise). 1.03-1.21x the block-128 ping-pong at
// D 64, and the cluster 1.00-1.06x more (H200); at D 128 the ping-pong stays faster.
//
// Odd counts: the last tile's second half is a phantom block. The producer loads it from a row
// coordinate past Nk, so TMA writes zeros (no L2 traffic; V must be finite there, since P = 0
// times NaN would poison O), and the consumer masks its 64 columns to -inf. The alternative, a
// 64-wide last step, needs a second pair of wgmma shapes (code size, registers) to save half of
// one tile's MMA per row: at density 0.1 of 32K tokens (51 blocks) that is ~1 % of the MMA work.
// Columns of the last real block past Nk are masked as in the 64-wide kernel; rows past Nq / Nk
// are zero-filled by TMA.
//
// Shared memory (one stage = 128 rows of K and of V): D 128: Q 16 KB + one K and one V stage
// (64 KB) = 80 KB, the bytes of the 64-wide kernel's two 64-row stages; two stages would be 144 KB
// and one CTA per SM. D 64: Q 8 KB + two stages of K and V (64 KB) = 72 KB, three CTAs per SM
// (the 64-wide kernel, 40 KB and 91 registers, runs four).
//
// Deadlock freedom (barriers and phases):
// - The producer warp and each consumer warp walk the same idx row with the same ListCursor, so
//   they see the same accepted blocks b_0, b_1, ... and cut them into the same tiles t_n =
//   (b_2n, b_2n+1), the last one (b_2n, phantom) when the count is odd. Both sides stop after the
//   tile whose second half is the phantom, or when the next first half is -1; an empty row gives
//   zero tiles on both sides, a row of one entry gives the single tile (b_0, phantom).
// - Tile n lives in stage s = n % kStages. The producer fills full_k[s] / full_v[s] once per tile,
//   with expect_tx of the whole 128-row stage: two 64-row boxes (four at D 128, the halves are two
//   128-byte-wide column chunks apart) whose bytes add up to it, the phantom box included (TMA
//   counts the zero-filled bytes of an out-of-bounds box like loaded ones). The consumer warps
//   wait full with parity (n / kStages) & 1 and arrive on empty_k[s] / empty_v[s] (4 arrivals, one
//   per warp, the count they were initialised with) once per tile, unconditionally.
// - Progress, by induction on n: fill n (producer) waits only for the releases of tile n - kStages,
//   which the consumers give once they have had fills <= n - kStages; tile n (consumers) waits
//   only for fill n. K and V have their own full / empty pairs and the producer issues K(n)
//   before it waits for V(n - kStages)'s release, so neither side waits on the other's later step.
// - Parity waits are unambiguous: the k-th fill of stage s (parity k & 1) needs the consumers'
//   release of the (k - 1)-th, which they give only after their wait on fill k - 1 returned, so a
//   full barrier is never two phases ahead of a waiting consumer; symmetrically the release k
//   needs fill k, which the producer issues only after its wait on release k - 1 returned.
// - The only CTA-wide barrier (__syncthreads after the mbarrier init) comes before the roles split;
//   the producer warp may exit with its copies in flight, as the consumers wait for them.
// - Cluster (block 128): both CTAs walk the same list, so they fill the same stages in the same
//   order. A fill writes both CTAs' stage s, so each empty barrier counts the releases of both
//   CTAs' consumer warps (8; each warp arrives on its own and on the peer's) and neither producer
//   overwrites a stage the other CTA still reads. Each CTA's full barrier gets its own producer's
//   arrive.expect_tx of the whole stage and the bytes of both halves; the peer's half may land
//   first (the transaction count goes below zero, the phase cannot complete without the local
//   arrival), and it cannot belong to the next fill, which needs this CTA's release of this one.
//   The second half of a short last block runs the loop too (it loads its share; it stores
//   nothing). A cluster-wide barrier after the init (before any remote arrival or multicast) and
//   one before exit (no CTA leaves while the peer may still arrive on its barriers).
//
// The kernel body exists only when compiling for sm_90a (as in flash_kernel_sm90.h).
#pragma once

#include "adaspa/flash_kernel_sm90.h"

namespace adaspa::sm90 {

// kLazyRescale: as in FlashSparseTraits (the shared online_softmax_update).
// kMinCtasPerSm: the launch bound (2 at D 128, 3 at D 64: launch_sm90.h).
// kListBlock: the op's block size. 64: a key tile is two listed blocks, a CTA one query block.
// 128: a key tile is one listed block, a CTA one 64-row half of a query block (CTAs 2i and 2i + 1
// walk the same idx row; half_cta_tile), the two a cluster (kCluster): each loads one 64-row half
// of every K / V tile and multicasts it to both, so L2 serves each tile once per query block.
template <typename Element_, int kHeadDim_, bool kLazyRescale_ = false, int kMinCtasPerSm_ = 2, int kListBlock_ = 64>
struct FlashWideTraits {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kLazyRescale = kLazyRescale_;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head dim must be 64 or 128");
  // The 64-wide block-64 kernel's traits: the Q tile, its TMA and the gmem tensor types are the same.
  using Base = FlashSparseTraits<Element, kHeadDim, 64>;

  static constexpr int kBlockSize = kListBlock_;  // rows of one listed block
  static_assert(kBlockSize == 64 || kBlockSize == 128, "block size must be 64 or 128");
  static constexpr int kBlockM = 64;                     // query rows of a CTA
  static constexpr int kBlockN = 128;                    // a key tile
  static constexpr int kBlocksPerTile = kBlockN / kBlockSize;  // listed blocks per key tile: 2 or 1
  static constexpr bool kCluster = kBlocksPerTile == 1;
  static constexpr int kClusterSize = kCluster ? 2 : 1;
  static constexpr int kConsumerThreads = 128, kProducerThreads = 32;
  static constexpr int kNThreads = kConsumerThreads + kProducerThreads;
  // 128-row stages: one at D 128 (two would leave one CTA per SM), two at D 64. Resident CTAs
  // per SM follow from registers and shared memory: D 128 two (80 KB, 163 registers); D 64
  // three (72 KB, 128 registers when bounded to three: ptxas then spills 16 bytes, stored before
  // the main loop and loaded after it, SASS checked; unbounded it takes 129 and two fit).
  static constexpr int kStages = kHeadDim == 128 ? 1 : 2;
  static constexpr int kMinCtasPerSm = kMinCtasPerSm_;

  using TiledMmaQK = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<_64, Int<kBlockN>, Int<kHeadDim>>>()));
  using TiledMmaPV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<_64, Int<kHeadDim>, Int<kBlockN>>, GMMA::Major::K,
                           GMMA::Major::MN>()));

  using SmemLayoutQ = typename Base::SmemLayoutQ;
  using SmemLayoutKV = decltype(tile_to_shape(typename Base::SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>, Int<kStages>>{}));
  using SmemLayoutVt = decltype(composition(
      SmemLayoutKV{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kBlockN>, Int<kStages>>{}, Step<_2, _1, _3>{})));
  // A stage cut into its two listed blocks: (64, head dim, half, 1, stage). At D 128 a half is two
  // 8 KB pieces 16 KB apart (each 64-column chunk holds all 128 rows, so that wgmma sees one
  // uniform row stride), so TMA writes it with two boxes.
  using SmemLayoutKVHalves = decltype(flat_divide(SmemLayoutKV{}, Shape<_64, Int<kHeadDim>>{}));
  using SmemLayoutKVHalf = decltype(SmemLayoutKVHalves{}(_, _, _0{}, _0{}, _0{}));

  static constexpr uint32_t kQBytes = Base::kQBytes;
  static constexpr uint32_t kTileBytes = kBlockN * kHeadDim * sizeof(Element);  // both halves

  using GmemTensor = typename Base::GmemTensor;
  using TmaQ = typename Base::TmaQ;
  using CopyKV = std::conditional_t<kCluster, SM90_TMA_LOAD_MULTICAST, SM90_TMA_LOAD>;
  using TmaKV = decltype(make_tma_copy(CopyKV{}, GmemTensor{}, SmemLayoutKVHalf{}, Shape<_64, Int<kHeadDim>>{}, _1{}));

  struct Params {
    AttnParams p;
    TmaQ tma_q;
    TmaKV tma_k, tma_v;
    float scale_log2;
  };

  struct SharedStorage {
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutQ>> q;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutKV>> k;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutKV>> v;
    uint64_t bar_q;
    uint64_t full_k[kStages], full_v[kStages], empty_k[kStages], empty_v[kStages];
  };
  static constexpr int kSmemBytes = sizeof(SharedStorage) + 1024;
  // 228 KB per SM, 1 KB of it reserved per CTA.
  static_assert(kMinCtasPerSm * (kSmemBytes + 1024) <= 228 * 1024, "shared memory for the CTAs per SM");
};

template <typename T>
__global__ void __launch_bounds__(T::kNThreads, T::kMinCtasPerSm)
    flash_wide_sm90_kernel(CUTE_GRID_CONSTANT typename T::Params const prm) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Element = typename T::Element;
  using SharedStorage = typename T::SharedStorage;
  constexpr int kBlockM = T::kBlockM, kBlockN = T::kBlockN, kHeadDim = T::kHeadDim, kStages = T::kStages;
  using cutlass::arch::ClusterBarrier;
  using cutlass::arch::ClusterTransactionBarrier;

  extern __shared__ char smem_raw[];
  SharedStorage& ss = *reinterpret_cast<SharedStorage*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const AttnParams& p = prm.p;
  constexpr int kBlockSize = T::kBlockSize, kBlocksPerTile = T::kBlocksPerTile;
  const CtaTile cta = kBlocksPerTile == 2 ? linear_cta_tile<kBlockM>(p) : half_cta_tile<kBlockM>(p);
  const int m_block = cta.m_block, h = cta.h, b = cta.b;
  const uint32_t rank = T::kCluster ? cute::block_rank_in_cluster() : 0;
  const int warp = __shfl_sync(0xffffffffu, threadIdx.x / 32, 0);
  const int lane = threadIdx.x % 32;

  if (threadIdx.x == 0) {
    ClusterTransactionBarrier::init(&ss.bar_q, 1);
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < kStages; ++s) {
      ClusterTransactionBarrier::init(&ss.full_k[s], 1);
      ClusterTransactionBarrier::init(&ss.full_v[s], 1);
      // one arrival per consumer warp (of both CTAs in a cluster: a stage is written in both)
      ClusterBarrier::init(&ss.empty_k[s], T::kClusterSize * T::kConsumerThreads / 32);
      ClusterBarrier::init(&ss.empty_v[s], T::kClusterSize * T::kConsumerThreads / 32);
    }
    cutlass::arch::fence_barrier_init();
  }
  // In a cluster the peer's copies and arrivals land on these barriers: both CTAs initialise first.
  if constexpr (T::kCluster) cute::cluster_sync();
  else __syncthreads();

  Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename T::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename T::SmemLayoutKV{});
  Tensor sV = make_tensor(make_smem_ptr(ss.v.data()), typename T::SmemLayoutKV{});
  const int32_t* row = p.idx + ((int64_t(b) * p.heads + h) * p.mq + m_block / (kBlockSize / kBlockM)) * p.kmax;
  // Listed blocks on the key side; 64-row block nblk64 starts at or past Nk (the phantom's
  // coordinate; at block 128 the second half of the last block may be it).
  const int nblk = (p.nk + kBlockSize - 1) / kBlockSize;
  const int nblk64 = (p.nk + 63) / 64;

  if (warp >= T::kConsumerThreads / 32) {
    // Producer warp: all lanes walk the list, lane 0 issues the copies.
    if (lane == 0) {
      prefetch_tma_descriptor(prm.tma_q.get_tma_descriptor());
      prefetch_tma_descriptor(prm.tma_k.get_tma_descriptor());
      prefetch_tma_descriptor(prm.tma_v.get_tma_descriptor());
      Tensor mQ = prm.tma_q.get_tma_tensor(make_shape(p.nq, kHeadDim, p.heads, p.batch));
      Tensor gQ = local_tile(mQ(_, _, h, b), Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(m_block, _0{}));
      auto [tQgQ, tQsQ] = tma_partition(prm.tma_q, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sQ), group_modes<0, 2>(gQ));
      ClusterTransactionBarrier::arrive_and_expect_tx(&ss.bar_q, T::kQBytes);
      copy(prm.tma_q.with(ss.bar_q, 0), tQgQ, tQsQ);
    }
    Tensor mK = prm.tma_k.get_tma_tensor(make_shape(p.nk, kHeadDim, p.heads, p.batch));
    Tensor mV = prm.tma_v.get_tma_tensor(make_shape(p.nk, kHeadDim, p.heads, p.batch));
    Tensor gK = local_tile(mK(_, _, h, b), Shape<_64, Int<kHeadDim>>{}, make_coord(_, _0{}));  // (64, D, block)
    Tensor gV = local_tile(mV(_, _, h, b), Shape<_64, Int<kHeadDim>>{}, make_coord(_, _0{}));
    Tensor sKh = flat_divide(sK, Shape<_64, Int<kHeadDim>>{});  // (64, D, half, 1, stage)
    Tensor sVh = flat_divide(sV, Shape<_64, Int<kHeadDim>>{});
    auto tK = tma_partition(prm.tma_k, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sKh), group_modes<0, 2>(gK));
    auto tV = tma_partition(prm.tma_v, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sVh), group_modes<0, 2>(gV));
    auto tKgK = get<0>(tK);  // (TMA, block)
    auto tKsK = get<1>(tK);  // (TMA, half, 1, stage)
    auto tVgV = get<0>(tV);
    auto tVsV = get<1>(tV);

    int n = 0;  // tiles issued
    auto issue = [&](int b0, int b1) {
      const int s = n % kStages;
      const uint32_t phase = ((n / kStages) - 1) & 1;  // the round that last used stage s
      if (n >= kStages) ClusterBarrier::wait(&ss.empty_k[s], phase);
      ClusterTransactionBarrier::arrive_and_expect_tx(&ss.full_k[s], T::kTileBytes);
      if constexpr (T::kCluster) {  // this CTA's half, into both CTAs (b0, b1: the halves' rows)
        copy(prm.tma_k.with(ss.full_k[s], 0b11), tKgK(_, rank ? b1 : b0), tKsK(_, rank, 0, s));
      } else {
        copy(prm.tma_k.with(ss.full_k[s], 0), tKgK(_, b0), tKsK(_, 0, 0, s));
        copy(prm.tma_k.with(ss.full_k[s], 0), tKgK(_, b1), tKsK(_, 1, 0, s));
      }
      if (n >= kStages) ClusterBarrier::wait(&ss.empty_v[s], phase);
      ClusterTransactionBarrier::arrive_and_expect_tx(&ss.full_v[s], T::kTileBytes);
      if constexpr (T::kCluster) {
        copy(prm.tma_v.with(ss.full_v[s], 0b11), tVgV(_, rank ? b1 : b0), tVsV(_, rank, 0, s));
      } else {
        copy(prm.tma_v.with(ss.full_v[s], 0), tVgV(_, b0), tVsV(_, 0, 0, s));
        copy(prm.tma_v.with(ss.full_v[s], 0), tVgV(_, b1), tVsV(_, 1, 0, s));
      }
      ++n;
    };
    ListCursor list{row};
    for (;;) {
      const int b0 = list.next(p, lane);
      if (b0 < 0) break;
      if constexpr (kBlocksPerTile == 1) {
        if (lane == 0) issue(2 * b0, 2 * b0 + 1);  // past Nk: zero-filled
      } else {
        const int b1 = list.next(p, lane);
        if (lane == 0) issue(b0, b1 >= 0 ? b1 : nblk64);  // nblk64: the zero-filled phantom
        if (b1 < 0) break;
      }
    }
  } else {
    // Consumer warpgroup: the 64 query rows.
    const int tid = threadIdx.x;
    typename T::TiledMmaQK mma_qk;
    typename T::TiledMmaPV mma_pv;
    auto thr_qk = mma_qk.get_thread_slice(tid);
    auto thr_pv = mma_pv.get_thread_slice(tid);
    Tensor sVt = make_tensor(make_smem_ptr(ss.v.data()), typename T::SmemLayoutVt{});
    Tensor tSrQ = thr_qk.partition_fragment_A(sQ);   // (MMA, MMA_M, MMA_K) descriptors
    Tensor tSrK = thr_qk.partition_fragment_B(sK);   // (MMA, MMA_N, MMA_K, stage)
    Tensor tOrV = thr_pv.partition_fragment_B(sVt);  // (MMA, MMA_N, MMA_K, stage)
    Tensor tSrS = partition_fragment_C(mma_qk, Shape<Int<kBlockM>, Int<kBlockN>>{});
    Tensor tOrO = partition_fragment_C(mma_pv, Shape<Int<kBlockM>, Int<kHeadDim>>{});
    Tensor tScS = thr_qk.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
    Tensor S = make_tensor(tSrS.data(), rowcol(tSrS.layout()));
    Tensor O = make_tensor(tOrO.data(), rowcol(tOrO.layout()));
    Tensor Sc = make_tensor(tScS.data(), rowcol(tScS.layout()));
    constexpr int kRows = decltype(size<0>(S))::value;  // 2
    static_assert(kRows == 2);

    float row_max[kRows], row_sum[kRows], correction[kRows];
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < kRows; ++r) row_max[r] = -INFINITY, row_sum[r] = 0.f;
    clear(tOrO);
    const float scale_log2 = prm.scale_log2;
    // Columns of the last listed block before Nk (1..kBlockSize).
    const int last_cols = p.nk - (nblk - 1) * kBlockSize;

    // Online softmax of a 128-column S tile whose first `valid` columns are keys (the rest: past
    // Nk in the last block, or the phantom half), masked first; then softmax_tile, as in the
    // 64-wide kernel.
    auto softmax = [&](int valid) {
      if (valid < kBlockN) {
        CUTLASS_PRAGMA_UNROLL
        for (int c = 0; c < size<1>(S); ++c)
          if (get<1>(Sc(0, c)) >= valid) {
            CUTLASS_PRAGMA_UNROLL
            for (int r = 0; r < kRows; ++r) S(r, c) = -INFINITY;
          }
      }
      softmax_tile<T::kLazyRescale>(row_max, row_sum, correction, S, O, scale_log2);
    };
    Tensor rP = make_tensor<Element>(tSrS.layout());
    Tensor tOrP = make_tensor(rP.data(), acc_as_operand_a(tSrS.layout()));
    auto to_p = [&]() {
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(tSrS); ++i) rP(i) = Element(tSrS(i));
    };
    auto release = [&](uint64_t* bar) {
      __syncwarp();
      if constexpr (T::kCluster) {  // the stage is free once both CTAs' warps are done with it
        if (lane < 2) ClusterBarrier::arrive(bar, lane, 1);
      } else {
        if (lane == 0) ClusterBarrier::arrive(bar);
      }
    };
    auto rescale_o = [&]() { rescale_tile<T::kLazyRescale>(O, correction); };

    ListCursor list{row};
    ClusterTransactionBarrier::wait(&ss.bar_q, 0);
    // One tile at a time: Q K^T, softmax, P V; K released after its Q K^T, V after its P V.
    for (int n = 0;; ++n) {
      const int b0 = list.next(p, lane);
      if (b0 < 0) break;
      const int b1 = kBlocksPerTile == 2 ? list.next(p, lane) : -1;  // -1: the second half is the phantom
      const int s = n % kStages;
      const uint32_t phase = (n / kStages) & 1;
      ClusterTransactionBarrier::wait(&ss.full_k[s], phase);
      wgmma_issue<true>(mma_qk, tSrQ, tSrK(_, _, _, s), tSrS);
      warpgroup_wait<0>();
      warpgroup_fence_operand(tSrS);
      release(&ss.empty_k[s]);
      // b0 < b1 < nblk, so only a tile's last real block can be the partial one.
      if constexpr (kBlocksPerTile == 1) softmax(b0 == nblk - 1 ? last_cols : kBlockN);
      else softmax(b1 >= 0 ? 64 + (b1 == nblk - 1 ? last_cols : 64) : (b0 == nblk - 1 ? last_cols : 64));
      rescale_o();
      to_p();
      ClusterTransactionBarrier::wait(&ss.full_v[s], phase);
      wgmma_issue<false>(mma_pv, tOrP, tOrV(_, _, _, s), tOrO);
      warpgroup_wait<0>();
      warpgroup_fence_operand(tOrO);
      release(&ss.empty_v[s]);
      // Leaving at the bottom when the list is used up (at block 128 the next() at the top would
      // say so as well) keeps ptxas from serialising the wgmmas (C7512, 160-208 bytes of spill).
      if (kBlocksPerTile == 2 ? b1 < 0 : list.exhausted(p)) break;
    }

    // Epilogue (as the 64-wide kernel): out = O / l, lse = m * scale + ln(l); a row that visited
    // nothing gets 0 and -inf.
    Tensor tOcO = thr_pv.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
    Tensor Oc = make_tensor(tOcO.data(), rowcol(tOcO.layout()));
    Element* out = static_cast<Element*>(p.out) + int64_t(b) * p.o_batch_stride + int64_t(h) * p.o_head_stride;
    float* lse = p.lse ? p.lse + (int64_t(b) * p.heads + h) * p.nq : nullptr;
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const SoftmaxRowResult res = softmax_row_result(row_sum[r], row_max[r], p.scale);
      const int grow = m_block * kBlockM + get<0>(Oc(r, 0));
      if (grow < p.nq) {
        Element* orow = out + int64_t(grow) * p.o_row_stride;
        CUTLASS_PRAGMA_UNROLL
        for (int c = 0; c < size<1>(O); c += 2) {
          const int col = get<1>(Oc(r, c));
          cutlass::Array<Element, 2> pair;
          pair[0] = Element(O(r, c) * res.inv);
          pair[1] = Element(O(r, c + 1) * res.inv);
          *reinterpret_cast<cutlass::Array<Element, 2>*>(orow + col) = pair;
        }
        if (lse && lane % 4 == 0) lse[grow] = res.lse;
      }
    }
  }
  // The peer may still arrive on this CTA's barriers: neither CTA of a cluster leaves before both
  // are done.
  if constexpr (T::kCluster) cute::cluster_sync();
#endif
}

// Same interface as run_flash.
template <typename Element, int kHeadDim, int kBlockSize, bool kLazyRescale = false, int kMinCtasPerSm = 2>
cudaError_t run_flash_sparse_wide(const AttnParams& p, cudaStream_t stream) {
  using T = FlashWideTraits<Element, kHeadDim, kLazyRescale, kMinCtasPerSm, kBlockSize>;
  using CopyKV = typename T::CopyKV;
  if (!tma_compatible(p, sizeof(Element))) return cudaErrorInvalidValue;
  typename T::Params prm;
  prm.p = p;
  const cudaError_t err = plan_sparse_tiles<T>(prm.p, stream);
  if (err != cudaSuccess) return err;
  prm.scale_log2 = p.scale * kLog2e;
  prm.tma_q = make_tma_rows<Element, kHeadDim, 64>(p, p.q, p.nq, p.q_row_stride, p.q_head_stride, p.q_batch_stride,
                                                   typename T::SmemLayoutQ{});
  prm.tma_k = make_tma_rows<Element, kHeadDim, 64, CopyKV>(p, p.k, p.nk, p.k_row_stride, p.k_head_stride, p.k_batch_stride,
                                                   typename T::SmemLayoutKVHalf{});
  prm.tma_v = make_tma_rows<Element, kHeadDim, 64, CopyKV>(p, p.v, p.nk, p.v_row_stride, p.v_head_stride, p.v_batch_stride,
                                                   typename T::SmemLayoutKVHalf{});
  // Block 128: two CTAs per idx row (half_cta_tile), a cluster.
  const int64_t tiles = T::kBlocksPerTile == 2 ? linear_tiles<64>(p) : 2 * linear_tiles<128>(p);
  return launch_grid<T>(&flash_wide_sm90_kernel<T>, prm, stream, tiles, T::kClusterSize);
}

}  // namespace adaspa::sm90
