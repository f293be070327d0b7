// Plain parameter structs shared by the CUDA launchers and the CPU kernels. No torch headers:
// csrc/ is the only place tensors become pointers.
#pragma once

#include <cstdint>

namespace adaspa {

// Which op a query-block pass computes (the CPU kernels; the CUDA ops are composed of Kernels).
enum class Mode : int {
  kSparse = 0,  // sparse_attn: visit only the key blocks listed in idx; write out, lse
  kSearch = 1,  // attn_search: dense forward (out, lse), then the kScore pass with that lse
  kScore = 2,   // block_scores: the score pass (scores) with a given (cached) lse
};

// The CUDA kernels. The ops compose them: sparse_attn = kFlashSparse; attn_search = kFlashSearch
// on the hopper path, kFlashDense (out, lse) then kScore reading that lse on the portable one;
// block_scores = kScore with a cached lse.
enum class Kernel : int {
  kFlashSparse = 0,  // flash pass over the key blocks of each idx row -> out, lse
  kFlashDense = 1,   // flash pass over every key block                -> out, lse
  kScore = 2,        // Q K^T again, exp(s - lse) summed per (query block, key block) -> scores
  kFlashSearch = 3,  // flash pass over every key block, scores in the same pass -> out, lse, scores
};

enum class DType : int { kFloat16 = 0, kBFloat16 = 1 };

// Inputs are logically [B, H, N, D] with the last dim contiguous; every other stride is free
// (a [B, N, H, D] tensor viewed with transpose(1, 2) is taken as is). Strides are in elements.
struct AttnParams {
  const void* q;  // [B, H, Nq, D], fp16/bf16
  const void* k;  // [B, H, Nk, D]
  const void* v;  // [B, H, Nk, D]
  void* out;      // [B, H, Nq, D], same dtype as q, its own strides below: written (flash kernels)
  float* lse;     // [B, H, Nq] contiguous, natural log: written (flash kernels; null: not written), read (kScore)
  float* scores;  // [B, H, Mq, Mk] contiguous fp32 block scores: written (kScore)
  const int32_t* idx;  // [B, H, Mq, kmax] contiguous key-block lists (kFlashSparse only)

  int64_t q_batch_stride, q_head_stride, q_row_stride;
  int64_t k_batch_stride, k_head_stride, k_row_stride;
  int64_t v_batch_stride, v_head_stride, v_row_stride;
  int64_t o_batch_stride, o_head_stride, o_row_stride;

  int batch, heads;
  int nq, nk;    // tokens; the last query / key block may be partial
  int mq, mk;    // query / key blocks: ceil(n / block_size)
  int kmax;      // entries per idx row (kFlashSparse)
  float scale;   // softmax scale applied to q . k

  // Hopper-path kFlashSparse only (tile_order.h): scratch of tile_order_ints int32 for the longest-
  // list-first order, or null (tiles in launch order); tile_order is set by the launcher once the
  // order is planned: CTA i computes tile tile_order[i].
  int32_t* order_ws;
  const int32_t* tile_order;

  // kFlashSearch only (flash_kernel_sm90.h, "One-pass block scores"): search_nslots scratch slots
  // of search_ws_floats (tile_scheduler.h) and one int32 flag per slot.
  float* search_ws;
  int32_t* search_slots;
  int search_nslots;
};

// Top-k block selection over scores (select_blocks).
struct SelectParams {
  const float* scores;     // [B, H, Mq, Mk] contiguous
  const int32_t* keep;     // [H]: non-forced blocks each row keeps (clamped to [0, Mk - forced])
  const uint8_t* forced;   // [Mk] bool, or nullptr: blocks kept in every row (text sink)
  int32_t* idx;            // [B, H, Mq, Mk] out: kept blocks ascending, then -1
  float* kept_mass;        // [B, H, Mq] out: kept share of the row's total score
  int batch, heads, mq, mk;
};

// Packed block pattern -> kernel idx (mask_to_idx). Output rows are the video query blocks'
// lists (the set bits of their pattern rows, ascending, at most `width` of them, then -1) and
// `text_qblocks` query blocks of text, before or after them, that list every key block.
struct MaskIdxParams {
  const uint8_t* packed;  // [B, H, Mq, nbytes] contiguous: bit j % 8 of byte j / 8 = key block j
  int32_t* idx;           // [B, H, Mq + text_qblocks, out_width] contiguous, written
  int64_t rows;           // B * H * (Mq + text_qblocks): output rows
  int mq;                 // video query blocks (rows of the pattern per (b, h))
  int nbytes;             // bytes per pattern row: ceil(mk / 8)
  int mk;                 // key blocks; bits at or above mk are ignored
  int width;              // entries per video row (<= mk); set bits beyond the first width are dropped
  int out_width;          // entries per output row: width without text rows, else mk
  int text_qblocks;       // text query blocks (full key lists)
  bool text_first;        // text query blocks before (true) or after (false) the video ones
};

}  // namespace adaspa
