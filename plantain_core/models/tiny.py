"""The embedded tiny FLUX.2 Klein: a real ``Flux2KleinPipeline`` with random weights.

It has the component classes of the published model (Flux2Transformer2DModel,
AutoencoderKLFlux2, Qwen3ForCausalLM, a Qwen2 byte-level BPE tokenizer with a chat
template, FlowMatchEulerDiscreteScheduler) at toy sizes, so every code path a real run
takes (prompt encoding, image generation, VAE conditioning, capture) runs offline in
well under a second. Its numbers mean nothing about FLUX.
"""

from __future__ import annotations

#: Bump when anything below changes: it is part of the image-cache key.
TINY_REVISION = "tiny-1"
TINY_ID = "plantain/tiny"
TINY_SIZE = 128

# The structural rules that make the pieces fit (learned by breaking them):
# joint_attention_dim = text hidden x len(text_encoder_out_layers); in_channels =
# 4 x VAE latent channels (2x2 patchify); sum(axes_dims_rope) = attention_head_dim.
TEXT_HIDDEN = 32
# Three layers stacked as (1, 2, 3) instead of the real (9, 18, 27): 27 layers of
# attention over 512 padded tokens made prompt encoding dominate every tiny run. Code
# calling the tiny pipeline directly must pass text_encoder_out_layers=TEXT_OUT_LAYERS
# (plantain passes LoadedModel.text_encoder_out_layers everywhere).
TEXT_LAYERS = 3
TEXT_OUT_LAYERS = (1, 2, 3)
LATENT_CHANNELS = 4

TRANSFORMER_CONFIG = {
    "patch_size": 1,
    "in_channels": 4 * LATENT_CHANNELS,
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "joint_attention_dim": TEXT_HIDDEN * len(TEXT_OUT_LAYERS),
    "timestep_guidance_channels": 32,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (4, 4, 4, 4),
    "rope_theta": 2000,
    "guidance_embeds": False,
}

VAE_CONFIG = {
    # four levels: the same 8x spatial compression (16x after patchify) as the real VAE.
    "block_out_channels": (8, 8, 8, 8),
    "layers_per_block": 1,
    "latent_channels": LATENT_CHANNELS,
    "norm_num_groups": 4,
    "sample_size": TINY_SIZE,
}

TEXT_CONFIG = {
    "hidden_size": TEXT_HIDDEN,
    "intermediate_size": 64,
    "num_hidden_layers": TEXT_LAYERS,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "max_position_embeddings": 1024,
}

# The FLUX.2 scheduler settings (dynamic shifting, exponential time shift).
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.5,
    "max_shift": 1.15,
    "base_image_seq_len": 256,
    "max_image_seq_len": 4096,
    "time_shift_type": "exponential",
}

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")

# Qwen3's chat template reduced to what _get_qwen3_prompt_embeds uses: user turns, the
# generation prompt, and the empty think block that enable_thinking=False adds.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def build_tokenizer():
    """A byte-level BPE Qwen2 tokenizer with no merges: one token per UTF-8 byte, built
    in code from the tokenizers library's byte alphabet (no files, no network)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    # sorted: the alphabet is a set, and token ids must not depend on hash order.
    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        chat_template=CHAT_TEMPLATE,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=1024,
    )


def build_tiny_pipeline(seed: int = 0):
    """Build the tiny pipeline deterministically (same seed -> same weights) on CPU, fp32."""
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tokenizer()
    # fork_rng: building the model must not move the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_config = Qwen3Config(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            **TEXT_CONFIG,
        )
        text_encoder = Qwen3ForCausalLM(text_config).eval()
        torch.manual_seed(seed + 1)
        vae = AutoencoderKLFlux2(**VAE_CONFIG).eval()
        torch.manual_seed(seed + 2)
        transformer = Flux2Transformer2DModel(**TRANSFORMER_CONFIG).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    return Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=False,
    )
