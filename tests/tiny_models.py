"""Tiny randomly initialised diffusers transformers of each supported family, plus a call helper
that runs one denoising step (one forward per CFG branch) the way the pipelines do."""
import torch
from diffusers import CogVideoXTransformer3DModel, HunyuanVideoTransformer3DModel, WanTransformer3DModel


def hunyuan():
    torch.manual_seed(0)
    m = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=64,
                                       num_layers=1, num_single_layers=1, num_refiner_layers=1, mlp_ratio=1.0,
                                       patch_size=2, patch_size_t=1, text_embed_dim=16, pooled_projection_dim=8,
                                       rope_axes_dim=(16, 24, 24)).eval()
    x = torch.randn(1, 4, 4, 16, 16)
    enc = torch.randn(1, 20, 16)
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[:, 15:] = False  # padded text
    pooled = torch.randn(1, 8)

    def call(t):
        return m(x, torch.tensor([t]), enc, mask, pooled, guidance=torch.tensor([3000.0]), return_dict=False)[0]
    return m, call


def wan(num_layers=2, seed=0):
    torch.manual_seed(seed)
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64, in_channels=4,
                              out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=num_layers,
                              rope_max_seq_len=32).eval()
    x = torch.randn(1, 4, 4, 16, 16)
    cond, uncond = torch.randn(1, 12, 16), torch.randn(1, 12, 16)

    def call(t, branch=0):  # Wan's pipeline: cond and uncond as separate forwards
        return m(x, torch.tensor([t]), cond if branch == 0 else uncond, return_dict=False)[0]
    return m, call


def cogvideox():
    torch.manual_seed(0)
    m = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=64, in_channels=4, out_channels=4,
                                    time_embed_dim=16, text_embed_dim=16, num_layers=2, sample_width=16,
                                    sample_height=16, sample_frames=9, patch_size=2, max_text_seq_length=10,
                                    use_rotary_positional_embeddings=True).eval()
    x = torch.randn(2, 3, 4, 16, 16)  # batched CFG: uncond and cond in one batch of 2
    enc = torch.randn(2, 10, 16)

    def call(t):
        return m(x, enc, torch.tensor([t, t]), return_dict=False)[0]
    return m, call


FAMILIES = {"hunyuan": hunyuan, "wan": wan, "cogvideox": cogvideox}
