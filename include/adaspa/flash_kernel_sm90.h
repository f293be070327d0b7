// Hopper (sm_90a) flash forward, block-sparse (sparse_attn) or dense (attn_search's first pass):
// TMA loads of Q, K and V tiles, wgmma for Q K^T (both operands in shared memory) and P V (P from
// registers), a producer warp that walks the block list one step ahead of the consumer warpgroups.
// The dense pass walks every key tile with the block-128 arrangement below.
//
// Shape of a CTA: one query block (kBlockSize rows) and its own key-block list.
//   block 128: two consumer warpgroups of 64 query rows share one K / V stream, so every K / V
//              tile read from L2 feeds 128 rows (the FlashAttention-3 arrangement).
//   block 64:  one consumer warpgroup; two CTAs share an SM and the hardware interleaves their
//              softmax and MMA phases (each query block has its own list, so two warpgroups
//              cannot share a stream). The sparse op takes the variant with key tiles of two
//              listed blocks instead (flash_kernel_sm90_wide.h); this one stays the kernel lab's
//              reference at block 64.
// A key tile is one listed block: blocks are contiguous row ranges, so the list entry is the TMA
// row coordinate and no gather is needed. The producer and every consumer warp walk the list
// themselves (no block index passes through shared memory). Rows and columns past Nq / Nk are
// zero-filled by TMA; columns past Nk are masked to -inf in the last block.
//
// The kernel body exists only when compiling for sm_90a; for any other target (and the host pass)
// it is empty, so this header can sit in a build for several archs.
#pragma once

#include <cuda_runtime_api.h>

#include <cutlass/cutlass.h>
#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/numeric_types.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "adaspa/block_list.h"
#include "adaspa/params.h"
#include "adaspa/softmax.h"
#include "adaspa/tile_order.h"
#include "adaspa/tile_scheduler.h"
#include "adaspa/utils.h"

namespace adaspa::sm90 {

using namespace cute;

// kDiag 4's timeline of a CTA (lab only): words of p.scores viewed as int64, kTraceWords per CTA.
enum TraceWord { kTraceStart, kTraceQ, kTraceFirstK, kTraceLoopEnd, kTraceEnd, kTraceSm, kTraceWords };

__device__ __forceinline__ void trace_stamp(const AttnParams& p, int word) {
  long long t;
  asm volatile("mov.u64 %0, %%clock64;" : "=l"(t));
  reinterpret_cast<long long*>(p.scores)[int64_t(blockIdx.x) * kTraceWords + word] = t;
}

// kDense: visit every key tile (attn_search's flash pass) instead of the listed blocks.
// kLazyRescale: the softmax of the portable kernels (softmax.h, online_softmax_update): the
// running max and O move only when some row's max grows by more than 2^8, so most tiles skip the
// rescale of O and the quad reductions of the max (launch_sm90.h says which ops run it).
// kScoreBlock (64 or 128; 0: none): the one-pass attn_search, a dense pass that also writes the
// block scores of blocks of this size (see "One-pass block scores" below).
// kEarlySoftmax (block-128 arrangement; launch_sm90.h says which ops run it): a turn issues
// Q K^T of block j + 1 before P V of block j and the softmax of j + 1 starts once its Q K^T is
// done, under the warpgroup's own P V (O is rescaled after that P V), instead of after both.
// kDiag (lab diagnostics, wrong results; 0 in every op): 1 leaves the softmax out (P = S as it
// is), 2 leaves P V out, 3 leaves Q K^T out (S zeroed instead, so it is not live across steps;
// the K / V ring and its barriers run as usual in all three), to see what a loop step's time is
// made of. 4 (results correct) writes a CTA's timeline into p.scores, which the sparse kernel
// does not use otherwise: kTraceWords 64-bit words per CTA at blockIdx.x (see TraceWord), clock64
// of its SM, to see what a CTA spends besides its loop steps.
// kStages: depth of the K / V ring (2 in every op; the lab times 3).
// kTmaStore: out through shared memory and TMA stores (store_out_rows; the sparse op), else
// stored from the accumulators directly (attn_search's pass, run_flash_search says why; the lab's
// comparison, row "sm90 ds").
// kQRegs: Q K^T with Q in registers (wgmma RS, Q read from shared memory once by ldmatrix)
// instead of both operands in shared memory (SS); the D 128 block-128 sparse op (launch_sm90.h;
// the lab's row "sm90 es" is that kernel without it).
template <typename Element_, int kHeadDim_, int kBlockSize_, bool kDense_ = false, bool kLazyRescale_ = false,
          int kScoreBlock_ = 0, bool kEarlySoftmax_ = false, int kDiag_ = 0, int kStages_ = 2, bool kTmaStore_ = true,
          bool kQRegs_ = false>
struct FlashSparseTraits {
  static constexpr bool kTmaStore = kTmaStore_;
  static constexpr bool kQRegs = kQRegs_;
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockSize = kBlockSize_;
  static constexpr bool kDense = kDense_;
  static constexpr bool kLazyRescale = kLazyRescale_;
  static constexpr int kScoreBlock = kScoreBlock_;
  static constexpr bool kSearch = kScoreBlock > 0;
  static constexpr bool kEarlySoftmax = kEarlySoftmax_;
  static constexpr int kDiag = kDiag_;
  static_assert(kDiag == 0 || kDiag == 4 || (kDiag <= 3 && !kEarlySoftmax && !kSearch),
                "diagnostics: plain sparse / dense kernels");
  static_assert(kDiag != 4 || (!kDense && kBlockSize_ == 128), "the timeline: the block-128 sparse kernel");
  static_assert(!kEarlySoftmax || kBlockSize == 128, "the early softmax is a variant of the ping-pong");
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head dim must be 64 or 128");
  static_assert(kBlockSize == 64 || kBlockSize == 128, "block size must be 64 or 128");
  static_assert(!kSearch || (kDense && kBlockSize == 128 && (kScoreBlock == 64 || kScoreBlock == 128)),
                "block scores come from the dense pass's block-128 arrangement, for blocks of 64 or 128");
  // Key blocks (of the score's block size) per key tile.
  static constexpr int kScoreParts = kSearch ? kBlockSize / kScoreBlock : 1;

  // One listed block per key tile; 64 query rows per consumer warpgroup (the wgmma M).
  static constexpr int kBlockN = kBlockSize;
  static constexpr int kConsumerWGs = kBlockSize / 64;
  static constexpr int kBlockM = 64 * kConsumerWGs;
  static constexpr int kConsumerThreads = 128 * kConsumerWGs;
  // Two consumer warpgroups take turns at the tensor cores (ping-pong, below): each holds S, P
  // and O at once, more than the 168 registers a 12-warp CTA gets, so a whole producer warpgroup
  // (one warp of it working) hands its registers over with setmaxnreg. The split must fit what
  // the CTA was launched with (384 x 168 = 128 x 24 + 256 x 240): asking for more hangs
  // setmaxnreg.inc. One consumer warpgroup runs the serial loop next to a single producer warp.
  static constexpr bool kPingPong = kConsumerWGs == 2;
  static constexpr int kProducerThreads = kPingPong ? 128 : 32;
  static constexpr int kProducerRegs = 24, kConsumerRegs = 240;
  static constexpr int kNThreads = kConsumerThreads + kProducerThreads;
  // Block 64: two CTAs share an SM and interleave their softmax and MMA phases (three at D 64,
  // tried together with an overlapped loop, measured 0.89x of two on an H200; NOTES.md).
  static constexpr int kMinCtasPerSm = kConsumerWGs == 1 ? 2 : 1;
  // K / V ring depth: the producer runs at most this many blocks ahead of the consumers. Three
  // stages fit at every shape (D 128 block 128: 32 + 3 x 64 KB of the 227 KB a CTA may have).
  static constexpr int kStages = kStages_;
  static_assert(kStages >= 2, "a K / V ring of at least two stages (one in use, one loading)");

  using AtomLayout = Layout<Shape<Int<kConsumerWGs>, _1, _1>>;
  using MmaShapeQK = Shape<_64, Int<kBlockN>, Int<kHeadDim>>;
  using TiledMmaQK = decltype(make_tiled_mma(
      std::conditional_t<kQRegs, decltype(GMMA::rs_op_selector<Element, Element, float, MmaShapeQK>()),
                         decltype(GMMA::ss_op_selector<Element, Element, float, MmaShapeQK>())>{},
      AtomLayout{}));
  using TiledMmaPV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<_64, Int<kHeadDim>, Int<kBlockN>>, GMMA::Major::K,
                           GMMA::Major::MN>(),
      AtomLayout{}));

  // 128-byte swizzled rows (64 elements) shared by TMA and wgmma; head dims are multiples of 64.
  using SmemAtom = GMMA::Layout_K_SW128_Atom<Element>;
  using SmemLayoutQ = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  using SmemLayoutKV = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>, Int<kStages>>{}));
  // V as the (head dim x keys) B operand of P V: the same bytes, read MN-major.
  using SmemLayoutVt = decltype(composition(
      SmemLayoutKV{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kBlockN>, Int<kStages>>{}, Step<_2, _1, _3>{})));

  static constexpr uint32_t kQBytes = kBlockM * kHeadDim * sizeof(Element);
  static constexpr uint32_t kKVBytes = kBlockN * kHeadDim * sizeof(Element);

  // Global tensors as TMA sees them: (rows, head dim, heads, batch), element strides.
  using GmemShape = Shape<int32_t, int32_t, int32_t, int32_t>;
  using GmemStride = Stride<int64_t, _1, int64_t, int64_t>;
  using GmemTensor = decltype(make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GmemShape{},
                                          GmemStride{}));
  using TmaQ = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor{}, SmemLayoutQ{},
                                      Shape<Int<kBlockM>, Int<kHeadDim>>{}, _1{}));
  using TmaKV = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor{}, SmemLayoutKV{}(_, _, _0{}),
                                       Shape<Int<kBlockN>, Int<kHeadDim>>{}, _1{}));
  // out, stored from shared memory in 64 x 64 boxes (store_out_rows).
  using SmemLayoutOutBox = decltype(tile_to_shape(SmemAtom{}, Shape<_64, _64>{}));
  using TmaOut = decltype(make_tma_copy(SM90_TMA_STORE{}, GmemTensor{}, SmemLayoutOutBox{}, Shape<_64, _64>{}, _1{}));

  struct Params {
    AttnParams p;
    TmaQ tma_q;
    TmaKV tma_k, tma_v;
    TmaOut tma_o;
    float scale_log2;  // p.scale * log2(e): the softmax runs on exp2
  };

  // The one-pass search's: the log2-domain lse of the CTA's rows and its scratch slot.
  struct SearchStorage {
    float lse_log2[kBlockM];
    int slot;
  };
  struct NoStorage {};
  struct SharedStorage {
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutQ>> q;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutKV>> k;
    alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutKV>> v;
    uint64_t bar_q;
    uint64_t full_k[kStages], full_v[kStages], empty_k[kStages], empty_v[kStages];
    std::conditional_t<kSearch, SearchStorage, NoStorage> search;
  };
  // Dynamic shared memory is only 16-byte aligned; the swizzled tiles need 1024.
  static constexpr int kSmemBytes = sizeof(SharedStorage) + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "more shared memory than a CTA may have on sm_90");
};

// (row, col) view of a wgmma accumulator fragment ((2, 2, N/8), MMA_M, MMA_N): each thread holds
// two rows (r, r + 8) of its warp's 16, and pairs of adjacent columns every 8.
template <typename Layout>
__device__ __forceinline__ auto rowcol(Layout l) {
  return make_layout(make_layout(get<0, 1>(l), get<1>(l)), make_layout(get<0, 0>(l), get<0, 2>(l), get<2>(l)));
}

// The accumulator of Q K^T reread as the register A operand of P V: an m64 x k16 A fragment is
// ((2, 2, 2), MMA_M, MMA_K), the same values as two consecutive 8-column groups of the accumulator.
template <typename Layout>
__device__ __forceinline__ auto acc_as_operand_a(Layout l) {
  auto split = logical_divide(get<0, 2>(l), Tile<_2>{});  // ((2, N/16))
  return make_layout(make_layout(get<0, 0>(l), get<0, 1>(l), get<0, 0>(split)), get<1>(l),
                     coalesce(make_layout(get<0, 1>(split), get<2>(l))));
}

// Online softmax of one S tile on the (row, col) views of the accumulators, on exp2: S -> P in
// place, row_max the running maximum of the raw logits, row_sum this thread's columns (the quad
// sums them at the end). Eager (the ops): the maximum moves every tile and `correction` keeps the
// factor rescale_tile applies to O once the P V in flight is done. kLazy: the portable kernels'
// online_softmax_update (softmax.h), which moves the maximum only on a large growth and rescales O
// itself. Shared by the flash and the wide kernel.
// parts[r]: exp_row's part sums of row r (softmax.h); after the call P = exp2(s * scale_log2 -
// row_max[r] * scale_log2) in both variants.
template <bool kLazy, int kParts, int kRows, typename TensorS, typename TensorO>
__device__ __forceinline__ void softmax_tile(float (&row_max)[kRows], float (&row_sum)[kRows],
                                             float (&correction)[kRows], TensorS& S, TensorO& O, float scale_log2,
                                             float (&parts)[kRows][kParts]) {
  if constexpr (kLazy) {
    online_softmax_update<kParts>(row_max, row_sum, S, O, scale_log2, parts);
  } else {
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < kRows; ++r) {
      float mx = row_max[r];
      CUTLASS_PRAGMA_UNROLL
      for (int c = 0; c < size<1>(S); ++c) mx = fmaxf(mx, S(r, c));
      mx = quad_max(mx);
      correction[r] = exp2_approx((row_max[r] - mx) * scale_log2);
      row_max[r] = mx;
      row_sum[r] = row_sum[r] * correction[r] + exp_row(S, r, scale_log2, mx * scale_log2, parts[r]);
    }
  }
}

template <bool kLazy, int kRows, typename TensorS, typename TensorO>
__device__ __forceinline__ void softmax_tile(float (&row_max)[kRows], float (&row_sum)[kRows],
                                             float (&correction)[kRows], TensorS& S, TensorO& O, float scale_log2) {
  float unused[kRows][1];
  softmax_tile<kLazy>(row_max, row_sum, correction, S, O, scale_log2, unused);
}

// O *= correction per row after an eager softmax_tile (nothing to do after a lazy one).
template <bool kLazy, int kRows, typename TensorO>
__device__ __forceinline__ void rescale_tile(TensorO& O, const float (&correction)[kRows]) {
  if constexpr (!kLazy) {
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < kRows; ++r) {
      CUTLASS_PRAGMA_UNROLL
      for (int c = 0; c < size<1>(O); ++c) O(r, c) *= correction[r];
    }
  }
}

// Issue one warpgroup GEMM (all k-steps) and commit it as one group; the caller waits.
template <bool kZeroInit, typename TiledMma, typename TA, typename TB, typename TC>
__device__ __forceinline__ void wgmma_issue(TiledMma& mma, TA& a, TB const& b, TC& c) {
  constexpr bool kRegA = !cute::is_base_of<GMMA::DescriptorIterator, typename TiledMma::FrgTypeA>::value;
  if constexpr (kRegA) warpgroup_fence_operand(a);
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  if constexpr (kZeroInit) mma.accumulate_ = GMMA::ScaleOut::Zero;
  CUTLASS_PRAGMA_UNROLL
  for (int kb = 0; kb < size<2>(a); ++kb) {
    cute::gemm(mma, a(_, _, kb), b(_, _, kb), c);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
}

// The epilogue's store of out (kTmaStore). A consumer warpgroup writes its 64 rows of out (as
// Element) into its 64 rows of the Q tile, free once its last Q K^T is done, and hands them to the
// producer warp, which stores them with TMA in 64 x 64 boxes (a 128-byte-swizzled column chunk of
// 64 rows is contiguous in the Q tile's layout); TMA clips rows past Nq. Stored from the
// accumulators instead (16 bytes per row and instruction), out took ~3,200 cycles per CTA on an
// H200, the largest part of a block-128 CTA's time outside its loop; this way ~1,300 (NOTES.md).
// The producer issues it because it holds the descriptors' addresses already (issued by a
// consumer thread, a trial in the D 64 wide kernel kept one more 64-bit value live through its
// loop and spilled there). Direct stores stay in attn_search's pass (run_flash_search says why)
// and in the wide kernel: with two or three CTAs per SM its epilogue runs under other CTAs'
// loops, and the TMA store measured 0.98-1.00x there.
// The hand-over is hardware barrier 4 + warpgroup (cutlass's NamedBarrier ids start at 8): the
// warpgroup's 128 threads arrive, the producer warp's 32 wait.
constexpr int kOutBarrier = 4, kOutBarrierThreads = 128 + 32;

// Element pair (c, c + 1) of a row (the accumulator holds adjacent columns in pairs) at dst.
template <typename Element>
__device__ __forceinline__ void put_out_pair(Element* dst, float x0, float x1) {
  cutlass::Array<Element, 2> pair;
  pair[0] = Element(x0);
  pair[1] = Element(x1);
  *reinterpret_cast<cutlass::Array<Element, 2>*>(dst) = pair;
}

// Consumer warpgroup wg: its rows of the tile are written.
__device__ __forceinline__ void out_rows_written(int wg) {
  cute::tma_store_fence();  // this thread's shared-memory writes, visible to TMA
  asm volatile("bar.arrive %0, %1;" ::"r"(kOutBarrier + wg), "n"(kOutBarrierThreads) : "memory");
}

// Producer warp: once warpgroup wg has written them, store tile rows [64 wg, 64 wg + 64) to out
// rows [grow, grow + 64) of head h, batch entry b (lane 0 issues; the caller ends with
// out_stores_read before the CTA may exit).
template <int kHeadDim, typename SmemLayoutBox, typename TmaOut, typename TensorTile>
__device__ __forceinline__ void store_out_rows(const TmaOut& tma, TensorTile& tile, const AttnParams& p, int wg,
                                               int grow, int h, int b, int lane) {
  asm volatile("bar.sync %0, %1;" ::"r"(kOutBarrier + wg), "n"(kOutBarrierThreads) : "memory");
  if (lane == 0) {
    Tensor mO = tma.get_tma_tensor(make_shape(p.nq, kHeadDim, p.heads, p.batch));
    CUTLASS_PRAGMA_UNROLL
    for (int j = 0; j < kHeadDim / 64; ++j) {
      Tensor sO = make_tensor(make_smem_ptr(&tile(64 * wg, 64 * j)), SmemLayoutBox{});
      Tensor gO = local_tile(mO(_, _, h, b), Shape<_64, _64>{}, make_coord(grow / 64, j));
      auto [tOgO, tOsO] = tma_partition(tma, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sO), group_modes<0, 2>(gO));
      copy(tma, tOsO, tOgO);
    }
    cute::tma_store_arrive();
  }
}

// Producer warp: wait until TMA has read every stored tile (shared memory must outlive the copies).
__device__ __forceinline__ void out_stores_read(int lane) {
  if (lane == 0) cute::tma_store_wait<0>();
}

// One idx row walked by a whole warp, 32 entries at a time, under the block_list.h rule: an entry
// is accepted iff it lies in [0, mk) and above every valid entry before it (the running maximum
// of accepted entries is the running maximum of valid ones). next() is warp-collective and
// returns the next accepted block, or -1 at the end of the row.
struct ListCursor {
  const int32_t* row;
  int base = 0, last = -1, entry = -1;
  unsigned pending = 0;  // lanes of the current window accepted and not yet returned

  __device__ __forceinline__ int next(const AttnParams& p, int lane) {
    while (!pending) {
      if (base >= p.kmax) return -1;
      entry = base + lane < p.kmax ? __ldg(row + base + lane) : -1;
      const bool valid = entry >= 0 && entry < p.mk;
      int pmax = valid ? entry : -1;
      CUTLASS_PRAGMA_UNROLL
      for (int o = 1; o < 32; o *= 2) {
        const int x = __shfl_up_sync(0xffffffffu, pmax, o);
        if (lane >= o) pmax = max(pmax, x);
      }
      int before = __shfl_up_sync(0xffffffffu, pmax, 1);
      before = lane == 0 ? last : max(before, last);
      pending = __ballot_sync(0xffffffffu, valid && entry > before);
      last = max(last, __shfl_sync(0xffffffffu, pmax, 31));
      base += 32;
    }
    const int l = __ffs(pending) - 1;
    pending &= pending - 1;
    return __shfl_sync(0xffffffffu, entry, l);
  }
  // next() would return -1 (a sufficient test: entries it has not read may all be rejected).
  __device__ __forceinline__ bool exhausted(const AttnParams& p) const { return !pending && base >= p.kmax; }
};

// Every key tile in order, the cursor of the dense pass (same interface as ListCursor).
struct DenseCursor {
  int ntiles, n = 0;
  __device__ __forceinline__ int next(const AttnParams&, int) { return n < ntiles ? n++ : -1; }
};

// One-pass block scores (attn_search, kScoreBlock > 0). The score of (query block, key block) is
// the sum over the block's rows i and keys j of exp(s_ij - lse_i), and lse_i is known only after
// the last key tile. The dense pass already computes, per row and tile, P = exp2(s * scale_log2 -
// m) and its row sum; kept per key block of the tile, log2(sum) + m is the row's lse over that key
// block (exact whatever m was). So each tile adds only a quad reduction, a log2 and a store per
// (row, key block), into a scratch slot of 128 rows x mk floats ([key block][row]); at the end the
// CTA adds exp2(block lse - row lse) over the rows of each query block. This replaces a second
// pass that recomputed Q K^T and one exponential per score. The scratch would be B x H x Nq x mk
// floats for the whole launch, so a CTA takes one of p.search_nslots slots when it starts (flags
// zeroed by the launcher) and frees it at its end: any number of slots is correct (a CTA waits
// until one is free, and every holder is a running CTA), one per resident CTA keeps them from
// waiting.

// Warp-collective: take a free slot (flag 0 -> 1), trying 32 flags per round from blockIdx.x % n.
__device__ __forceinline__ int acquire_slot(int32_t* flags, int n, int lane) {
  for (int start = static_cast<int>(blockIdx.x % n);; start = (start + 32) % n) {
    const int s = (start + lane) % n;
    const bool free = lane < n && *reinterpret_cast<volatile int32_t*>(flags + s) == 0;
    for (unsigned m = __ballot_sync(0xffffffffu, free); m; m &= m - 1) {
      const int l = __ffs(m) - 1;
      int got = 0;
      if (lane == l) got = atomicCAS(flags + s, 0, 1) == 0;
      if (__shfl_sync(0xffffffffu, got, l)) {
        __threadfence();
        return __shfl_sync(0xffffffffu, s, l);
      }
    }
  }
}

__device__ __forceinline__ void release_slot(int32_t* flags, int slot) {
  __threadfence();
  atomicExch(flags + slot, 0);
}

template <typename T>
__global__ void __launch_bounds__(T::kNThreads, T::kMinCtasPerSm)
    flash_sm90_kernel(CUTE_GRID_CONSTANT typename T::Params const prm) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Element = typename T::Element;
  using SharedStorage = typename T::SharedStorage;
  constexpr int kBlockM = T::kBlockM, kBlockN = T::kBlockN, kHeadDim = T::kHeadDim, kStages = T::kStages;
  using cutlass::arch::ClusterBarrier;
  using cutlass::arch::ClusterTransactionBarrier;

  extern __shared__ char smem_raw[];
  SharedStorage& ss = *reinterpret_cast<SharedStorage*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const AttnParams& p = prm.p;
  const CtaTile cta = linear_cta_tile<kBlockM>(p);
  const int m_block = cta.m_block, h = cta.h, b = cta.b;
  const int warp = __shfl_sync(0xffffffffu, threadIdx.x / 32, 0);
  const int lane = threadIdx.x % 32;
  if constexpr (T::kDiag == 4) {
    if (threadIdx.x == 0) {
      trace_stamp(p, kTraceStart);
      uint32_t sm;
      asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
      reinterpret_cast<long long*>(p.scores)[int64_t(blockIdx.x) * kTraceWords + kTraceSm] = sm;
    }
  }

  if (threadIdx.x == 0) {
    ClusterTransactionBarrier::init(&ss.bar_q, 1);
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < kStages; ++s) {
      ClusterTransactionBarrier::init(&ss.full_k[s], 1);
      ClusterTransactionBarrier::init(&ss.full_v[s], 1);
      ClusterBarrier::init(&ss.empty_k[s], T::kConsumerThreads / 32);  // one arrival per consumer warp
      ClusterBarrier::init(&ss.empty_v[s], T::kConsumerThreads / 32);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  Tensor sQ = make_tensor(make_smem_ptr(ss.q.data()), typename T::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(ss.k.data()), typename T::SmemLayoutKV{});
  Tensor sV = make_tensor(make_smem_ptr(ss.v.data()), typename T::SmemLayoutKV{});
  // Key tiles of kBlockN rows; the last one may be partial. (For the sparse kernel kBlockN is the
  // block size, so this is p.mk.)
  const int ntiles = (p.nk + kBlockN - 1) / kBlockN;
  auto make_cursor = [&]() {
    if constexpr (T::kDense) {
      return DenseCursor{ntiles};
    } else {
      return ListCursor{p.idx + ((int64_t(b) * p.heads + h) * p.mq + m_block) * p.kmax};
    }
  };

  if (warp >= T::kConsumerThreads / 32) {
    if constexpr (T::kPingPong) cutlass::arch::warpgroup_reg_dealloc<T::kProducerRegs>();
    if (warp > T::kConsumerThreads / 32) return;
    // Producer warp: all lanes scan the list 32 entries at a time, lane 0 issues the copies. The
    // search's slot is published to the consumers by the arrival on bar_q.
    if constexpr (T::kSearch) {
      const int slot = acquire_slot(p.search_slots, p.search_nslots, lane);
      if (lane == 0) ss.search.slot = slot;
    }
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
    Tensor gK = local_tile(mK(_, _, h, b), Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, _0{}));
    Tensor gV = local_tile(mV(_, _, h, b), Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, _0{}));
    auto tK = tma_partition(prm.tma_k, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sK), group_modes<0, 2>(gK));
    auto tV = tma_partition(prm.tma_v, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sV), group_modes<0, 2>(gV));
    auto tKgK = get<0>(tK);
    auto tKsK = get<1>(tK);
    auto tVgV = get<0>(tV);
    auto tVsV = get<1>(tV);

    int n = 0;  // blocks issued
    auto issue = [&](int blk) {
      const int s = n % kStages;
      const uint32_t phase = ((n / kStages) - 1) & 1;  // the round that last used stage s
      if (n >= kStages) ClusterBarrier::wait(&ss.empty_k[s], phase);
      ClusterTransactionBarrier::arrive_and_expect_tx(&ss.full_k[s], T::kKVBytes);
      copy(prm.tma_k.with(ss.full_k[s], 0), tKgK(_, blk), tKsK(_, s));
      if (n >= kStages) ClusterBarrier::wait(&ss.empty_v[s], phase);
      ClusterTransactionBarrier::arrive_and_expect_tx(&ss.full_v[s], T::kKVBytes);
      copy(prm.tma_v.with(ss.full_v[s], 0), tVgV(_, blk), tVsV(_, s));
      ++n;
    };
    auto list = make_cursor();
    for (int blk = list.next(p, lane); blk >= 0; blk = list.next(p, lane))
      if (lane == 0) issue(blk);
    if constexpr (T::kTmaStore) {  // out, each warpgroup's rows once written (store_out_rows)
      CUTLASS_PRAGMA_UNROLL
      for (int wg = 0; wg < T::kConsumerWGs; ++wg)
        store_out_rows<kHeadDim, typename T::SmemLayoutOutBox>(prm.tma_o, sQ, p, wg, m_block * kBlockM + 64 * wg, h,
                                                               b, lane);
      out_stores_read(lane);
    }
    if constexpr (T::kDiag == 4 && T::kTmaStore) if (lane == 0) trace_stamp(p, kTraceEnd);
  } else {
    if constexpr (T::kPingPong) cutlass::arch::warpgroup_reg_alloc<T::kConsumerRegs>();
    // Consumer warpgroups: 64 query rows each.
    const int tid = threadIdx.x;
    typename T::TiledMmaQK mma_qk;
    typename T::TiledMmaPV mma_pv;
    auto thr_qk = mma_qk.get_thread_slice(tid);
    auto thr_pv = mma_pv.get_thread_slice(tid);
    Tensor sVt = make_tensor(make_smem_ptr(ss.v.data()), typename T::SmemLayoutVt{});
    Tensor tSrQ = thr_qk.partition_fragment_A(sQ);   // (MMA, MMA_M, MMA_K) descriptors, or registers (kQRegs)
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
    // Columns of the last key block past Nk are masked; every other block is whole.
    const int last_cols = p.nk - (ntiles - 1) * kBlockN;

    // Search: this CTA's scratch slot ([key block][row], read once bar_q has completed).
    float* search_ws = nullptr;
    // The search's per-tile reductions and stores wait until the warpgroup has issued its next
    // batch and handed the tensor cores over (store_pending after pass_turn) instead of sitting
    // between the tile's exponentials and the hand-over: 1.7-3.5 % faster on an H200. row_max does
    // not move before the next softmax, so the offset still holds.
    float pending_parts[kRows][T::kScoreParts];
    int pending_blk = -1;
    auto store_pending = [&]() {
      if constexpr (T::kSearch) {
        CUTLASS_PRAGMA_UNROLL
        for (int r = 0; r < kRows; ++r) {
          const float offset = row_max[r] * scale_log2;
          const int row = get<0>(Sc(r, 0));
          CUTLASS_PRAGMA_UNROLL
          for (int j = 0; j < T::kScoreParts; ++j) {
            const float block_lse = offset + log2_approx(quad_sum(pending_parts[r][j]));  // log2(0) = -inf
            const int kb = pending_blk * T::kScoreParts + j;
            if (lane % 4 == 0 && kb < p.mk) search_ws[int64_t(kb) * kBlockM + row] = block_lse;
          }
        }
      }
    };
    // Online softmax of the S tile of block blk (softmax_tile), its columns past Nk masked first;
    // o: O, or (kEarlySoftmax, P V in flight) a stand-in the lazy softmax rescales instead.
    auto softmax = [&](int blk, auto& o) {
      if constexpr (T::kDiag == 1) return;
      if (blk == ntiles - 1 && last_cols < kBlockN) {
        CUTLASS_PRAGMA_UNROLL
        for (int c = 0; c < size<1>(S); ++c)
          if (get<1>(Sc(0, c)) >= last_cols) {
            CUTLASS_PRAGMA_UNROLL
            for (int r = 0; r < kRows; ++r) S(r, c) = -INFINITY;
          }
      }
      if constexpr (T::kSearch) {
        softmax_tile<T::kLazyRescale>(row_max, row_sum, correction, S, o, scale_log2, pending_parts);
        pending_blk = blk;
      } else {
        softmax_tile<T::kLazyRescale>(row_max, row_sum, correction, S, o, scale_log2);
      }
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

    auto rescale_o = [&]() { rescale_tile<T::kLazyRescale>(O, correction); };
    // kEarlySoftmax: the lazy softmax runs while P V still accumulates into O, so it rescales a
    // stand-in for O (one column of ones) instead; once P V is done, O takes the stand-in's factors
    // (skipped when none moved: the lazy softmax's decision is warp-uniform).
    Tensor o_stand_in = make_tensor<float>(Shape<Int<kRows>, _1>{});
    auto rescale_o_early = [&]() {
      if constexpr (T::kLazyRescale) {
        bool moved = false;
        CUTLASS_PRAGMA_UNROLL
        for (int r = 0; r < kRows; ++r) {
          correction[r] = o_stand_in(r, 0);
          moved |= correction[r] != 1.f;
        }
        if (__any_sync(0xffffffffu, moved)) rescale_tile<false>(O, correction);
      } else {
        rescale_o();
      }
    };
    // Every consumer warp walks the list itself (the producer does too), so no block index passes
    // through shared memory.
    auto list = make_cursor();
    ClusterTransactionBarrier::wait(&ss.bar_q, 0);
    if constexpr (T::kQRegs) {
      auto copy_q = make_tiled_copy_A(Copy_Atom<SM75_U32x4_LDSM_N, Element>{}, mma_qk);
      auto thr_copy_q = copy_q.get_thread_slice(tid);
      copy(copy_q, thr_copy_q.partition_S(sQ), thr_copy_q.retile_D(tSrQ));
      // kTmaStore: the epilogue writes out into these rows of the Q tile, and a list with no
      // entry reaches it without any other barrier of the warpgroup, so every thread's Q reads
      // end here (compute-sanitizer racecheck found the write-after-read hazard).
      if constexpr (T::kTmaStore) cutlass::arch::NamedBarrier::sync(128, 4 + tid / 128);
    }
    if constexpr (T::kDiag == 4) if (tid == 0) trace_stamp(p, kTraceQ);
    if constexpr (T::kSearch) search_ws = p.search_ws + int64_t(ss.search.slot) * kBlockM * p.mk;
    int n = 0;  // blocks whose P V is done
    if constexpr (T::kPingPong) {
      // Two warpgroups take turns: a turn issues P V of block j and Q K^T of block j + 1 as one
      // batch, then the warpgroup waits for them and runs the softmax of block j + 1 while the
      // other warpgroup's batch is in the tensor cores. Named barrier 1 + w is warpgroup w's turn;
      // warpgroup 1 hands warpgroup 0 the first turn and skips its hand-over after its last batch,
      // so no arrival is left over.
      const int wg = tid / 128;
      auto take_turn = [&]() { cutlass::arch::NamedBarrier::sync(256, 1 + wg); };
      auto pass_turn = [&]() { cutlass::arch::NamedBarrier::arrive(256, 2 - wg); };
      const int first = list.next(p, lane);
      if (first >= 0) {
        ClusterTransactionBarrier::wait(&ss.full_k[0], 0);
        if constexpr (T::kDiag == 4) if (tid == 0) trace_stamp(p, kTraceFirstK);
        if (wg == 1) pass_turn();
        take_turn();
        if constexpr (T::kDiag == 3) clear(tSrS);  // the diagnostic without Q K^T
        else wgmma_issue<true>(mma_qk, tSrQ, tSrK(_, _, _, 0), tSrS);
        pass_turn();
        warpgroup_wait<0>();
        warpgroup_fence_operand(tSrS);
        release(&ss.empty_k[0]);
        softmax(first, O);
        to_p();
        if constexpr (T::kEarlySoftmax) {
          // Every issue inside the loop is unconditional and the last P V is peeled, so ptxas can
          // track which group the wait<1> leaves in flight (a conditional issue serialises them).
          for (;;) {
            const int s = n % kStages, s1 = (n + 1) % kStages;
            const int next = list.next(p, lane);
            if (next < 0) break;
            ClusterTransactionBarrier::wait(&ss.full_k[s1], ((n + 1) / kStages) & 1);
            ClusterTransactionBarrier::wait(&ss.full_v[s], (n / kStages) & 1);
            take_turn();
            wgmma_issue<true>(mma_qk, tSrQ, tSrK(_, _, _, s1), tSrS);
            if constexpr (T::kDiag != 2) wgmma_issue<false>(mma_pv, tOrP, tOrV(_, _, _, s), tOrO);
            pass_turn();
            store_pending();
            warpgroup_wait<1>();  // Q K^T (the older group) done, P V may still run
            warpgroup_fence_operand(tSrS);
            release(&ss.empty_k[s1]);
            fill(o_stand_in, 1.f);
            softmax(next, o_stand_in);
            warpgroup_wait<0>();
            warpgroup_fence_operand(tOrO);
            release(&ss.empty_v[s]);
            ++n;
            rescale_o_early();
            to_p();
          }
          const int s = n % kStages;
          ClusterTransactionBarrier::wait(&ss.full_v[s], (n / kStages) & 1);
          take_turn();
          if constexpr (T::kDiag != 2) wgmma_issue<false>(mma_pv, tOrP, tOrV(_, _, _, s), tOrO);
          if (wg == 0) pass_turn();
          store_pending();
          warpgroup_wait<0>();
          warpgroup_fence_operand(tOrO);
          release(&ss.empty_v[s]);
          ++n;
        } else {
          for (;;) {
            const int s = n % kStages, s1 = (n + 1) % kStages;
            const int next = list.next(p, lane);
            if (next >= 0) ClusterTransactionBarrier::wait(&ss.full_k[s1], ((n + 1) / kStages) & 1);
            ClusterTransactionBarrier::wait(&ss.full_v[s], (n / kStages) & 1);
            take_turn();
            if constexpr (T::kDiag != 2) wgmma_issue<false>(mma_pv, tOrP, tOrV(_, _, _, s), tOrO);
            if constexpr (T::kDiag == 3) clear(tSrS);
            else if (next >= 0) wgmma_issue<true>(mma_qk, tSrQ, tSrK(_, _, _, s1), tSrS);
            if (next >= 0 || wg == 0) pass_turn();
            store_pending();
            warpgroup_wait<0>();
            warpgroup_fence_operand(tOrO);
            warpgroup_fence_operand(tSrS);
            release(&ss.empty_v[s]);
            ++n;
            if (next < 0) break;
            release(&ss.empty_k[s1]);
            softmax(next, O);
            rescale_o();
            to_p();
          }
        }
      }
    } else {
      // One block at a time: Q K^T, softmax, P V. K of a stage is released once its Q K^T is done,
      // V once its P V is, so the producer refills K early. Overlap inside the warpgroup (Q K^T and
      // softmax of block j + 1 under P V of block j, FlashAttention-3 style, with a 24 / 240 register
      // split at block 128) measured slower on an H200: 0.93-0.98x at D 128, 0.85x at D 64 (NOTES.md).
      for (;; ++n) {
        const int s = n % kStages;
        const uint32_t phase = (n / kStages) & 1;
        const int blk = list.next(p, lane);
        if (blk < 0) break;
        ClusterTransactionBarrier::wait(&ss.full_k[s], phase);
        if constexpr (T::kDiag == 3) clear(tSrS);
        else wgmma_issue<true>(mma_qk, tSrQ, tSrK(_, _, _, s), tSrS);
        warpgroup_wait<0>();
        warpgroup_fence_operand(tSrS);
        release(&ss.empty_k[s]);
        softmax(blk, O);
        rescale_o();
        to_p();
        ClusterTransactionBarrier::wait(&ss.full_v[s], phase);
        if constexpr (T::kDiag != 2) wgmma_issue<false>(mma_pv, tOrP, tOrV(_, _, _, s), tOrO);
        warpgroup_wait<0>();
        warpgroup_fence_operand(tOrO);
        release(&ss.empty_v[s]);
      }
    }

    if constexpr (T::kDiag == 4) if (tid == 128) trace_stamp(p, kTraceLoopEnd);
    // Epilogue: out = O / l (kTmaStore: into the warpgroup's rows of the Q tile, stored by the
    // producer), lse = m * scale + ln(l); a row that visited nothing gets 0 and -inf.
    Tensor tOcO = thr_pv.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
    Tensor Oc = make_tensor(tOcO.data(), rowcol(tOcO.layout()));
    Tensor tOsO = thr_pv.partition_C(sQ);
    Tensor sO = make_tensor(tOsO.data(), rowcol(tOsO.layout()));  // the Q tile as O's (row, col) view
    Element* out = static_cast<Element*>(p.out) + int64_t(b) * p.o_batch_stride + int64_t(h) * p.o_head_stride;
    float* lse = p.lse ? p.lse + (int64_t(b) * p.heads + h) * p.nq : nullptr;
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < kRows; ++r) {
      const SoftmaxRowResult res = softmax_row_result(row_sum[r], row_max[r], p.scale);
      const int grow = m_block * kBlockM + get<0>(Oc(r, 0));
      if constexpr (T::kTmaStore) {
        CUTLASS_PRAGMA_UNROLL
        for (int c = 0; c < size<1>(O); c += 2) put_out_pair(&sO(r, c), O(r, c) * res.inv, O(r, c + 1) * res.inv);
        if (lse && lane % 4 == 0 && grow < p.nq) lse[grow] = res.lse;
      } else if (grow < p.nq) {
        Element* orow = out + int64_t(grow) * p.o_row_stride;
        CUTLASS_PRAGMA_UNROLL
        for (int c = 0; c < size<1>(O); c += 2)
          put_out_pair(orow + get<1>(Oc(r, c)), O(r, c) * res.inv, O(r, c + 1) * res.inv);
        if (lse && lane % 4 == 0) lse[grow] = res.lse;
      }
      if constexpr (T::kSearch) {  // log2-domain lse; rows past Nq get +inf and add 0
        const float sum = quad_sum(row_sum[r]);
        const float lse_log2 = grow < p.nq ? row_max[r] * scale_log2 + log2_approx(sum) : INFINITY;
        if (lane % 4 == 0) ss.search.lse_log2[get<0>(Oc(r, 0))] = lse_log2;
      }
    }
    if constexpr (T::kTmaStore) out_rows_written(tid / 128);
    if constexpr (T::kDiag == 4 && !T::kTmaStore) if (tid == 128) trace_stamp(p, kTraceEnd);
    if constexpr (T::kSearch) {
      // Scores: consumer warp w sums key blocks w, w + 8, ...; lane l reads rows l + 32 j, so a
      // query block of 64 rows is j = 0, 1 or 2, 3 and one of 128 all four. Fixed order:
      // deterministic.
      constexpr int kWarps = T::kConsumerThreads / 32;
      static_assert(kBlockM == kSearchRows && kWarps == 8);
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, 3);  // block lse and lse_log2 visible
      float row_lse[4];
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < 4; ++j) row_lse[j] = ss.search.lse_log2[lane + 32 * j];
      float* scores = p.scores + (int64_t(b) * p.heads + h) * p.mq * p.mk;
      constexpr int kQBlocks = kBlockM / T::kScoreBlock;
      // The slot was written tile by tile and is mostly out of L2 by now: kUnroll key blocks'
      // loads are issued before any is used, so a warp waits for memory once per kUnroll blocks
      // rather than once per block while its SM's tensor cores idle.
      constexpr int kUnroll = 8;
      for (int kb0 = warp; kb0 < p.mk; kb0 += kWarps * kUnroll) {
        float e[kUnroll][4];
        CUTLASS_PRAGMA_UNROLL
        for (int u = 0; u < kUnroll; ++u) {
          const int kb = kb0 + u * kWarps;
          CUTLASS_PRAGMA_UNROLL
          for (int j = 0; j < 4; ++j)
            e[u][j] = kb < p.mk ? __ldcg(search_ws + int64_t(kb) * kBlockM + lane + 32 * j) : -INFINITY;
        }
        CUTLASS_PRAGMA_UNROLL
        for (int u = 0; u < kUnroll; ++u) {
          const int kb = kb0 + u * kWarps;
          CUTLASS_PRAGMA_UNROLL
          for (int qi = 0; qi < kQBlocks; ++qi) {
            float x = 0.f;
            CUTLASS_PRAGMA_UNROLL
            for (int j = qi * 4 / kQBlocks; j < (qi + 1) * 4 / kQBlocks; ++j) x += exp2_approx(e[u][j] - row_lse[j]);
            x = warp_sum(x);
            const int qb = m_block * kQBlocks + qi;
            if (lane == 0 && kb < p.mk && qb < p.mq) scores[int64_t(qb) * p.mk + kb] = x;
          }
        }
      }
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, 3);  // every read of the slot done
      if (tid == 0) release_slot(p.search_slots, ss.search.slot);
    }
  }
#endif
}

// TMA describes a tensor by its base address and per-dimension strides, all multiples of 16
// bytes. The bindings hand over views whose base and strides of every dimension longer than one
// already are (checks: vector_aligned copies other views, for both paths; out is allocated like
// q, or staged when the caller's is not so); the stride of a dimension of length one is never
// used, so it is replaced by one TMA accepts.
inline bool tma_compatible(const AttnParams& p, int element_bytes) {
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  auto ok = [&](int64_t stride, int64_t extent) { return extent <= 1 || (stride * element_bytes) % 16 == 0; };
  return aligned(p.q) && aligned(p.k) && aligned(p.v) && ok(p.q_row_stride, p.nq) && ok(p.q_head_stride, p.heads) &&
         ok(p.q_batch_stride, p.batch) && ok(p.k_row_stride, p.nk) && ok(p.k_head_stride, p.heads) &&
         ok(p.k_batch_stride, p.batch) && ok(p.v_row_stride, p.nk) && ok(p.v_head_stride, p.heads) &&
         ok(p.v_batch_stride, p.batch) && aligned(p.out) && ok(p.o_row_stride, p.nq) && ok(p.o_head_stride, p.heads) &&
         ok(p.o_batch_stride, p.batch);
}

// TMA descriptor of a (rows, head dim, heads, batch) global tensor for a (kRows x kCols) box
// (CopyOp SM90_TMA_LOAD_MULTICAST: the whole box, multicast to the CTAs of a mask; SM90_TMA_STORE:
// out).
template <typename Element, int kHeadDim, int kRows, typename CopyOp = SM90_TMA_LOAD, int kCols = kHeadDim,
          typename SmemLayout>
auto make_tma_rows(const AttnParams& p, const void* ptr, int rows, int64_t row_stride, int64_t head_stride,
                   int64_t batch_stride, SmemLayout smem_layout) {
  // Strides of length-one dimensions (never used) made ones TMA accepts.
  if (rows <= 1) row_stride = kHeadDim;
  if (p.heads <= 1) head_stride = row_stride * rows;
  if (p.batch <= 1) batch_stride = head_stride * p.heads;
  Tensor g = make_tensor(make_gmem_ptr(static_cast<Element const*>(ptr)), make_shape(rows, kHeadDim, p.heads, p.batch),
                         make_stride(row_stride, _1{}, head_stride, batch_stride));
  return make_tma_copy(CopyOp{}, g, smem_layout, Shape<Int<kRows>, Int<kCols>>{}, _1{});
}

// The epilogue's TMA store of out (store_out_rows), for traits T.
template <typename T>
typename T::TmaOut make_tma_out(const AttnParams& p) {
  return make_tma_rows<typename T::Element, T::kHeadDim, 64, SM90_TMA_STORE, 64>(
      p, p.out, p.nq, p.o_row_stride, p.o_head_stride, p.o_batch_stride, typename T::SmemLayoutOutBox{});
}

// Launch `tiles` CTAs (a one-dimensional grid over linear tile ids, tile_scheduler.h) with T's
// dynamic shared memory, in clusters of `cluster` consecutive CTAs (tiles a multiple of it).
template <typename T, typename Kernel, typename Params>
cudaError_t launch_grid(Kernel kernel, const Params& prm, cudaStream_t stream, int64_t tiles, int cluster = 1) {
  if (!linear_grid_fits(tiles)) return cudaErrorInvalidConfiguration;
  const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes);
  if (err != cudaSuccess) return err;
  if (cluster == 1) {
    kernel<<<static_cast<unsigned>(tiles), T::kNThreads, T::kSmemBytes, stream>>>(prm);
    return cudaGetLastError();
  }
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(cluster);
  attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(tiles));
  cfg.blockDim = dim3(T::kNThreads);
  cfg.dynamicSmemBytes = T::kSmemBytes;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, prm);
}

// Launch one CTA per T::kBlockM query rows, head and batch entry.
template <typename T, typename Kernel, typename Params>
cudaError_t launch_query_tiles(Kernel kernel, const Params& prm, const AttnParams& p, cudaStream_t stream) {
  return launch_grid<T>(kernel, prm, stream, linear_tiles<T::kBlockM>(p));
}

// The sparse kernels' tiles are the idx rows (one query block per CTA, or per two CTAs that take
// its halves); given scratch, plan the longest-first order (tile_order.h) into p before the launch.
template <typename T>
cudaError_t plan_sparse_tiles(AttnParams& p, cudaStream_t stream) {
  static_assert(T::kBlockM == T::kBlockSize || 2 * T::kBlockM == T::kBlockSize, "one idx row per CTA or per two");
  p.tile_order = nullptr;
  return p.order_ws && p.kmax > 0 ? plan_tile_order(p, stream) : cudaSuccess;
}

// TMA descriptors and launch of a flash_sm90_kernel<T> over p.
template <typename T>
cudaError_t launch_flash(const AttnParams& p, cudaStream_t stream) {
  using Element = typename T::Element;
  constexpr int kHeadDim = T::kHeadDim;
  typename T::Params prm;
  prm.p = p;
  prm.scale_log2 = p.scale * kLog2e;
  prm.tma_q = make_tma_rows<Element, kHeadDim, T::kBlockM>(p, p.q, p.nq, p.q_row_stride, p.q_head_stride,
                                                          p.q_batch_stride, typename T::SmemLayoutQ{});
  prm.tma_k = make_tma_rows<Element, kHeadDim, T::kBlockN>(p, p.k, p.nk, p.k_row_stride, p.k_head_stride,
                                                          p.k_batch_stride, typename T::SmemLayoutKV{}(_, _, _0{}));
  prm.tma_v = make_tma_rows<Element, kHeadDim, T::kBlockN>(p, p.v, p.nk, p.v_row_stride, p.v_head_stride,
                                                          p.v_batch_stride, typename T::SmemLayoutKV{}(_, _, _0{}));
  if constexpr (T::kTmaStore) prm.tma_o = make_tma_out<T>(p);  // else unused: not encoded
  return launch_query_tiles<T>(&flash_sm90_kernel<T>, prm, p, stream);
}

// kDense: every key tile, with the block-128 arrangement whatever the op's block size (the dense
// pass's result does not depend on it).
template <typename Element, int kHeadDim, int kBlockSize, bool kDense = false, bool kLazyRescale = false,
          bool kEarlySoftmax = false, int kDiag = 0, int kStages = 2, bool kTmaStore = true, bool kQRegs = false>
cudaError_t run_flash(const AttnParams& p, cudaStream_t stream) {
  using T = FlashSparseTraits<Element, kHeadDim, kDense ? 128 : kBlockSize, kDense, kLazyRescale, 0, kEarlySoftmax,
                              kDiag, kStages, kTmaStore, kQRegs>;
  if (!tma_compatible(p, sizeof(Element))) return cudaErrorInvalidValue;
  AttnParams q = p;
  if constexpr (kDense) {
    q.tile_order = nullptr;
  } else {
    const cudaError_t err = plan_sparse_tiles<T>(q, stream);
    if (err != cudaSuccess) return err;
  }
  return launch_flash<T>(q, stream);
}

// The one-pass attn_search (out, lse and the block scores of kBlockSize blocks): needs p.scores,
// the scratch p.search_ws of search_ws_floats(p, p.search_nslots) floats and p.search_nslots
// flags in p.search_slots (tile_scheduler.h), zeroed here.
// Out is stored from the accumulators: through shared memory and TMA (kTmaStore, as the sparse
// kernel) the pass measured 1.07-1.10x slower at 119K tokens and 0.96-1.01x at 32K on an H200,
// not understood yet (NOTES.md).
template <typename Element, int kHeadDim, int kBlockSize, bool kLazyRescale = false, bool kEarlySoftmax = false,
          bool kTmaStore = false>
cudaError_t run_flash_search(const AttnParams& p, cudaStream_t stream) {
  using T = FlashSparseTraits<Element, kHeadDim, 128, true, kLazyRescale, kBlockSize, kEarlySoftmax, 0, 2, kTmaStore>;
  if (!tma_compatible(p, sizeof(Element))) return cudaErrorInvalidValue;
  if (!p.scores || !p.search_ws || !p.search_slots || p.search_nslots < 1) return cudaErrorInvalidValue;
  AttnParams q = p;
  q.tile_order = nullptr;
  const cudaError_t err = cudaMemsetAsync(p.search_slots, 0, sizeof(int32_t) * p.search_nslots, stream);
  return err != cudaSuccess ? err : launch_flash<T>(q, stream);
}

}  // namespace adaspa::sm90
