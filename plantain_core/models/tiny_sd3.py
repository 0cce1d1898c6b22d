"""A tiny Stable Diffusion 3.5 (medium-shaped): a real ``StableDiffusion3Pipeline`` with random weights.

It has the component classes of the published model (SD3Transformer2DModel with
SD3.5-medium's dual attention and RMS qk-norm, AutoencoderKL with 16 latent channels,
two CLIPTextModelWithProjection + CLIPTokenizer, T5EncoderModel + T5Tokenizer,
FlowMatchEulerDiscreteScheduler(shift=3.0)) at toy sizes, so the pipeline's own
``__call__`` runs end to end offline on CPU in well under a second. Its numbers mean
nothing about SD3.
"""

from __future__ import annotations

from .tiny_flux1 import VAE_CONFIG as FLUX1_VAE_CONFIG
from .tiny_text import CLIP_G_CONFIG, CLIP_G_PAD, CLIP_L_CONFIG, T5_CONFIG

#: Bump when anything below changes: it belongs in any cache key built on these weights.
TINY_SD3_REVISION = "tiny-sd3-1"
TINY_SIZE = 128

# The structural rules (from SD3Transformer2DModel and StableDiffusion3Pipeline):
# in_channels = out_channels = VAE latent channels (the transformer patchifies itself,
# patch_size 2); caption_projection_dim = num_attention_heads x attention_head_dim (the
# text stream runs at the transformer width); joint_attention_dim = T5 d_model (the two
# CLIP streams are zero-padded up to it); pooled_projection_dim = CLIP-L projection +
# CLIP-G projection (the pooled outputs are concatenated); the pipeline's default
# height is sample_size x 8, so sample_size is the latent size of a TINY_SIZE image.
LATENT_CHANNELS = 16
NUM_LAYERS = 3

TRANSFORMER_CONFIG = {
    "sample_size": TINY_SIZE // 8,
    "patch_size": 2,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "num_layers": NUM_LAYERS,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "joint_attention_dim": T5_CONFIG["d_model"],
    "caption_projection_dim": 4 * 16,
    "pooled_projection_dim": CLIP_L_CONFIG["projection_dim"] + CLIP_G_CONFIG["projection_dim"],
    # A 32x32 table of patch positions, center-cropped to the image: room for 512 px.
    "pos_embed_max_size": 32,
    # SD3.5 medium gives its first 13 blocks a second, image-only attention (attn2);
    # block 0 here, so that path runs. The last block is context_pre_only (diffusers sets
    # that itself): it reads the text stream but returns None for it.
    "dual_attention_layers": (0,),
    "qk_norm": "rms_norm",
}

# FLUX.1's tiny VAE (16 latent channels, 8x, no quant convs: SD3's has none either) with
# SD3's latent normalisation, read by the pipeline when it decodes.
VAE_CONFIG = {**FLUX1_VAE_CONFIG, "scaling_factor": 1.5305, "shift_factor": 0.0609}

# SD3 / SD3.5's scheduler_config.json: a fixed shift, no dynamic shifting.
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
}


def build_tiny_sd3_pipeline(seed: int = 0):
    """Build the tiny SD3 pipeline deterministically (same seed -> same weights), CPU fp32."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    from .tiny_text import build_clip_text_model, build_clip_tokenizer, build_t5_encoder, build_t5_tokenizer

    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_clip_tokenizer(pad_token=CLIP_G_PAD)
    tokenizer_3 = build_t5_tokenizer()
    # fork_rng: building the model must not move the caller's global RNG. Each component
    # has its own seed, so changing one never changes the others' weights.
    with torch.random.fork_rng(devices=[]):
        text_encoder = build_clip_text_model(tokenizer, CLIP_L_CONFIG, seed=seed, projection=True)
        text_encoder_2 = build_clip_text_model(tokenizer_2, CLIP_G_CONFIG, seed=seed + 1, projection=True)
        text_encoder_3 = build_t5_encoder(tokenizer_3, T5_CONFIG, seed=seed + 2)
        torch.manual_seed(seed + 3)
        vae = AutoencoderKL(**VAE_CONFIG).eval()
        torch.manual_seed(seed + 4)
        transformer = SD3Transformer2DModel(**TRANSFORMER_CONFIG).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
