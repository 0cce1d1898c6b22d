"""A tiny FLUX.2 [dev]: a real ``Flux2Pipeline`` with random weights.

It has the component classes of the published model (Flux2Transformer2DModel with the
guidance embedding, AutoencoderKLFlux2, Mistral3ForConditionalGeneration with a Pixtral
vision tower, FlowMatchEulerDiscreteScheduler) at toy sizes, so the pipeline's own
``__call__`` runs end to end offline on CPU in well under a second. The VAE and the
scheduler are tiny.py's (FLUX.2 [dev] and Klein share both). Its numbers mean nothing
about FLUX.2.

The tokenizer differs in kind from the published one: FLUX.2 [dev] ships a
PixtralProcessor, which transformers will not build without torchvision (it is a
placeholder class here). Prompt encoding only calls ``tokenizer.apply_chat_template``
on text-only conversations, which a plain tokenizer with a Mistral-style chat template
serves in full, so that is what this builds: a byte-level BPE ``TokenizersBackend``
(Tekken, Mistral's tokenizer, is byte-level BPE too) with Mistral's control tokens.
What it cannot do: prompt upsampling (``caption_upsample_temperature``), which calls
``tokenizer.tokenizer.batch_decode`` and, with images, the processor's image path.
"""

from __future__ import annotations

from .tiny import SCHEDULER_CONFIG, VAE_CONFIG
from .tiny import TRANSFORMER_CONFIG as KLEIN_TRANSFORMER_CONFIG

#: Bump when anything below changes: it belongs in any cache key built on these weights.
TINY_FLUX2_DEV_REVISION = "tiny-flux2-dev-1"

# The structural rules are Klein's (see tiny.py): joint_attention_dim = text hidden x
# len(text_encoder_out_layers); in_channels = 4 x VAE latent channels.
TEXT_HIDDEN = 32
# Three layers stacked as (1, 2, 3) instead of the real (10, 20, 30): the pipeline's
# default needs at least 30 layers. Code calling the tiny pipeline directly must pass
# text_encoder_out_layers=TEXT_OUT_LAYERS (to __call__ and encode_prompt).
TEXT_LAYERS = 3
TEXT_OUT_LAYERS = (1, 2, 3)

# Klein's tiny transformer with FLUX.2 [dev]'s guidance embedding (dev is guidance-
# distilled: the pipeline always passes guidance=guidance_scale).
TRANSFORMER_CONFIG = {
    **KLEIN_TRANSFORMER_CONFIG,
    "joint_attention_dim": TEXT_HIDDEN * len(TEXT_OUT_LAYERS),
    "guidance_embeds": True,
}

# Mistral Small 3.1's language model at toy size: the real one is hidden 5120, 40
# layers, 32 heads of 128, 8 KV heads, rope_theta 1e9.
TEXT_CONFIG = {
    "hidden_size": TEXT_HIDDEN,
    "intermediate_size": 64,
    "num_hidden_layers": TEXT_LAYERS,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "max_position_embeddings": 1024,
    "rope_theta": 1000000000.0,
    "sliding_window": None,
}

# The Pixtral vision tower at toy size (real: hidden 1024, 24 layers, patch 14). Prompt
# encoding never runs it; it is there so the text encoder has the published structure.
VISION_CONFIG = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "patch_size": 14,
    "image_size": 224,
}

# Mistral's control tokens in Tekken's order, so the ids that configs name match the
# real ones: [IMG] = 10 (Mistral3Config's default image_token_index), <pad> = 11.
SPECIAL_TOKENS = (
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
)
TOKENIZER_MAX_LENGTH = 131072
# transformers' default. With it the sequence the transformer sees is: <s>, the system
# prompt in [SYSTEM_PROMPT]..[/SYSTEM_PROMPT], the prompt in [INST]..[/INST], then <pad>
# up to 512 (the pipeline pads to max_length and gives the transformer no mask).
PADDING_SIDE = "right"

# Mistral Small 3.1's chat template reduced to what _get_mistral_3_small_prompt_embeds
# uses: a system turn and user turns whose content is a string or a list of
# {"type": "text", "text": ...} items (image items are dropped: there is no processor
# here to expand them into [IMG] tokens). Mistral has no generation prompt: [/INST] is it.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['content'] is string %}{%- set text = message['content'] %}"
    "{%- else %}{%- set text = message['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join('') %}{%- endif %}"
    "{%- if message['role'] == 'system' %}{{ '[SYSTEM_PROMPT]' + text + '[/SYSTEM_PROMPT]' }}"
    "{%- elif message['role'] == 'user' %}{{ '[INST]' + text + '[/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{{ text + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
)


def build_mistral_tokenizer():
    """A byte-level BPE tokenizer with no merges and Mistral's control tokens, built in
    code from the tokenizers library's byte alphabet (no files, no network)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    # sorted: the alphabet is a set, and token ids must not depend on hash order.
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    backend = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # No post-processor: the chat template writes <s> itself, as Mistral's does.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<unk>", "<s>", "</s>", "<pad>")],
        chat_template=CHAT_TEMPLATE,
        model_max_length=TOKENIZER_MAX_LENGTH,
        padding_side=PADDING_SIDE,
    )


def build_tiny_flux2_dev_pipeline(seed: int = 0):
    """Build the tiny FLUX.2 [dev] pipeline deterministically (same seed -> same weights), CPU fp32."""
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2Pipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig, PixtralVisionConfig

    tokenizer = build_mistral_tokenizer()
    text_config = MistralConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TEXT_CONFIG,
    )
    config = Mistral3Config(
        text_config=text_config,
        vision_config=PixtralVisionConfig(**VISION_CONFIG),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        tie_word_embeddings=False,
    )
    # fork_rng: building the model must not move the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = Mistral3ForConditionalGeneration(config).eval()
        torch.manual_seed(seed + 1)
        vae = AutoencoderKLFlux2(**VAE_CONFIG).eval()
        torch.manual_seed(seed + 2)
        transformer = Flux2Transformer2DModel(**TRANSFORMER_CONFIG).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    return Flux2Pipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
