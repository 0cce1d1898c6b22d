"""The Z-Image family (``ZImagePipeline``, ``ZImageTransformer2DModel``): Z-Image and Z-Image-Turbo.

Capture sites, in forward order, each an ``attention.to_out[0]`` whose input holds the
heads (no MLP channels: the feed-forward is separate):

- ``noise_refiner[i]``: refiner blocks over the image tokens alone (timestep-modulated),
  before the main layers; units read image tokens only;
- ``context_refiner[i]``: refiner blocks over the caption tokens alone (no modulation);
  units read text tokens only;
- ``layer[i]``: the main layers (diffusers' ``layers``), one stream over the image tokens
  followed by the caption tokens.

Z-Image-Turbo: 2 + 2 refiner blocks and 30 layers of 30 heads = 1,020 heads (900 in the
main layers). Each stream is padded by the transformer to a multiple of 32 tokens with
a learned pad token that attends and is attended (as in ``__call__``; the units count
those tokens). The main layers put the image first, unlike the text-first single blocks
of FLUX, and the transformer takes no ``encoder_hidden_states``: only ``--token-scope
all`` is supported.

Passes follow ``ZImagePipeline.__call__``: the prompt in the Qwen3 chat template (thinking
turn on, as the pipeline asks) through the text encoder's second-to-last hidden state,
the padding dropped (each prompt its own length; plantain batches by text length);
noise from ``prepare_latents`` in float32; lists of (channels, 1, height, width) latents;
the timestep as (1000 - t) / 1000; the prediction negated; sigmas linspace(1, 1/K, K).
``__call__`` combines guidance as ``pos + g (pos - neg)``: plantain's ``--guidance G``
(``neg + G (pos - neg)``, the empty prompt as negative) is ``guidance_scale = G - 1``, so
plantain's default 1.0 is the pipeline's 0 (no CFG). Text-pair probes only.
"""

from __future__ import annotations

from plantain_core.errors import PlantainError
from plantain_core.models.family import TEXT_KINDS, ModelFamily, encode_in_chunks, fresh_schedule
from plantain_core.models.layouts import BlockInfo, Site

#: ``max_sequence_length`` of ``ZImagePipeline.__call__``
TEXT_TOKENS = 512
#: (block kind, transformer attribute, stream) in forward order
GROUPS = (("noise_refiner", "noise_refiner", "image"), ("context_refiner", "context_refiner", "text"),
          ("layer", "layers", "single"))

#: bundled transformer configs (sources in docs/models.md)
PRESETS = {"Tongyi-MAI/Z-Image-Turbo": "Z-Image-Turbo.json"}


class ZImageFamily(ModelFamily):
    name = "z-image"
    description = "Z-Image (ZImagePipeline; Qwen3 text encoder, refiners + single-stream layers)"
    pipeline_class = "ZImagePipeline"
    transformer_class = "ZImageTransformer2DModel"
    card_tag = "z-image"
    kinds = TEXT_KINDS
    text_tokens = TEXT_TOKENS
    prompt_limit = TEXT_TOKENS
    unit_notes = (
        "noise_refiner[i]: refiner blocks over the image tokens alone; context_refiner[i]: refiner blocks over the "
        "caption tokens alone; layer[i]: the main layers over image then caption tokens; heads are slices of "
        "attention.to_out[0]'s input",
        "each stream is padded to a multiple of 32 tokens with a learned pad token; only --token-scope all",
    )

    def padding_note(self) -> str:
        return (f"The caption is each prompt's own length (at most {TEXT_TOKENS} tokens), padded by the transformer "
                "to a multiple of 32 with a learned pad token that is not masked")

    def presets(self) -> dict:
        import pathlib

        from plantain_core.models.hub import json_presets

        return json_presets(pathlib.Path(__file__).with_name("presets"), PRESETS)

    def sites(self, transformer) -> list[Site]:
        sites: list[Site] = []
        for kind, attr, stream in GROUPS:
            for i, block in enumerate(getattr(transformer, attr, None) or []):
                attn = block.attention
                dim = attn.to_out[0].in_features
                if dim % attn.heads:
                    raise PlantainError(f"{kind}[{i}]: {attn.heads} heads do not divide to_out's {dim} inputs")
                info = BlockInfo(kind, i, attn.heads, dim // attn.heads, dim, 0, (stream,))
                sites.append(Site(info, stream, attn.to_out[0]))
        if not sites:
            raise PlantainError(f"{type(transformer).__name__} has no Z-Image transformer blocks to probe")
        return sites

    def prompt_tokens(self, pipe, prompt):
        text = pipe.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True, enable_thinking=True)
        return list(pipe.tokenizer(text, verbose=False)["input_ids"])

    def encode_prompts(self, bundle, prompts):
        import torch

        pipe = bundle.pipeline

        def encode(chunk):
            # a copy: _encode_prompt writes the templated prompts into the list it is given
            (embeds,), _ = pipe.encode_prompt(prompt=list(chunk), device=pipe._execution_device,
                                              do_classifier_free_guidance=False, max_sequence_length=TEXT_TOKENS)
            return {"encoder_hidden_states": embeds[None]}

        with torch.inference_mode():  # one prompt per call: each keeps its own length
            return encode_in_chunks(prompts, encode, chunk=1), {}

    def noise(self, pipe, generator, size, dtype, device):
        import torch

        # __call__ makes (and steps) the latents in float32 whatever the model's dtype
        return pipe.prepare_latents(1, pipe.transformer.in_channels, size[0], size[1], torch.float32, device,
                                    generator), None

    def model_input(self, latents, cond):
        if cond is not None:
            raise PlantainError("Z-Image takes no conditioning image")
        return latents

    def join_ids(self, latent_ids, image_ids):
        return None

    def text_kwargs(self, text, shared, n):
        return {"cap_feats": list(text["encoder_hidden_states"].unbind(0))}

    def transformer_kwargs(self, pipe, hidden, timestep, text, ids, guidance):
        return dict(x=list(hidden.unsqueeze(2).unbind(0)), t=self.scale_timestep(timestep), **text,
                    joint_attention_kwargs=None, return_dict=False)

    def scale_timestep(self, t):
        return (1000 - t) / 1000

    def prediction(self, out, n_latent):
        import torch

        return -torch.stack([o.float() for o in out], dim=0).squeeze(2)

    def schedule(self, pipe, steps, image_seq_len, device):
        from diffusers.pipelines.z_image.pipeline_z_image import (calculate_shift, get_default_z_image_sigmas,
                                                                  retrieve_timesteps)

        config = pipe.scheduler.config
        mu = calculate_shift(image_seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                             config.get("base_shift", 0.5), config.get("max_shift", 1.15))
        return fresh_schedule(pipe, steps, device, retrieve_timesteps, sigmas=get_default_z_image_sigmas(steps), mu=mu)

    def uses_cfg(self, pipe, guidance):
        return guidance > 1.0  # G > 1 is the pipeline's guidance_scale G - 1 > 0

    def pipeline_guidance(self, guidance):
        return {"guidance_scale": guidance - 1.0}

    def text_length(self, args, kwargs):
        return None  # the layers put the image tokens first: no text-first split to read


Z_IMAGE = ZImageFamily()
