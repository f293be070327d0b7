// Which tile a CTA computes: one CTA per (query tile of kBlockM rows, head, batch entry), so the
// query tiles of one head run as neighbours and read the same K / V while it is in L2.
//   portable kernels: a (x, y, z) = (tile, head, batch) grid;
//   hopper kernels: a one-dimensional grid over linear tile ids (b * heads + h) * tiles + m, the
//   same launch order, and for the sparse kernel optionally a planned order (tile_order.h: CTA i
//   takes tile p.tile_order[i], longest idx row first).
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/params.h"

namespace adaspa {

// Heads and batch entries of one launch: the gridDim.y / gridDim.z limit.
constexpr int kMaxGridYZ = 65535;

template <int kBlockM>
inline dim3 attention_grid(const AttnParams& p) {
  return dim3((p.nq + kBlockM - 1) / kBlockM, p.heads, p.batch);
}

struct CtaTile {
  int m_block;  // query tile (kBlockM rows)
  int h, b;
};

// Hopper kernels: tiles of one launch, the one-dimensional grid's size (<= INT32_MAX, checked by
// the bindings through linear_grid_fits).
template <int kBlockM>
inline int64_t linear_tiles(const AttnParams& p) {
  return int64_t((p.nq + kBlockM - 1) / kBlockM) * p.heads * p.batch;
}
inline bool linear_grid_fits(int64_t tiles) { return tiles <= 0x7fffffff; }

// The hopper one-pass attn_search (kFlashSearch): a CTA of kSearchRows query rows keeps a float per
// (row, key block) in a scratch slot it holds while it runs. Any number of slots >= 1 is correct;
// one per resident CTA (the kernel runs one CTA per SM) keeps CTAs from waiting for one.
constexpr int kSearchRows = 128;
inline int search_nslots(int64_t tiles, int sms) { return static_cast<int>(tiles < sms ? tiles : sms); }
inline int64_t search_ws_floats(const AttnParams& p, int nslots) { return int64_t(nslots) * kSearchRows * p.mk; }

#ifdef __CUDACC__
__device__ __forceinline__ CtaTile cta_tile() {
  return {static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y), static_cast<int>(blockIdx.z)};
}

template <int kBlockM>
__device__ __forceinline__ CtaTile linear_cta_tile(const AttnParams& p) {
  const int tiles = (p.nq + kBlockM - 1) / kBlockM;
  const int t = p.tile_order ? __ldg(p.tile_order + blockIdx.x) : static_cast<int>(blockIdx.x);
  const int hb = t / tiles;
  return {t - hb * tiles, hb % p.heads, hb / p.heads};
}

// Kernels whose CTA takes half of a 2 kBlockM-row query tile: CTAs 2i and 2i + 1 take the two
// halves (m_block counts kBlockM-row tiles) of tile i of linear_cta_tile<2 kBlockM>'s order, so
// a planned order stays one entry per idx row, and a two-CTA cluster is one query tile. The grid
// is 2 * linear_tiles<2 kBlockM>(p); the second half of a last tile of at most kBlockM rows starts
// at or past Nq (the kernel stores nothing for it).
template <int kBlockM>
__device__ __forceinline__ CtaTile half_cta_tile(const AttnParams& p) {
  const int tiles = (p.nq + 2 * kBlockM - 1) / (2 * kBlockM);
  const int i = static_cast<int>(blockIdx.x / 2);
  const int t = p.tile_order ? __ldg(p.tile_order + i) : i;
  const int hb = t / tiles;
  return {2 * (t - hb * tiles) + static_cast<int>(blockIdx.x % 2), hb % p.heads, hb / p.heads};
}
#endif

}  // namespace adaspa
