"""Tiny Qwen-Image, Z-Image and PixArt-Sigma: the real diffusers pipelines with random weights.

Each has the component classes of the published model at toy sizes, built in code with
no file read and nothing downloaded (same seed -> same weights, the caller's RNG
untouched), so the pipeline's own ``__call__`` runs end to end offline on CPU:

- ``QwenImagePipeline``: QwenImageTransformer2DModel (dual-stream blocks), AutoencoderKLQwenImage,
  Qwen2_5_VLForConditionalGeneration (a one-block vision tower it never runs), Qwen2Tokenizer;
- ``ZImagePipeline``: ZImageTransformer2DModel (refiners + single-stream layers), AutoencoderKL,
  Qwen3ForCausalLM, Qwen2Tokenizer with the Qwen3 chat template;
- ``PixArtSigmaPipeline``: PixArtTransformer2DModel (self- and cross-attention per block,
  learned sigma), AutoencoderKL with 4 latent channels, T5EncoderModel + T5Tokenizer,
  DPMSolverMultistepScheduler.

The tokenizers are plantain's offline ones (:func:`plantain_core.models.tiny.build_tokenizer`:
byte-level BPE without merges; :func:`plantain_core.models.tiny_text.build_t5_tokenizer`).
Their numbers mean nothing about Qwen-Image, Z-Image or PixArt.
"""

from __future__ import annotations

from plantain_core.models.tiny_flux1 import VAE_CONFIG as FLUX1_VAE_CONFIG
from plantain_core.models.tiny_text import T5_CONFIG

#: Bump when a builder changes: part of the image-cache key.
TINY_QWEN_IMAGE_REVISION = "tiny-qwen-image-1"
TINY_Z_IMAGE_REVISION = "tiny-z-image-1"
TINY_PIXART_SIGMA_REVISION = "tiny-pixart-sigma-1"
TINY_SIZE = 128
TEXT_HIDDEN = 32

# --- Qwen-Image ------------------------------------------------------------------------
# in_channels = 4 x the VAE's z_dim (2x2 packing); joint_attention_dim = the text hidden
# size; sum(axes_dims_rope) = attention_head_dim. The VAE's z_dim stays 16 because the
# pipeline reads 16 latents_mean/std values when it decodes.
QWEN_IMAGE_TRANSFORMER_CONFIG = {
    "patch_size": 2,
    "in_channels": 64,
    "out_channels": 16,
    "num_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "joint_attention_dim": TEXT_HIDDEN,
    "guidance_embeds": False,
    "axes_dims_rope": (4, 6, 6),
}
# base_dim 8 with three downsamplings: the real 8x compression.
QWEN_IMAGE_VAE_CONFIG = {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1}
# Qwen2.5-VL-7B's text model is hidden 3584, 28 layers, 28 heads (4 KV heads) of 128, mRoPE
# sections (16, 24, 24) summing to half the head dim; here (2, 3, 3) for heads of 16.
QWEN_VL_TEXT_CONFIG = {
    "hidden_size": TEXT_HIDDEN, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 1, "max_position_embeddings": 2048,
    "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0},
}
QWEN_VL_VISION_CONFIG = {"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                         "out_hidden_size": TEXT_HIDDEN, "fullatt_block_indexes": [0]}
# Qwen-Image's scheduler settings: dynamic exponential shift, terminal sigma 0.02.
QWEN_IMAGE_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 0.9,
    "base_image_seq_len": 256, "max_image_seq_len": 8192, "shift_terminal": 0.02, "time_shift_type": "exponential",
}

# --- Z-Image ---------------------------------------------------------------------------
# dim = n_heads x head dim, sum(axes_dims) = head dim (each even: RoPE pairs); cap_feat_dim
# = the text hidden size; axes_lens[0] above the longest caption (512, padded to 32) + 1.
Z_IMAGE_TRANSFORMER_CONFIG = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 64,
    "n_layers": 2,
    "n_refiner_layers": 1,
    "n_heads": 4,
    "n_kv_heads": 4,
    "cap_feat_dim": TEXT_HIDDEN,
    "axes_dims": (4, 6, 6),
    "axes_lens": (1024, 64, 64),
}
Z_IMAGE_VAE_CONFIG = FLUX1_VAE_CONFIG  # FLUX.1's VAE (16 channels, 8x), as Z-Image uses
QWEN3_TEXT_CONFIG = {"hidden_size": TEXT_HIDDEN, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                     "max_position_embeddings": 1024}
# Z-Image-Turbo's scheduler: a fixed shift of 3, no dynamic shifting.
Z_IMAGE_SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}

# --- PixArt-Sigma -----------------------------------------------------------------------
# caption_channels = T5 d_model; cross_attention_dim = inner dim (heads x head dim);
# out_channels = 2 x latent channels (learned sigma); sample_size = the latent size of a
# TINY_SIZE image (the 1024 model's 128 switches on resolution/aspect-ratio conditioning).
PIXART_TRANSFORMER_CONFIG = {
    "num_attention_heads": 4,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 2,
    "norm_num_groups": 4,
    "cross_attention_dim": 64,
    "sample_size": TINY_SIZE // 8,
    "patch_size": 2,
    "caption_channels": T5_CONFIG["d_model"],
    "interpolation_scale": 1,
    "use_additional_conditions": False,
}
PIXART_VAE_CONFIG = {**FLUX1_VAE_CONFIG, "latent_channels": 4, "scaling_factor": 0.13025, "shift_factor": None,
                     "use_quant_conv": True, "use_post_quant_conv": True}
# PixArt-Sigma's scheduler_config.json: DPM-Solver++ (2nd order, multistep), linear betas.
PIXART_SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001,
                           "beta_end": 0.02, "prediction_type": "epsilon", "algorithm_type": "dpmsolver++",
                           "solver_order": 2, "lower_order_final": True, "timestep_spacing": "linspace"}


def _seeded(seed: int, build):
    import torch

    torch.manual_seed(seed)
    return build().eval()


def build_tiny_qwen_image_pipeline(seed: int = 0):
    """The tiny QwenImagePipeline. Its tokenizer spells the prompt template in more tokens
    than Qwen's (one per byte), so the pipeline's drop of the template's first tokens is
    set to the tiny tokenizer's template length (34 for the real one)."""
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline
    from diffusers import QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from plantain_core.models.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config={**QWEN_VL_TEXT_CONFIG, "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                     "bos_token_id": None, "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>")},
        vision_config=QWEN_VL_VISION_CONFIG)
    with torch.random.fork_rng(devices=[]):
        text_encoder = _seeded(seed, lambda: Qwen2_5_VLForConditionalGeneration(config))
        vae = _seeded(seed + 1, lambda: AutoencoderKLQwenImage(**QWEN_IMAGE_VAE_CONFIG))
        transformer = _seeded(seed + 2, lambda: QwenImageTransformer2DModel(**QWEN_IMAGE_TRANSFORMER_CONFIG))
    pipe = QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_IMAGE_SCHEDULER_CONFIG), vae=vae,
                             text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)
    prefix = pipe.prompt_template_encode.split("{}")[0]
    pipe.prompt_template_encode_start_idx = len(tokenizer(prefix)["input_ids"])
    return pipe


def build_tiny_z_image_pipeline(seed: int = 0):
    """The tiny ZImagePipeline (Qwen3 text encoder, the chat template's thinking turn as the pipeline asks)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from plantain_core.models.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    config = Qwen3Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), **QWEN3_TEXT_CONFIG)
    with torch.random.fork_rng(devices=[]):
        text_encoder = _seeded(seed, lambda: Qwen3ForCausalLM(config))
        vae = _seeded(seed + 1, lambda: AutoencoderKL(**Z_IMAGE_VAE_CONFIG))
        transformer = _seeded(seed + 2, lambda: ZImageTransformer2DModel(**Z_IMAGE_TRANSFORMER_CONFIG))
    return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(**Z_IMAGE_SCHEDULER_CONFIG), vae=vae,
                          text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)


def build_tiny_pixart_sigma_pipeline(seed: int = 0):
    """The tiny PixArtSigmaPipeline (T5 text encoder, DPM-Solver++ scheduler)."""
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    from plantain_core.models.tiny_text import build_t5_encoder, build_t5_tokenizer

    tokenizer = build_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        text_encoder = build_t5_encoder(tokenizer, T5_CONFIG, seed=seed)
        vae = _seeded(seed + 1, lambda: AutoencoderKL(**PIXART_VAE_CONFIG))
        transformer = _seeded(seed + 2, lambda: PixArtTransformer2DModel(**PIXART_TRANSFORMER_CONFIG))
    return PixArtSigmaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                               scheduler=DPMSolverMultistepScheduler(**PIXART_SCHEDULER_CONFIG))
