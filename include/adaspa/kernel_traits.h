// Tile shapes and CuTe layouts of the attention kernels (sm80 tensor-core MMA, ldmatrix,
// cp.async; runs unchanged on sm86 / sm89 / sm90). Every choice is made here, once.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>

#include <type_traits>

#include "adaspa/params.h"

namespace adaspa {

using namespace cute;

template <int kHeadDim_, int kBlockSize_, int kBlockM_, typename Element_>
struct AttnTraits {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockSize = kBlockSize_;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head dim must be 64 or 128");
  static_assert(kBlockSize == 64 || kBlockSize == 128, "block size must be 64 or 128");

  // Query rows per CTA: a whole number of query blocks, so a CTA reduces its block scores
  // without atomics (see fwd_launch.h for the choice per mode).
  static constexpr int kBlockM = kBlockM_;
  static_assert(kBlockM % kBlockSize == 0 && (kBlockM == 64 || kBlockM == 128));
  static constexpr int kQBlocksPerCta = kBlockM / kBlockSize;
  // Key tile of 64: the S tile (32 x 64 fp32 per warp) and the O accumulator (32 x D fp32 per
  // warp) both stay in registers for D = 128. A 128-key block is two tiles.
  static constexpr int kBlockN = 64;
  static constexpr int kTilesPerBlock = kBlockSize / kBlockN;
  // Flash pass: K / V source addresses carried from tile to tile instead of rebuilt from the tile
  // index after each barrier (less address arithmetic, two more live 64-bit pointers). Measured on
  // an H100 (NOTES.md, sessions 4 and 5): faster except for D 128 with 64-row CTAs (-0.9 %, more
  // spills), where it stays off.
  static constexpr bool kRunningPointers = !(kHeadDim == 128 && kBlockM == 64);
  // 32 query rows per warp (two m16 MMA rows): every K / V element a warp reads from shared
  // memory feeds twice the MMAs of a 16-row warp, the balance FlashAttention-2 uses (128 x 64
  // tiles, 4 warps). 64 rows -> 2 warps, 128 rows -> 4 warps.
  static constexpr int kNWarps = kBlockM / 32;
  static constexpr int kNThreads = kNWarps * 32;

  using MmaAtom = std::conditional_t<std::is_same_v<Element, cutlass::half_t>,
                                     MMA_Atom<SM80_16x8x16_F32F16F16F32_TN>, MMA_Atom<SM80_16x8x16_F32BF16BF16F32_TN>>;
  using TiledMma = TiledMMA<MmaAtom, Layout<Shape<Int<kNWarps>, _1, _1>>, Tile<Int<16 * kNWarps>, _16, _16>>;

  // 64-element (128-byte) rows swizzled so ldmatrix and the cp.async writes are bank-conflict free.
  static constexpr int kBlockKSmem = 64;
  using SmemLayoutAtom = decltype(composition(
      Swizzle<3, 3, 3>{}, Layout<Shape<_8, Int<kBlockKSmem>>, Stride<Int<kBlockKSmem>, _1>>{}));
  using SmemLayoutQ = decltype(tile_to_shape(SmemLayoutAtom{}, Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  using SmemLayoutKV = decltype(tile_to_shape(SmemLayoutAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>>{}));
  // V read transposed (D x kBlockN) as the B operand of P @ V.
  using SmemLayoutVt =
      decltype(composition(SmemLayoutKV{}, make_layout(Shape<Int<kHeadDim>, Int<kBlockN>>{}, GenRowMajor{})));
  using SmemLayoutVtNoSwizzle = decltype(get_nonswizzle_portion(SmemLayoutVt{}));

  using SmemCopyAtom = Copy_Atom<SM75_U32x4_LDSM_N, Element>;
  using SmemCopyAtomTransposed = Copy_Atom<SM75_U16x8_LDSM_T, Element>;

  // 16-byte cp.async per thread, 8 threads per 64-element row chunk.
  static constexpr int kGmemElemsPerLoad = sizeof(cute::uint128_t) / sizeof(Element);
  static constexpr int kGmemThreadsPerRow = kBlockKSmem / kGmemElemsPerLoad;
  using GmemLayoutAtom = Layout<Shape<Int<kNThreads / kGmemThreadsPerRow>, Int<kGmemThreadsPerRow>>,
                                Stride<Int<kGmemThreadsPerRow>, _1>>;
  using GmemTiledCopy = decltype(make_tiled_copy(Copy_Atom<SM80_CP_ASYNC_CACHEGLOBAL<cute::uint128_t>, Element>{},
                                                 GmemLayoutAtom{}, Layout<Shape<_1, _8>>{}));

  static constexpr int kSmemQBytes = size(SmemLayoutQ{}) * sizeof(Element);
  static constexpr int kSmemKVBytes = size(SmemLayoutKV{}) * sizeof(Element);

  // K tiles in flight in the score pass (a ring; a score tile is short: Q K^T and exp, no P @ V).
  // Deeper than two where shared memory allows it at the 3 x 128-thread CTAs per SM the score
  // kernel runs. Measured gain 0-3 %.
  static constexpr int kScoreStages = kHeadDim == 64 ? 4 : 2;
  // Q, then the key-tile buffers: K and V (flash passes) or the K ring (score pass).
  static constexpr int smem_bytes(Mode mode) {
    return kSmemQBytes + (mode == Mode::kScore ? kScoreStages : 2) * kSmemKVBytes;
  }
};

}  // namespace adaspa
