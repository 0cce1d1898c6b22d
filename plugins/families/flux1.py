"""The FLUX.1 families: [dev]/[schnell] (``FluxPipeline``) and Kontext [dev]
(``FluxKontextPipeline``), one ``FluxTransformer2DModel``.

Capture sites: joint blocks ``attn.to_out[0]`` (image stream) and ``attn.to_add_out``
(text stream), as in FLUX.2. Single blocks have no attention output projection of their
own: ``proj_out`` takes the attention output and the parallel MLP's activations
concatenated (``torch.cat([attn_output, mlp_hidden_states], dim=2)``), over the text
tokens then the image tokens; its attention part holds the heads.

Passes follow ``FluxPipeline.__call__``: CLIP's pooled embedding and T5's 512 tokens from
``encode_prompt``, noise from ``prepare_latents`` (packed 2x2), timesteps with
``calculate_shift`` on the scheduler's settings, the guidance scale embedded on
guidance-distilled checkpoints ([dev]; [schnell] has no guidance embedding). No
classifier-free guidance (``true_cfg_scale`` stays 1). Kontext appends the conditioning
image's latents (position ids offset to 1 in their first axis) to the sequence.
"""

from __future__ import annotations

from plantain_core.errors import PlantainError
from plantain_core.models.family import ALL_KINDS, ModelFamily, encode_in_chunks, flow_sigmas, fresh_schedule
from plantain_core.models.layouts import BlockInfo, Site

from .flux2 import embedded_guidance, joint_sites, no_mask_note



class Flux1Family(ModelFamily):
    name = "flux1"
    description = "FLUX.1 [dev]/[schnell] (FluxPipeline; CLIP + T5 text encoders)"
    pipeline_class = "FluxPipeline"
    transformer_class = "FluxTransformer2DModel"
    card_tag = "flux1"
    text_tokens = 512
    prompt_limit = 512
    unit_notes = (
        "joint blocks: heads are slices of the attention output before attn.to_out[0] (image tokens) and "
        "attn.to_add_out (text tokens)",
        "single blocks have no attention output projection: proj_out takes the attention output and the MLP's "
        "activations concatenated; heads are its attention part, slices16 covers both (the MLP slices are "
        "counted apart)",
    )

    def padding_note(self) -> str:
        return no_mask_note(self)

    def sites(self, transformer) -> list[Site]:
        sites = joint_sites(transformer)
        for i, block in enumerate(getattr(transformer, "single_transformer_blocks", [])):
            attn = block.attn
            if block.proj_out.in_features != attn.inner_dim + block.mlp_hidden_dim:
                raise PlantainError(f"single[{i}]: proj_out input is not attention + MLP")
            info = BlockInfo("single", i, attn.heads, attn.head_dim, attn.inner_dim, block.mlp_hidden_dim, ("single",))
            sites.append(Site(info, "single", block.proj_out))
        if not sites:
            raise PlantainError(f"{type(transformer).__name__} has no FLUX.1 transformer blocks to probe")
        return sites

    def prompt_tokens(self, pipe, prompt):
        # T5's tokens are the transformer's text stream; CLIP gives only the pooled vector
        return list(pipe.tokenizer_2(prompt, verbose=False)["input_ids"])

    def encode_prompts(self, bundle, prompts):
        import torch

        pipe = bundle.pipeline
        shared = {}

        def encode(chunk):
            pe, pooled, shared["txt_ids"] = pipe.encode_prompt(prompt=chunk, prompt_2=None, device=pipe._execution_device,
                                                               max_sequence_length=self.text_tokens)
            return {"encoder_hidden_states": pe, "pooled_projections": pooled}

        with torch.inference_mode():
            return encode_in_chunks(prompts, encode), shared

    def noise(self, pipe, generator, size, dtype, device):
        return pipe.prepare_latents(1, pipe.transformer.config.in_channels // 4, size[0], size[1], dtype, device,
                                    generator)

    def text_kwargs(self, text, shared, n):
        return {"encoder_hidden_states": text["encoder_hidden_states"],
                "pooled_projections": text["pooled_projections"], "txt_ids": shared["txt_ids"]}

    def transformer_kwargs(self, pipe, hidden, timestep, text, ids, guidance):
        return dict(hidden_states=hidden, timestep=self.scale_timestep(timestep),
                    guidance=embedded_guidance(pipe, guidance, hidden.shape[0]), **text, img_ids=ids,
                    joint_attention_kwargs=None, return_dict=False)

    def schedule(self, pipe, steps, image_seq_len, device):
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

        config = pipe.scheduler.config
        mu = calculate_shift(image_seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                             config.get("base_shift", 0.5), config.get("max_shift", 1.15))
        return fresh_schedule(pipe, steps, device, retrieve_timesteps, sigmas=flow_sigmas(pipe, steps), mu=mu)


class Flux1KontextFamily(Flux1Family):
    name = "flux1-kontext"
    description = "FLUX.1 Kontext [dev] (FluxKontextPipeline; image-conditioned FLUX.1)"
    pipeline_class = "FluxKontextPipeline"
    kinds = ALL_KINDS

    def encode_image(self, bundle, image):
        """As ``FluxKontextPipeline.__call__`` with ``_auto_resize=False``: the image keeps its
        size (cut to a multiple of 16), VAE mean, shifted and scaled, packed, position ids
        with first axis 1."""
        import torch

        pipe = bundle.pipeline
        m = pipe.vae_scale_factor * 2
        height, width = pipe.image_processor.get_default_height_width(image)
        height, width = height // m * m, width // m * m
        if not height or not width:
            raise PlantainError(f"conditioning image {image.size} is smaller than {m}x{m}")
        pixels = pipe.image_processor.preprocess(pipe.image_processor.resize(image, height, width), height, width)
        with torch.inference_mode():
            pixels = pixels.to(device=pipe._execution_device, dtype=pipe.vae.dtype)
            latents = pipe._encode_vae_image(image=pixels, generator=None)
            lh, lw = latents.shape[2:]
            packed = pipe._pack_latents(latents, 1, latents.shape[1], lh, lw)
            ids = pipe._prepare_latent_image_ids(1, lh // 2, lw // 2, pipe._execution_device, pipe.vae.dtype)
            ids[..., 0] = 1
        return packed, ids

    def call_kwargs(self, bundle, size) -> dict:
        # __call__ rescales any size to max_area (1024^2 by default): keep the one asked for
        return {"max_area": size[0] * size[1], "_auto_resize": False}

    def noise(self, pipe, generator, size, dtype, device):
        latents, _, latent_ids, _ = pipe.prepare_latents(None, 1, pipe.transformer.config.in_channels // 4, size[0],
                                                         size[1], dtype, device, generator)
        return latents, latent_ids


FLUX1 = Flux1Family()
FLUX1_KONTEXT = Flux1KontextFamily()
