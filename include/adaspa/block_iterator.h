// "Which key tile next": the one difference between the dense and the block-sparse mainloop.
// Blocks are visited in ascending order; a block of kTilesPerBlock key tiles yields its tiles in
// order, skipping a tile that starts past the end of K (block 128, short last block).
// Sizes (mk, ntiles, kmax) are read from the kernel parameters at each use rather than held here:
// the flash mainloop runs at the 255-register limit.
#pragma once

#include <cstdint>

#include "adaspa/block_list.h"
#include "adaspa/params.h"

namespace adaspa {

template <int kBlockN, int kTilesPerBlock, bool kSparse>
struct TileIterator {
  int tile = -1;        // tile being computed, -1 when done
  int next_block = -1;  // block after the current one, -1 when none
  int last_block = -1;  // last accepted block (the block_list.h rule)
  // Sparse only: a 32-entry window of the idx row held one entry per lane, plus the next window
  // prefetched, so the scan runs on registers and a global load is rarely waited for.
  int base = 0, cursor = 0, win = -1, win_next = -1;

  __device__ __forceinline__ TileIterator(const AttnParams& p, const int32_t* row) {
    if constexpr (kSparse) {
      const int lane = threadIdx.x % 32;
      win = lane < p.kmax ? __ldg(row + lane) : -1;
      win_next = 32 + lane < p.kmax ? __ldg(row + 32 + lane) : -1;
    }
    const int first = scan(p, row);
    if (first >= 0) {
      tile = first * kTilesPerBlock;
      next_block = scan(p, row);
    }
  }

  // Next accepted block after last_block (uniform across the warp), or -1; updates last_block.
  __device__ __forceinline__ int scan(const AttnParams& p, const int32_t* row) {
    if constexpr (!kSparse) {
      const int b = last_block + 1 < p.mk ? last_block + 1 : -1;
      if (b >= 0) last_block = b;
      return b;
    } else {
      const int lane = threadIdx.x % 32;
      while (true) {
        const bool ok = lane >= cursor && base + lane < p.kmax && block_accepted(win, last_block, p.mk);
        const unsigned m = __ballot_sync(0xffffffffu, ok);
        if (m) {
          const int l = __ffs(m) - 1;
          cursor = l + 1;
          last_block = __shfl_sync(0xffffffffu, win, l);
          return last_block;
        }
        if (base + 32 >= p.kmax) return -1;
        base += 32;
        cursor = 0;
        win = win_next;
        win_next = base + 32 + lane < p.kmax ? __ldg(row + base + 32 + lane) : -1;
      }
    }
  }

  __device__ __forceinline__ int peek(const AttnParams& p) const {
    const int nt = tile + 1;
    if (nt % kTilesPerBlock != 0 && nt * kBlockN < p.nk) return nt;
    return next_block >= 0 ? next_block * kTilesPerBlock : -1;
  }

  __device__ __forceinline__ void advance(const AttnParams& p, const int32_t* row) {
    const int nt = peek(p);
    if (nt >= 0 && nt % kTilesPerBlock == 0) next_block = scan(p, row);
    tile = nt;
  }
};

}  // namespace adaspa
