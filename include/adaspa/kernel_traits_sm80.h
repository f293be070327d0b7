// CuTe layouts of the sm80 kernels (tensor-core mma.sync, ldmatrix, cp.async; runs unchanged on
// sm86 / sm89 / sm90), derived from the tile sizes of tile_sizes.h.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>

#include <type_traits>

#include "adaspa/params.h"
#include "adaspa/tile_sizes.h"

namespace adaspa {

using namespace cute;

template <typename Tiles, typename Element_>
struct KernelTraitsSm80 : Tiles {
  using Element = Element_;
  using Tiles::kBlockM, Tiles::kBlockN, Tiles::kHeadDim, Tiles::kNWarps, Tiles::kNThreads;

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
  // Q, then the key-tile buffers: K and V (flash kernels) or the K ring (score kernel).
  static constexpr int kSmemBytes =
      kSmemQBytes + (Tiles::kKernel == Kernel::kScore ? Tiles::kScoreStages : 2) * kSmemKVBytes;
};

}  // namespace adaspa
