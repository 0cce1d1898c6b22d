"""A tiny FLUX.1 [dev] (and FLUX.1 Kontext [dev]): a real ``FluxPipeline`` with random weights.

It has the component classes of the published models (FluxTransformer2DModel,
AutoencoderKL with 16 latent channels, CLIPTextModel + CLIPTokenizer, T5EncoderModel +
T5Tokenizer, FlowMatchEulerDiscreteScheduler with FLUX.1's shipped config) at toy
sizes, so the pipeline's own ``__call__`` runs end to end offline on CPU in well under a
second. Its numbers mean nothing about FLUX.1.

Kontext shares every component with FLUX.1 [dev] (same transformer class and config
shape, guidance embedding on); only the pipeline class differs. Two things to pass when
calling the tiny Kontext pipeline directly, because its defaults assume megapixel
images: ``max_area=TINY_SIZE**2`` (it rescales height/width to max_area, 1024**2 by
default, whatever was asked) and ``_auto_resize=False`` (it resizes the input image to
one of its preferred resolutions, all near 1024**2).
"""

from __future__ import annotations

from .tiny_text import CLIP_L_CONFIG, T5_CONFIG

#: Bump when anything below changes: it belongs in any cache key built on these weights.
TINY_FLUX1_REVISION = "tiny-flux1-1"
TINY_FLUX1_KONTEXT_REVISION = "tiny-flux1-kontext-1"
TINY_SIZE = 128

# The structural rules (from FluxTransformer2DModel and FluxPipeline):
# in_channels = 4 x VAE latent channels (the pipeline packs 2x2 latent patches, so
# patch_size stays 1); joint_attention_dim = T5 d_model (T5's last hidden state is the
# sequence conditioning); pooled_projection_dim = CLIP hidden (CLIPTextModel's pooled
# output, no projection); sum(axes_dims_rope) = attention_head_dim, each axis even
# (real: (16, 56, 56) over 128).
LATENT_CHANNELS = 16

TRANSFORMER_CONFIG = {
    "patch_size": 1,
    "in_channels": 4 * LATENT_CHANNELS,
    "out_channels": None,
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "joint_attention_dim": T5_CONFIG["d_model"],
    "pooled_projection_dim": CLIP_L_CONFIG["hidden_size"],
    "guidance_embeds": True,
    "axes_dims_rope": (4, 6, 6),
}

VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    # four levels: the same 8x spatial compression as the real VAE (16x after packing).
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (8, 8, 8, 8),
    "layers_per_block": 1,
    "latent_channels": LATENT_CHANNELS,
    "norm_num_groups": 4,
    "sample_size": TINY_SIZE,
    # FLUX.1's latent normalisation, read by the pipeline when it decodes.
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    # FLUX.1's VAE has no 1x1 quant convs around the latent.
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}

# FLUX.1 [dev]'s scheduler_config.json (Kontext ships the same).
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
}


def build_tiny_flux1_pipeline(seed: int = 0, kontext: bool = False):
    """Build the tiny FLUX.1 pipeline deterministically (same seed -> same weights), CPU fp32.

    kontext=True gives a ``FluxKontextPipeline`` over the very same components.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxPipeline,
        FluxTransformer2DModel,
    )

    from .tiny_text import build_clip_text_model, build_clip_tokenizer, build_t5_encoder, build_t5_tokenizer

    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_t5_tokenizer()
    # fork_rng: building the model must not move the caller's global RNG. Each component
    # has its own seed, so changing one never changes the others' weights.
    with torch.random.fork_rng(devices=[]):
        text_encoder = build_clip_text_model(tokenizer, CLIP_L_CONFIG, seed=seed)
        text_encoder_2 = build_t5_encoder(tokenizer_2, T5_CONFIG, seed=seed + 1)
        torch.manual_seed(seed + 2)
        vae = AutoencoderKL(**VAE_CONFIG).eval()
        torch.manual_seed(seed + 3)
        transformer = FluxTransformer2DModel(**TRANSFORMER_CONFIG).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    pipeline_class = FluxKontextPipeline if kontext else FluxPipeline
    return pipeline_class(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def build_tiny_flux1_kontext_pipeline(seed: int = 0):
    """The tiny ``FluxKontextPipeline``: build_tiny_flux1_pipeline(seed, kontext=True), for
    callers that name a builder taking only the seed."""
    return build_tiny_flux1_pipeline(seed, kontext=True)
