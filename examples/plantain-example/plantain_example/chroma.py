"""A model family from outside plantain: Chroma (``ChromaPipeline``, ``ChromaTransformer2DModel``).

Chroma (lodestones/Chroma1-HD) is a FLUX.1 [schnell] derivative. What this family does
differently from plantain's FLUX.1 one, read off diffusers' ``pipeline_chroma.py`` and
``transformer_chroma.py``:

- **T5 only.** No CLIP, so no ``pooled_projections``: the timestep alone drives the
  modulation (``distilled_guidance_layer``, an MLP over the timestep and a guidance
  embedding that the transformer fixes at 0). There is no ``guidance`` argument.
- **An attention mask.** ``_get_t5_prompt_embeds`` runs T5 *with* the tokenizer's mask
  (FLUX.1 runs it without) and returns a mask over the 512 text tokens that keeps the
  prompt's tokens and the first padding token; ``__call__`` appends ones for the image
  tokens (``_prepare_attention_mask``) and passes it as ``attention_mask`` to every
  forward. Every block turns it into ``mask[:, None, None, :] * mask[:, None, :, None]``.
  (The text part is float in the text encoder's dtype, so in diffusers 0.42.1 it reaches
  ``scaled_dot_product_attention`` as a float, i.e. additive, mask; this family passes
  exactly the tensor ``__call__`` passes, whatever it means.)
- **Classifier-free guidance** with the empty prompt at ``guidance_scale > 1`` (Chroma is
  not guidance-distilled; the pipeline's default is 5), whose unconditional pass has the
  empty prompt's own attention mask (plantain builds every forward, the unconditional
  one too, with :meth:`ChromaFamily.transformer_kwargs`).
- The schedule is FLUX.1's (``calculate_shift`` on the scheduler's settings, sigmas
  ``linspace(1, 1/K, K)``), except that Chroma passes its sigmas even to a scheduler
  with ``use_flow_sigmas``.

Capture sites are FLUX.1's: joint blocks ``attn.to_out[0]`` (image tokens) and
``attn.to_add_out`` (text tokens); single blocks ``proj_out``, whose input is the
attention output followed by the MLP's activations, over the text tokens then the image
tokens. Units are named ``joint[i].hNN`` and ``single[i].hNN``.

Only plantain's public API is used (``plantain_core.ModelFamily``, ``Site``,
``BlockInfo``, ...). torch and diffusers are imported inside functions, so importing
this module (``plantain list`` imports every plugin) stays cheap.
"""

from __future__ import annotations

from plantain_core import ModelFamily, PlantainError
from plantain_core.models.family import encode_in_chunks, fresh_schedule
from plantain_core.models.tiny_flux1 import SCHEDULER_CONFIG as FLUX1_SCHEDULER_CONFIG
from plantain_core.models.tiny_flux1 import VAE_CONFIG as FLUX1_VAE_CONFIG

#: Bump when the tiny builder below changes (part of plantain's image-cache key).
TINY_CHROMA_REVISION = "tiny-chroma-1"
TINY_SIZE = 128
#: T5 tokens of the text stream (``max_sequence_length``; ChromaPipeline allows at most 512)
T5_TOKENS = 512

# --- the tiny model's configuration --------------------------------------------------------------
# Structural rules (from ChromaTransformer2DModel and ChromaPipeline): in_channels = 4 x VAE
# latent channels (2x2 latent patches packed, patch_size 1); joint_attention_dim = T5's
# d_model; sum(axes_dims_rope) = attention_head_dim; approximator_num_channels divisible by 4
# (the approximator reads timestep, guidance and mod_proj embeddings of /4, /4 and /2 of it).
LATENT_CHANNELS = 16
T5_D_MODEL = 96  # plantain_core.models.tiny_text.T5_CONFIG["d_model"]; checked when built

TRANSFORMER_CONFIG = {
    "patch_size": 1,
    "in_channels": 4 * LATENT_CHANNELS,
    "out_channels": None,
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "joint_attention_dim": T5_D_MODEL,
    "axes_dims_rope": (4, 6, 6),
    "approximator_num_channels": 64,  # as Chroma1-HD
    "approximator_hidden_dim": 32,  # Chroma1-HD: 5120
    "approximator_layers": 2,  # Chroma1-HD: 5
}

# FLUX.1's VAE (Chroma ships it unchanged) and FLUX.1's resolution-dependent shift, the
# scheduler keys ChromaPipeline reads: plantain's tiny FLUX.1 configs.
VAE_CONFIG = FLUX1_VAE_CONFIG
SCHEDULER_CONFIG = FLUX1_SCHEDULER_CONFIG


class ChromaFamily(ModelFamily):
    name = "chroma"
    description = "Chroma (ChromaPipeline; FLUX.1 [schnell] derivative, T5 only, masked text attention)"
    pipeline_class = "ChromaPipeline"
    transformer_class = "ChromaTransformer2DModel"
    kinds = ("text-pair",)
    text_tokens = T5_TOKENS
    prompt_limit = T5_TOKENS
    timestep_scale = 1000.0
    unit_notes = (
        "joint blocks: heads are slices of the attention output before attn.to_out[0] (image tokens) and "
        "attn.to_add_out (text tokens)",
        "single blocks have no attention output projection: proj_out takes the attention output and the MLP's "
        "activations concatenated; heads are its attention part, slices16 covers both (the MLP slices are "
        "counted apart)",
        "the text stream is T5's 512 tokens, padding included: Chroma's attention mask covers all but the first "
        "padding token, but every text token is computed and counted",
    )

    def padding_note(self) -> str:
        return (f"Prompts are padded to {T5_TOKENS} T5 tokens; Chroma's attention mask hides all but the first "
                "padding token, but every text token is computed and counted")

    # -- capture sites ------------------------------------------------------------------
    def sites(self, transformer):
        from plantain_core import BlockInfo, Site

        sites = []
        for i, block in enumerate(getattr(transformer, "transformer_blocks", [])):
            attn = block.attn
            dim = attn.to_out[0].in_features
            if attn.heads * attn.head_dim != dim or attn.to_add_out.in_features != dim:
                raise PlantainError(f"joint[{i}]: heads x head_dim != to_out input ({attn.heads}x{attn.head_dim} vs {dim})")
            info = BlockInfo("joint", i, attn.heads, attn.head_dim, dim, 0)
            sites += [Site(info, "image", attn.to_out[0]), Site(info, "text", attn.to_add_out)]
        for i, block in enumerate(getattr(transformer, "single_transformer_blocks", [])):
            attn = block.attn
            if attn.heads * attn.head_dim != attn.inner_dim or \
                    block.proj_out.in_features != attn.inner_dim + block.mlp_hidden_dim:
                raise PlantainError(f"single[{i}]: proj_out input is not attention + MLP")
            info = BlockInfo("single", i, attn.heads, attn.head_dim, attn.inner_dim, block.mlp_hidden_dim, ("single",))
            sites.append(Site(info, "single", block.proj_out))
        if not sites:
            raise PlantainError(f"{type(transformer).__name__} has no Chroma transformer blocks to probe")
        return sites

    # -- prompts ----------------------------------------------------------------------------
    def prompt_tokens(self, pipe, prompt):
        return list(pipe.tokenizer(prompt, verbose=False)["input_ids"])

    def encode_prompts(self, bundle, prompts):
        """T5 embeddings and the pipeline's text attention mask (prompt tokens + the first
        padding token), per prompt, from ``encode_prompt`` without CFG."""
        import torch

        pipe = bundle.pipeline
        shared = {}

        def encode(chunk):
            pe, shared["txt_ids"], mask, *_ = pipe.encode_prompt(prompt=chunk, device=pipe._execution_device,
                                                                 do_classifier_free_guidance=False,
                                                                 max_sequence_length=self.text_tokens)
            return {"encoder_hidden_states": pe, "attention_mask": mask}

        with torch.inference_mode():
            return encode_in_chunks(prompts, encode), shared

    # -- one pass -----------------------------------------------------------------------------
    def noise(self, pipe, generator, size, dtype, device):
        return pipe.prepare_latents(1, pipe.transformer.config.in_channels // 4, size[0], size[1], dtype, device,
                                    generator)

    def model_input(self, latents, cond):
        if cond is not None:
            raise PlantainError("model family chroma takes no conditioning image")
        return latents

    def join_ids(self, latent_ids, image_ids):
        return latent_ids

    def text_kwargs(self, text, shared, n):
        # attention_mask covers the text tokens only here; transformer_kwargs appends the image tokens
        return {"encoder_hidden_states": text["encoder_hidden_states"], "txt_ids": shared["txt_ids"],
                "attention_mask": text["attention_mask"]}

    def transformer_kwargs(self, pipe, hidden, timestep, text, ids, guidance):
        """As ``__call__``'s loop: no guidance, no pooled projection; the text mask followed
        by ones for the image tokens (``_prepare_attention_mask``: a float text mask joined
        to a bool one, promoted to the text mask's dtype, as there)."""
        import torch

        text = dict(text)
        mask = text.pop("attention_mask")
        n, image_tokens = hidden.shape[0], hidden.shape[1]
        mask = torch.cat([mask, torch.ones(n, image_tokens, device=mask.device, dtype=torch.bool)], dim=1)
        return dict(hidden_states=hidden, timestep=self.scale_timestep(timestep), **text, img_ids=ids,
                    attention_mask=mask, joint_attention_kwargs=None, return_dict=False)

    # -- the denoising loop -----------------------------------------------------------------
    def schedule(self, pipe, steps, image_seq_len, device):
        import numpy as np
        from diffusers.pipelines.chroma.pipeline_chroma import calculate_shift, retrieve_timesteps

        config = pipe.scheduler.config
        sigmas = np.linspace(1.0, 1 / steps, steps)  # Chroma keeps them even with use_flow_sigmas
        mu = calculate_shift(image_seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                             config.get("base_shift", 0.5), config.get("max_shift", 1.15))
        return fresh_schedule(pipe, steps, device, retrieve_timesteps, sigmas=sigmas, mu=mu)

    def uses_cfg(self, pipe, guidance):
        """``ChromaPipeline`` runs classifier-free guidance at ``guidance_scale > 1``; its
        unconditional pass gets the empty prompt's own mask through :meth:`transformer_kwargs`."""
        return guidance > 1.0


CHROMA = ChromaFamily()


def build_tiny_chroma_pipeline(seed: int = 0):
    """A tiny ``ChromaPipeline`` with random weights (same seed, same weights), CPU fp32.

    The real component classes (ChromaTransformer2DModel, AutoencoderKL with 16 latent
    channels, T5EncoderModel + T5 tokenizer from plantain's tiny text builders,
    FlowMatchEulerDiscreteScheduler) at toy sizes: ``__call__`` runs offline in well under a
    second at 128x128. Its numbers mean nothing about Chroma.
    """
    import torch
    from diffusers import AutoencoderKL, ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from plantain_core.models.tiny_text import T5_CONFIG, build_t5_encoder, build_t5_tokenizer

    if T5_CONFIG["d_model"] != TRANSFORMER_CONFIG["joint_attention_dim"]:
        raise PlantainError(f"tiny T5 width {T5_CONFIG['d_model']} != the tiny transformer's joint_attention_dim "
                            f"{TRANSFORMER_CONFIG['joint_attention_dim']}")
    tokenizer = build_t5_tokenizer()
    # fork_rng: building must not move the caller's global RNG; each component has its own seed.
    with torch.random.fork_rng(devices=[]):
        text_encoder = build_t5_encoder(tokenizer, T5_CONFIG, seed=seed)
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**VAE_CONFIG).eval()
        torch.manual_seed(seed + 2)
        transformer = ChromaTransformer2DModel(**TRANSFORMER_CONFIG).eval()
    return ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG), vae=vae,
                          text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer)


def loaders() -> dict:
    """The loaders this package registers: the tiny model and Chroma checkpoints."""
    from plantain_core import HubLoader, TinyLoader, TinyModel

    tiny = TinyModel("tiny-chroma", CHROMA, "plantain_example.chroma:build_tiny_chroma_pipeline", TINY_CHROMA_REVISION,
                     "plantain_example.chroma:TRANSFORMER_CONFIG", size=TINY_SIZE, about="Chroma")
    return {"tiny-chroma": TinyLoader(tiny), "chroma": HubLoader(CHROMA, r"chroma", "lodestones/Chroma1-HD")}
