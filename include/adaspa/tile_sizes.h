// Tile sizes and occupancy of every CUDA kernel, with the reason for each choice. The traits
// (CuTe layouts) and the launchers of each arch read them from here; nothing else picks a size.
#pragma once

#include "adaspa/params.h"

namespace adaspa {

// sm80 path (mma.sync m16n8k16, ldmatrix, cp.async; also what runs on sm86 / sm89 / sm90 when no
// _sm90 kernel is compiled for the tuple).
template <Kernel kKernel_, int kHeadDim_, int kBlockSize_>
struct TileSizesSm80 {
  static constexpr Kernel kKernel = kKernel_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockSize = kBlockSize_;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head dim must be 64 or 128");
  static_assert(kBlockSize == 64 || kBlockSize == 128, "block size must be 64 or 128");

  // Query rows per CTA: a whole number of query blocks, so a CTA reduces its block scores
  // without atomics. kFlashSparse: one query block per CTA, since every query block walks its own
  // idx row. The dense kernels visit every key block, so two 64-row query blocks share one
  // 128-row CTA: each K (and V) tile read from L2 feeds twice the rows.
  static constexpr int kBlockM = kKernel == Kernel::kFlashSparse ? kBlockSize : 128;
  static_assert(kBlockM % kBlockSize == 0 && (kBlockM == 64 || kBlockM == 128));
  static constexpr int kQBlocksPerCta = kBlockM / kBlockSize;
  // Key tile of 64: the S tile (32 x 64 fp32 per warp) and the O accumulator (32 x D fp32 per
  // warp) both stay in registers for D = 128. A 128-key block is two tiles.
  static constexpr int kBlockN = 64;
  static constexpr int kTilesPerBlock = kBlockSize / kBlockN;
  // 32 query rows per warp (two m16 MMA rows): every K / V element a warp reads from shared
  // memory feeds twice the MMAs of a 16-row warp, the balance FlashAttention-2 uses (128 x 64
  // tiles, 4 warps). 64 rows -> 2 warps, 128 rows -> 4 warps.
  static constexpr int kNWarps = kBlockM / 32;
  static constexpr int kNThreads = kNWarps * 32;
  // Flash kernels: K / V source addresses carried from tile to tile instead of rebuilt from the
  // tile index after each barrier (less address arithmetic, two more live 64-bit pointers).
  // Measured on an H100 (NOTES.md, sessions 4 and 5): faster except for D 128 with 64-row CTAs
  // (-0.9 %, more spills), where it stays off.
  static constexpr bool kRunningPointers = !(kHeadDim == 128 && kBlockM == 64);
  // K tiles in flight in the score kernel (a ring; a score tile is short: Q K^T and exp, no
  // P @ V). Deeper than two where shared memory allows it at the 3 x 128-thread CTAs per SM the
  // score kernel runs. Measured gain 0-3 %.
  static constexpr int kScoreStages = kHeadDim == 64 ? 4 : 2;
  // CTAs per SM the compiler must fit in registers (__launch_bounds__): the score kernel has no O
  // accumulator, yet without this bound ptxas spent 244 registers on it at block 128 (2 CTAs / SM
  // instead of 3).
  static constexpr int kMinCtasPerSm = kKernel == Kernel::kScore && kNThreads == 128 ? 3 : 1;
};

}  // namespace adaspa
