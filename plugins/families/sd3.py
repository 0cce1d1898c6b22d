"""The Stable Diffusion 3 family: SD3 medium, SD3.5 large/large turbo/medium
(``StableDiffusion3Pipeline``, ``SD3Transformer2DModel``).

Capture sites: SD3 has joint blocks only. Each block's attention output goes through
``attn.to_out[0]`` (image stream) and ``attn.to_add_out`` (text stream), except the last
block's, which is ``context_pre_only``: it updates the image tokens only, so it has no
text stream and no units under ``--token-scope text``. SD3.5 medium's first 13 blocks
have a second, image-only self-attention ``attn2`` (``attn2.to_out[0]``): its heads are
units of their own, ``attn2[i].hNN``. No MLP channels are captured.

Passes follow ``StableDiffusion3Pipeline.__call__``: two CLIP encoders (pooled, and
their 77 tokens padded to T5's width) and T5's 256 tokens from ``encode_prompt``, noise
from ``prepare_latents`` (unpacked, 16 channels; the transformer patchifies 2x2), the
scheduler's own timesteps (not divided by 1000), classifier-free guidance with the empty
prompt at guidance above 1. Text-pair probes only: the pipeline takes no conditioning image.
"""

from __future__ import annotations

from plantain_core.errors import PlantainError
from plantain_core.models.family import TEXT_KINDS, ModelFamily, encode_in_chunks, fresh_schedule
from plantain_core.models.layouts import BlockInfo, Site

from .flux2 import no_mask_note

CLIP_TOKENS = 77
T5_TOKENS = 256


class UnpackedLatents:
    """The passes of a text-to-image family whose latents stay 4-D (``prepare_latents``
    unpacked; the transformer patchifies) with no position ids and no conditioning image:
    SD3 and PixArt-Sigma."""

    def noise(self, pipe, generator, size, dtype, device):
        latents = pipe.prepare_latents(1, pipe.transformer.config.in_channels, size[0], size[1], dtype, device,
                                       generator)
        return latents, None

    def model_input(self, latents, cond):
        if cond is not None:
            raise PlantainError(f"model family {self.name} takes no conditioning image")
        return latents

    def join_ids(self, latent_ids, image_ids):
        return None


class SD3Family(UnpackedLatents, ModelFamily):
    name = "sd3"
    description = "Stable Diffusion 3 / 3.5 (StableDiffusion3Pipeline; CLIP-L, CLIP-G and T5 text encoders)"
    pipeline_class = "StableDiffusion3Pipeline"
    transformer_class = "SD3Transformer2DModel"
    card_tag = "sd3"
    kinds = TEXT_KINDS
    text_tokens = CLIP_TOKENS + T5_TOKENS
    prompt_limit = T5_TOKENS
    timestep_scale = 1.0
    unit_notes = (
        "joint blocks only: heads are slices of the attention output before attn.to_out[0] (image tokens) and "
        "attn.to_add_out (text tokens); the last block is context-pre-only (image tokens only)",
        "attn2[i]: SD3.5 medium's second, image-only attention in its first blocks (attn2.to_out[0])",
    )

    def padding_note(self) -> str:
        return no_mask_note(self)  # CLIP's 77 + T5's 256 tokens, none masked

    def sites(self, transformer) -> list[Site]:
        sites: list[Site] = []
        for i, block in enumerate(getattr(transformer, "transformer_blocks", [])):
            for kind, attn in (("joint", block.attn), ("attn2", getattr(block, "attn2", None))):
                if attn is None:
                    continue
                dim = attn.to_out[0].in_features
                if dim % attn.heads:
                    raise PlantainError(f"{kind}[{i}]: {attn.heads} heads do not divide to_out's {dim} inputs")
                text = kind == "joint" and getattr(attn, "to_add_out", None) is not None
                info = BlockInfo(kind, i, attn.heads, dim // attn.heads, dim, 0, ("image", "text") if text else ("image",))
                sites.append(Site(info, "image", attn.to_out[0]))
                if text:
                    sites.append(Site(info, "text", attn.to_add_out))
        if not sites:
            raise PlantainError(f"{type(transformer).__name__} has no SD3 transformer blocks to probe")
        return sites

    def prompt_tokens(self, pipe, prompt):
        # T5's tokens carry the prompt past CLIP's 77; without T5, CLIP-L's are the prompt
        tokenizer = pipe.tokenizer_3 if getattr(pipe, "text_encoder_3", None) is not None else pipe.tokenizer
        return list(tokenizer(prompt, verbose=False)["input_ids"])

    def size_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor * pipe.patch_size

    def encode_prompts(self, bundle, prompts):
        import torch

        pipe = bundle.pipeline

        def encode(chunk):
            pe, _, pooled, _ = pipe.encode_prompt(prompt=chunk, prompt_2=None, prompt_3=None,
                                                  device=pipe._execution_device, do_classifier_free_guidance=False,
                                                  max_sequence_length=T5_TOKENS)
            return {"encoder_hidden_states": pe, "pooled_projections": pooled}

        with torch.inference_mode():
            return encode_in_chunks(prompts, encode), {}

    def text_kwargs(self, text, shared, n):
        return {"encoder_hidden_states": text["encoder_hidden_states"], "pooled_projections": text["pooled_projections"]}

    def transformer_kwargs(self, pipe, hidden, timestep, text, ids, guidance):
        return dict(hidden_states=hidden, timestep=self.scale_timestep(timestep), **text, joint_attention_kwargs=None,
                    return_dict=False)

    def scale_timestep(self, t):
        return t

    def prediction(self, out, n_latent):
        return out  # (batch, channels, height, width): the whole output is the latent's

    def schedule(self, pipe, steps, image_seq_len, device):
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift, retrieve_timesteps

        kwargs = {}
        config = pipe.scheduler.config
        if config.get("use_dynamic_shifting", None):
            kwargs["mu"] = calculate_shift(image_seq_len, config.get("base_image_seq_len", 256),
                                           config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                                           config.get("max_shift", 1.16))
        return fresh_schedule(pipe, steps, device, retrieve_timesteps, sigmas=None, **kwargs)

    def uses_cfg(self, pipe, guidance):
        return guidance > 1.0  # the pipeline's do_classifier_free_guidance


SD3 = SD3Family()
