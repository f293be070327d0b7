// Hopper (sm_90a) block-sparse flash forward at block 64, two query blocks per CTA that load the
// union of their lists once (kernel lab; not an op's kernel).
//
// Why: at block 64 every listed block is read from L2 for one 64-row query block, 64 FLOP per
// byte of K / V; the wide kernel (flash_kernel_sm90_wide.h) pulls ~8 TB/s from L2 at density
// 0.1-0.5, near the L2 -> SM ceiling measured on an H200. Two neighbouring query blocks of one
// head often list the same key blocks (AdaSpa's lists follow the attention's locality); a block
// both list is loaded once here and read by both.
//
// Shape of a CTA: query blocks 2m (warpgroup 0) and 2m + 1 (warpgroup 1), 128 rows of Q, a
// producer warpgroup (one warp working), one CTA per SM. Each warpgroup works as the wide kernel's one: 128-key tiles of
// two listed blocks, Q K^T, softmax, P V, K released after Q K^T and V after P V. The tiles come
// from one ring of kStages stages that both warpgroups walk in the same order.
//
// Which tiles (UnionWalker, run identically by the producer and every consumer warp): the two
// lists are merged in ascending order; each block goes to one of three classes, in both lists
// (C), only in the first (A) or only in the second (B), and consecutive blocks of a class pair up
// into a tile of that class; at the end each class's unpaired block makes a tile with the
// zero-filled phantom half (as in the wide kernel). A softmax does not depend on the order of its
// keys, so a warpgroup may take its blocks in any pairing: warpgroup 0 computes the C and A tiles,
// warpgroup 1 the C and B tiles, each with at most two phantom halves (the wide kernel: one).
// Blocks loaded: |union| instead of |first| + |second|.
//
// Deadlock freedom: every consumer warp visits every tile of the sequence, waits for its K fill,
// arrives on empty_k, waits for its V fill and arrives on empty_v, whether or not its warpgroup
// computes that tile (empty barriers count all 8 consumer warps). A warp that does not compute
// the tile must still wait for the fill before it arrives: an arrival ahead of the fill could
// complete the previous round of that stage while the other warpgroup still reads it (for V: the
// producer issues K(n) before it waits for V(n - kStages)'s release, so only the V fill orders the
// V arrival). Fill n waits only for the releases of tile n - kStages, each given after that
// tile's fill; so by induction every wait ends, and a warpgroup runs at most kStages tiles ahead of
// the other. Parity waits are unambiguous for the wide kernel's reason (every warp waits every
// fill of every stage in order, and fill k + 1 of a stage needs every warp's release of fill k).
//
// The kernel body exists only when compiling for sm_90a (as in flash_kernel_sm90.h).
#pragma once

#include "adaspa/flash_kernel_sm90_wide.h"

namespace adaspa::sm90 {

// The tile sequence of two idx rows (warp-collective; all values warp-uniform). A tile is (class,
// b0, b1) with b0 < b1, or b1 = -1 for a phantom second half; class 0 = in both rows, 1 = in the
// first only, 2 = in the second only.
struct UnionWalker {
  ListCursor ca, cb;
  int ha, hb;                        // next accepted block of each row, -1 at its end
  int pc = -1, pa = -1, pb = -1;     // each class's unpaired block
  int flush = 0;                     // after both rows: the next class to flush

  __device__ __forceinline__ UnionWalker(const AttnParams& p, int lane, const int32_t* row_a, const int32_t* row_b)
      : ca{row_a}, cb{row_b ? row_b : row_a} {
    ha = ca.next(p, lane);
    hb = row_b ? cb.next(p, lane) : -1;
  }

  __device__ __forceinline__ bool next(const AttnParams& p, int lane, int& cls, int& b0, int& b1) {
    for (;;) {
      if (ha < 0 && hb < 0) {
        for (; flush < 3; ++flush) {
          const int pend = flush == 0 ? pc : flush == 1 ? pa : pb;
          if (pend >= 0) {
            cls = flush++, b0 = pend, b1 = -1;
            return true;
          }
        }
        return false;
      }
      int u, c;
      if (hb < 0 || (ha >= 0 && ha < hb)) {
        u = ha, c = 1;
        ha = ca.next(p, lane);
      } else if (ha < 0 || hb < ha) {
        u = hb, c = 2;
        hb = cb.next(p, lane);
      } else {
        u = ha, c = 0;
        ha = ca.next(p, lane);
        hb = cb.next(p, lane);
      }
      // Selects, not a reference (a reference put the three in local memory).
      const int pend = c == 0 ? pc : c == 1 ? pa : pb;
      const int keep = pend < 0 ? u : -1;
      pc = c == 0 ? keep : pc;
      pa = c == 1 ? keep : pa;
      pb = c == 2 ? keep : pb;
      if (pend >= 0) {
        cls = c, b0 = pend, b1 = u;
        return true;
      }
    }
  }
};

template <typename Element_, int kHeadDim_, bool kLazyRescale_ = true, int kStages_ = 3>
struct FlashUnionTraits {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr bool kLazyRescale = kLazyRescale_;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head dim must be 64 or 128");
  // The block-128 kernel's traits: a 128-row Q tile, its TMA and the gmem tensor types.
  using Base = FlashSparseTraits<Element, kHeadDim, 128>;
  using Wide = FlashWideTraits<Element, kHeadDim>;

  static constexpr int kBlockSize = 64;  // rows of one listed block
  static constexpr int kBlockM = 128;    // query rows of a CTA: two query blocks
  static constexpr int kBlockN = 128;    // a key tile: two listed blocks
  // Each consumer holds S, P and O and walks two lists: more than the 168 registers a CTA of three
  // warpgroups gets, so a producer warpgroup (one warp of it working; walking two lists needs
  // more than 24) hands registers over: 384 x 168 = 128 x 40 + 256 x 232.
  static constexpr int kConsumerThreads = 256, kProducerThreads = 128;
  static constexpr int kProducerRegs = 40, kConsumerRegs = 232;
  static constexpr int kNThreads = kConsumerThreads + kProducerThreads;
  static constexpr int kStages = kStages_;
  static constexpr int kMinCtasPerSm = 1;

  using AtomLayout = Layout<Shape<_2, _1, _1>>;
  using TiledMmaQK = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<_64, Int<kBlockN>, Int<kHeadDim>>>(), AtomLayout{}));
  using TiledMmaPV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<_64, Int<kHeadDim>, Int<kBlockN>>, GMMA::Major::K,
                           GMMA::Major::MN>(),
      AtomLayout{}));

  using SmemLayoutQ = typename Base::SmemLayoutQ;
  using SmemLayoutKV = decltype(tile_to_shape(typename Base::SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>, Int<kStages>>{}));
  using SmemLayoutVt = decltype(composition(
      SmemLayoutKV{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kBlockN>, Int<kStages>>{}, Step<_2, _1, _3>{})));
  using SmemLayoutKVHalf = typename Wide::SmemLayoutKVHalf;

  static constexpr uint32_t kQBytes = Base::kQBytes;
  static constexpr uint32_t kTileBytes = kBlockN * kHeadDim * sizeof(Element);

  using GmemTensor = typename Base::GmemTensor;
  using TmaQ = typename Base::TmaQ;
  using TmaKV = typename Wide::TmaKV;

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
  static_assert(kSmemBytes <= 227 * 1024, "more shared memory than a CTA may have on sm_90");
};

template <typename T>
__global__ void __launch_bounds__(T::kNThreads, 1) flash_union_sm90_kernel(CUTE_GRID_CONSTANT typename T::Params const prm) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Element = typename T::Element;
  using SharedStorage = typename T::SharedStorage;
  constexpr int kBlockM = T::kBlockM, kBlockN = T::kBlockN, kHeadDim = T::kHeadDim, kStages = T::kStages;
  constexpr int kBlockSize = T::kBlockSize;
  using cutlass::arch::ClusterBarrier;
  using cutlass::arch::ClusterTransactionBarrier;

  extern __shared__ char smem_raw[];
  SharedStorage& ss = *reinterpret_cast<SharedStorage*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const AttnParams& p = prm.p;
  const CtaTile cta = linear_cta_tile<kBlockM>(p);  // m_block: pairs of query blocks
  const int m_block = cta.m_block, h = cta.h, b = cta.b;
  const int warp = __shfl_sync(0xffffffffu, threadIdx.x / 32, 0);
  const int lane = threadIdx.x % 32;

  if (threadIdx.x == 0) {
    ClusterTransactionBarrier::init(&ss.bar_q, 1);
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < kStages; ++s) {
      ClusterTransactionBarrier::init(&ss.full_k[s], 1);
      ClusterTransactionBarrier::init(&ss.full_v[s], 1);
      ClusterBarrier::init(&ss.empty_k[s], T::kConsumerThreads / 32);  // every consumer warp, every tile
      ClusterBarrier::init(&ss.empty_v[s], T::kConsumerThreads / 32);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename T::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename T::SmemLayoutKV{});
  Tensor sV = make_tensor(make_smem_ptr(ss.v.data()), typename T::SmemLayoutKV{});
  const int32_t* row_a = p.idx + ((int64_t(b) * p.heads + h) * p.mq + 2 * m_block) * p.kmax;
  const int32_t* row_b = 2 * m_block + 1 < p.mq ? row_a + p.kmax : nullptr;
  const int nblk = (p.nk + kBlockSize - 1) / kBlockSize;  // also the phantom's 64-row block

  if (warp >= T::kConsumerThreads / 32) {
    cutlass::arch::warpgroup_reg_dealloc<T::kProducerRegs>();
    if (warp > T::kConsumerThreads / 32) return;
    // Producer warp: all lanes walk the lists, lane 0 issues the copies.
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

    UnionWalker walk(p, lane, row_a, row_b);
    int cls, b0, b1;
    for (int n = 0; walk.next(p, lane, cls, b0, b1); ++n) {
      if (lane == 0) {
        const int s = n % kStages;
        const uint32_t phase = ((n / kStages) - 1) & 1;  // the round that last used stage s
        const int b1r = b1 >= 0 ? b1 : nblk;               // the zero-filled phantom
        if (n >= kStages) ClusterBarrier::wait(&ss.empty_k[s], phase);
        ClusterTransactionBarrier::arrive_and_expect_tx(&ss.full_k[s], T::kTileBytes);
        copy(prm.tma_k.with(ss.full_k[s], 0), tKgK(_, b0), tKsK(_, 0, 0, s));
        copy(prm.tma_k.with(ss.full_k[s], 0), tKgK(_, b1r), tKsK(_, 1, 0, s));
        if (n >= kStages) ClusterBarrier::wait(&ss.empty_v[s], phase);
        ClusterTransactionBarrier::arrive_and_expect_tx(&ss.full_v[s], T::kTileBytes);
        copy(prm.tma_v.with(ss.full_v[s], 0), tVgV(_, b0), tVsV(_, 0, 0, s));
        copy(prm.tma_v.with(ss.full_v[s], 0), tVgV(_, b1r), tVsV(_, 1, 0, s));
      }
    }
  } else {
    cutlass::arch::warpgroup_reg_alloc<T::kConsumerRegs>();
    // Consumer warpgroups: wg 0 rows 0-63 (query block 2m), wg 1 rows 64-127 (2m + 1).
    const int tid = threadIdx.x;
    const int wg = __shfl_sync(0xffffffffu, tid / 128, 0);
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
    const int last_cols = p.nk - (nblk - 1) * kBlockSize;

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
      if (lane == 0) ClusterBarrier::arrive(bar);
    };

    UnionWalker walk(p, lane, row_a, row_b);
    ClusterTransactionBarrier::wait(&ss.bar_q, 0);
    int cls, b0, b1;
    for (int n = 0; walk.next(p, lane, cls, b0, b1); ++n) {
      const int s = n % kStages;
      const uint32_t phase = (n / kStages) & 1;
      const bool mine = cls == 0 || cls == 1 + wg;
      ClusterTransactionBarrier::wait(&ss.full_k[s], phase);
      if (mine) {
        wgmma_issue<true>(mma_qk, tSrQ, tSrK(_, _, _, s), tSrS);
        warpgroup_wait<0>();
        warpgroup_fence_operand(tSrS);
      }
      release(&ss.empty_k[s]);
      if (mine) {
        // b0 < b1 < nblk, so only a tile's last real block can be the partial one.
        softmax(b1 >= 0 ? 64 + (b1 == nblk - 1 ? last_cols : 64) : (b0 == nblk - 1 ? last_cols : 64));
        rescale_tile<T::kLazyRescale>(O, correction);
        to_p();
      }
      ClusterTransactionBarrier::wait(&ss.full_v[s], phase);
      if (mine) {
        wgmma_issue<false>(mma_pv, tOrP, tOrV(_, _, _, s), tOrO);
        warpgroup_wait<0>();
        warpgroup_fence_operand(tOrO);
      }
      release(&ss.empty_v[s]);
    }

    // Epilogue (as the wide kernel): out = O / l, lse = m * scale + ln(l); a row that visited
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
#endif
}

// Same interface as run_flash; no planned tile order (CTAs in launch order).
template <typename Element, int kHeadDim, int kBlockSize, bool kLazyRescale = true, int kStages = 3>
cudaError_t run_flash_sparse_union(const AttnParams& p, cudaStream_t stream) {
  static_assert(kBlockSize == 64, "two query blocks of 64 rows per CTA");
  using T = FlashUnionTraits<Element, kHeadDim, kLazyRescale, kStages>;
  if (!tma_compatible(p, sizeof(Element))) return cudaErrorInvalidValue;
  typename T::Params prm;
  prm.p = p;
  prm.p.tile_order = nullptr;
  prm.scale_log2 = p.scale * kLog2e;
  prm.tma_q = make_tma_rows<Element, kHeadDim, T::kBlockM>(p, p.q, p.nq, p.q_row_stride, p.q_head_stride,
                                                          p.q_batch_stride, typename T::SmemLayoutQ{});
  prm.tma_k = make_tma_rows<Element, kHeadDim, 64>(p, p.k, p.nk, p.k_row_stride, p.k_head_stride, p.k_batch_stride,
                                                   typename T::SmemLayoutKVHalf{});
  prm.tma_v = make_tma_rows<Element, kHeadDim, 64>(p, p.v, p.nk, p.v_row_stride, p.v_head_stride, p.v_batch_stride,
                                                   typename T::SmemLayoutKVHalf{});
  return launch_grid<T>(&flash_union_sm90_kernel<T>, prm, stream, linear_tiles<T::kBlockM>(p));
}

}  // namespace adaspa::sm90
