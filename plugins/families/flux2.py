"""The FLUX.2 families: Klein (``Flux2KleinPipeline``, Qwen3 text encoder) and [dev]
(``Flux2Pipeline``, Mistral Small 3 text encoder), one ``Flux2Transformer2DModel``.

Capture sites: joint blocks ``attn.to_out[0]`` (image stream) and ``attn.to_add_out``
(text stream); single blocks ``attn.to_out``, whose input is the attention output
followed by the parallel MLP's activations, over the text tokens then the image tokens
(``torch.cat([encoder_hidden_states, hidden_states])`` in the transformer's forward).

Passes follow ``Flux2KleinPipeline.__call__`` / ``Flux2Pipeline.__call__``: prompts
encoded with ``encode_prompt`` (the text encoder's layers ``text_encoder_out_layers``
stacked), noise from ``prepare_latents`` (2x2-patchified, packed), conditioning images
VAE-encoded with ``prepare_image_latents`` and appended to the sequence, timesteps from
``compute_empirical_mu``. Klein base runs classifier-free guidance with the empty prompt
at guidance above 1; [dev] embeds the guidance scale instead.
"""

from __future__ import annotations

from plantain_core.errors import PlantainError
from plantain_core.models.early_exit import early_exit
from plantain_core.models.family import ALL_KINDS, ModelFamily, encode_in_chunks, flow_sigmas, fresh_schedule
from plantain_core.models.layouts import BlockInfo, Site



class Flux2Family(ModelFamily):
    transformer_class = "Flux2Transformer2DModel"
    card_tag = "flux2"
    kinds = ALL_KINDS
    text_tokens = 512
    unit_notes = (
        "joint blocks: heads are slices of the attention output before attn.to_out[0] (image tokens) and "
        "attn.to_add_out (text tokens)",
        "single blocks: attn.to_out takes the attention output and the parallel MLP's activations concatenated; "
        "heads are its attention part, slices16 covers both (the MLP slices are counted apart)",
    )

    def padding_note(self) -> str:
        return no_mask_note(self)

    def sites(self, transformer) -> list[Site]:
        sites = joint_sites(transformer)
        for i, block in enumerate(getattr(transformer, "single_transformer_blocks", [])):
            attn = block.attn
            if attn.to_out.in_features != attn.inner_dim + attn.mlp_hidden_dim:
                raise PlantainError(f"single[{i}]: to_out input is not attention + MLP")
            info = BlockInfo("single", i, attn.heads, attn.head_dim, attn.inner_dim, attn.mlp_hidden_dim, ("single",))
            sites.append(Site(info, "single", attn.to_out))
        if not sites:
            raise PlantainError(f"{type(transformer).__name__} has no FLUX.2 transformer blocks to probe")
        return sites

    # -- prompts and images ---------------------------------------------------------------
    def encode_prompts(self, bundle, prompts):
        import torch

        pipe = bundle.pipeline
        shared = {}
        layers = tuple(bundle.text_encoder_out_layers)

        def encode(chunk):
            pe, shared["txt_ids"] = pipe.encode_prompt(prompt=chunk, device=pipe._execution_device,
                                                       max_sequence_length=self.text_tokens,
                                                       text_encoder_out_layers=layers)
            return {"encoder_hidden_states": pe}

        with torch.inference_mode(), early_exit(pipe.text_encoder, layers):  # the same embeddings, fewer layers run
            return encode_in_chunks(prompts, encode), shared

    def encode_image(self, bundle, image):
        pipe = bundle.pipeline
        pixels = condition_pixels(pipe, image)
        return pipe.prepare_image_latents(images=[pixels], batch_size=1, generator=None,
                                          device=pipe._execution_device, dtype=pipe.vae.dtype)

    def call_kwargs(self, bundle, size) -> dict:
        return {"text_encoder_out_layers": tuple(bundle.text_encoder_out_layers)}

    def text_encoder_out_layers(self, pipe) -> tuple[int, ...]:
        """The pipeline's default layers (:attr:`TEXT_OUT_LAYERS`); a smaller text encoder
        (a saved tiny model, a distilled experiment) gets as many evenly spaced layers as
        the transformer expects."""
        config = getattr(pipe.text_encoder.config, "text_config", pipe.text_encoder.config)
        n_layers = config.num_hidden_layers
        if n_layers >= max(self.TEXT_OUT_LAYERS):
            return self.TEXT_OUT_LAYERS
        stacked = pipe.transformer.config.joint_attention_dim // config.hidden_size
        return tuple(round(n_layers * (i + 1) / stacked) for i in range(stacked))

    # -- one pass -----------------------------------------------------------------------------
    def noise(self, pipe, generator, size, dtype, device):
        return pipe.prepare_latents(batch_size=1, num_latents_channels=pipe.transformer.config.in_channels // 4,
                                    height=size[0], width=size[1], dtype=dtype, device=device, generator=generator)

    def text_kwargs(self, text, shared, n):
        return {"encoder_hidden_states": text["encoder_hidden_states"], "txt_ids": shared["txt_ids"][:1].expand(n, -1, -1)}

    def transformer_kwargs(self, pipe, hidden, timestep, text, ids, guidance):
        n = hidden.shape[0]
        return dict(hidden_states=hidden, timestep=self.scale_timestep(timestep),
                    guidance=embedded_guidance(pipe, guidance, n), **text, img_ids=ids.expand(n, -1, -1),
                    joint_attention_kwargs=None, return_dict=False)

    # -- the denoising loop -----------------------------------------------------------------
    def schedule(self, pipe, steps, image_seq_len, device):
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu, retrieve_timesteps

        mu = compute_empirical_mu(image_seq_len=image_seq_len, num_steps=steps)
        return fresh_schedule(pipe, steps, device, retrieve_timesteps, sigmas=flow_sigmas(pipe, steps), mu=mu)


class Flux2KleinFamily(Flux2Family):
    name = "flux2-klein"
    description = "FLUX.2 [klein] (Flux2KleinPipeline; Qwen3 text encoder)"
    pipeline_class = "Flux2KleinPipeline"
    # the diffusers default: the Qwen3 layers stacked into the prompt embedding
    TEXT_OUT_LAYERS = (9, 18, 27)

    def prompt_tokens(self, pipe, prompt):
        tokenizer = pipe.tokenizer
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True, enable_thinking=False)
        return list(tokenizer(text, verbose=False)["input_ids"])

    def uses_cfg(self, pipe, guidance):
        # as the pipeline decides: guidance above 1 on a model that is not guidance-distilled
        return guidance > 1.0 and not getattr(pipe.config, "is_distilled", False)


class Flux2DevFamily(Flux2Family):
    name = "flux2-dev"
    description = "FLUX.2 [dev] (Flux2Pipeline; Mistral Small 3 text encoder, embedded guidance)"
    pipeline_class = "Flux2Pipeline"
    TEXT_OUT_LAYERS = (10, 20, 30)

    def prompt_tokens(self, pipe, prompt):
        from diffusers.pipelines.flux2.pipeline_flux2 import format_input

        messages = format_input(prompts=[prompt], system_message=pipe.system_message)
        ids = pipe.tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=True, return_dict=True)
        first = ids["input_ids"][0]
        return list(first.tolist() if hasattr(first, "tolist") else first)


def no_mask_note(family) -> str:
    """The padding sentence of the FLUX and SD3 pipelines: fixed-length text, no attention mask."""
    return f"The text stream is padded to {family.text_tokens} tokens with no attention mask"


def joint_sites(transformer) -> list[Site]:
    """The joint blocks of a FLUX transformer (FLUX.1 and FLUX.2 alike): ``attn.to_out[0]``
    takes the image stream's attention output, ``attn.to_add_out`` the text stream's."""
    sites: list[Site] = []
    for i, block in enumerate(getattr(transformer, "transformer_blocks", [])):
        attn = block.attn
        dim = attn.to_out[0].in_features
        if attn.heads * attn.head_dim != dim or attn.to_add_out.in_features != dim:
            raise PlantainError(f"joint[{i}]: heads x head_dim != to_out input ({attn.heads}x{attn.head_dim} vs {dim})")
        info = BlockInfo("joint", i, attn.heads, attn.head_dim, dim, 0)
        sites += [Site(info, "image", attn.to_out[0]), Site(info, "text", attn.to_add_out)]
    return sites


def embedded_guidance(pipe, guidance: float, n: int):
    """The ``guidance`` argument of a FLUX transformer: the scale for each row on a
    guidance-distilled model (as ``__call__`` builds it), None on one without the embedding."""
    import torch

    if not pipe.transformer.config.guidance_embeds:
        return None
    return torch.full([1], guidance, device=pipe._execution_device, dtype=torch.float32).expand(n)


def condition_pixels(pipe, img):
    """The FLUX.2 pipelines' own preprocessing of a conditioning image (__call__ step 4)."""
    try:
        pipe.image_processor.check_image_input(img)
    except ValueError as exc:
        raise PlantainError(f"conditioning image rejected: {exc}") from None
    w, h = img.size
    if w * h > 1024 * 1024:
        img = pipe.image_processor._resize_to_target_area(img, 1024 * 1024)
        w, h = img.size
    m = pipe.vae_scale_factor * 2
    w, h = (w // m) * m, (h // m) * m
    return pipe.image_processor.preprocess(img, height=h, width=w, resize_mode="crop")


FLUX2_KLEIN = Flux2KleinFamily()
FLUX2_DEV = Flux2DevFamily()
