"""Tiny randomly initialised diffusers transformers of each supported family (the known ones at
the tiny variants of adaspa_ext.presets' model specs), models for the generic route and for
refusals, plus a call helper that runs one denoising step (one forward per CFG branch) the way
the pipelines do."""
import diffusers
import torch
from diffusers import CogVideoXTransformer3DModel

from adaspa_ext.presets import PRESETS


def _tiny(preset, **overrides):
    spec = PRESETS[preset].model.variant(tiny=True)
    return getattr(diffusers, spec.cls)(**{**spec.config, **overrides}).eval(), spec


def hunyuan():
    torch.manual_seed(0)
    m, _ = _tiny("hunyuan-720p")
    x = torch.randn(1, 4, 4, 16, 16)
    enc = torch.randn(1, 20, 16)
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[:, 15:] = False  # padded text
    pooled = torch.randn(1, 8)

    def call(t):
        return m(x, torch.tensor([t]), enc, mask, pooled, guidance=torch.tensor([3000.0]), return_dict=False)[0]
    return m, call


def hunyuan15(image=False, dtype=torch.float32):
    """HunyuanVideo 1.5: text segment = 5 image + 6 ByT5 + 20 MLLM tokens, valid ones first after the
    model's reordering (3 ByT5, 15 MLLM valid; image tokens valid only with non-zero embeddings);
    cond and uncond as separate forwards (its pipeline's guider)."""
    torch.manual_seed(0)
    m, _ = _tiny("hunyuan1.5-720p")
    m = m.to(dtype)
    x = torch.randn(1, 9, 4, 8, 8, dtype=dtype)
    texts = [torch.randn(1, 20, 16, dtype=dtype) for _ in range(2)]
    masks = [torch.ones(1, 20, dtype=torch.int64) for _ in range(2)]
    masks[0][:, 15:] = 0
    masks[1][:, 4:] = 0  # a short negative prompt
    enc2, mask2 = torch.randn(1, 6, 8, dtype=dtype), torch.tensor([[1, 1, 1, 0, 0, 0]])
    img = torch.randn(1, 5, 8, dtype=dtype) if image else torch.zeros(1, 5, 8, dtype=dtype)

    def call(t, branch=0):
        ts = torch.tensor([t]).to(dtype)  # the pipeline passes the timestep in the latents' dtype
        return m(x, ts, texts[branch], masks[branch], encoder_hidden_states_2=enc2, encoder_attention_mask_2=mask2,
                 image_embeds=img, return_dict=False)[0]
    return m, call


def wan(num_layers=2, seed=0):
    torch.manual_seed(seed)
    m, _ = _tiny("wan1.3b-480p", num_layers=num_layers)
    x = torch.randn(1, 4, 4, 16, 16)
    cond, uncond = torch.randn(1, 12, 16), torch.randn(1, 12, 16)

    def call(t, branch=0):  # Wan's pipeline: cond and uncond as separate forwards
        return m(x, torch.tensor([t]), cond if branch == 0 else uncond, return_dict=False)[0]
    return m, call


def wan22_ti2v():
    """Wan 2.2 TI2V: one timestep per video token; image-to-video keeps the first latent frame
    clean, so its tokens get timestep 0 (the pipeline's mask * t)."""
    torch.manual_seed(0)
    m, _ = _tiny("wan2.2-ti2v-5b-720p")
    x = torch.randn(1, 4, 4, 16, 16)
    cond, uncond = torch.randn(1, 12, 16), torch.randn(1, 12, 16)
    first_frame = torch.zeros(4, 8, 8)
    first_frame[1:] = 1  # latent frames x patched height x width

    def call(t, branch=0):
        ts = (first_frame * t).flatten().unsqueeze(0).long()
        return m(x, ts, cond if branch == 0 else uncond, return_dict=False)[0]
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


# the generic route ------------------------------------------------------------------------------


def skyreels():
    """SkyReels V2 (Wan-like; video-only self-attention in attn1): not a known family."""
    torch.manual_seed(0)
    m = diffusers.SkyReelsV2Transformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64,
                                               in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32,
                                               num_layers=2, rope_max_seq_len=32).eval()
    x = torch.randn(1, 4, 4, 16, 16)
    enc = torch.randn(1, 12, 16)

    def call(t):
        return m(x, torch.tensor([t]), enc, return_dict=False)[0]
    return m, call


def ltx():
    """LTX-Video: tokens packed as [B, N, C] before the transformer; attn1 video-only, attn2 text."""
    torch.manual_seed(0)
    m = diffusers.LTXVideoTransformer3DModel(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=64,
                                             cross_attention_dim=128, num_layers=2, caption_channels=16).eval()
    x = torch.randn(1, 4 * 8 * 8, 8)
    enc = torch.randn(1, 10, 16)
    mask = torch.ones(1, 10)

    def call(t):
        return m(x, enc, torch.tensor([t]), mask, num_frames=4, height=8, width=8, return_dict=False)[0]
    return m, call


def mochi():
    """Mochi: joint text-video attention through F.scaled_dot_product_attention (refused)."""
    torch.manual_seed(0)
    return diffusers.MochiTransformer3DModel(patch_size=2, num_attention_heads=2, attention_head_dim=64, num_layers=1,
                                             pooled_projection_dim=16, in_channels=4, text_embed_dim=16,
                                             time_embed_dim=8, max_sequence_length=10).eval()


FAMILIES = {"hunyuan": hunyuan, "hunyuan1.5": hunyuan15, "wan": wan, "wan2.2-ti2v": wan22_ti2v, "cogvideox": cogvideox}
GENERIC = {"skyreels-v2": skyreels, "ltx-video": ltx}
