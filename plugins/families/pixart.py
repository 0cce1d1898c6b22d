"""The PixArt-Sigma family (``PixArtSigmaPipeline``, ``PixArtTransformer2DModel``).

Capture sites: every block has a self-attention over the image tokens (``attn1``) and a
cross-attention whose queries are the image tokens and whose keys and values are the T5
tokens (``attn2``); each output goes through its own ``to_out[0]``, whose input holds the
heads. Units are ``self[i].hNN`` and ``cross[i].hNN`` (XL-2 1024: 28 blocks x 16 heads x 2
= 896). There is no text stream: the text tokens never pass an output projection, so
``--token-scope text`` has no units, and ``image`` equals ``all``. No MLP channels.

Passes follow ``PixArtSigmaPipeline.__call__`` with ``use_resolution_binning=False`` (with
binning, ``__call__`` moves a size that is not in PixArt's aspect-ratio table to the
closest one; sizes in the table, 1024x1024 among them, are unchanged): T5's 300 tokens
under their attention mask, captions cleaned as ``__call__`` cleans them (``clean_caption``,
which diffusers skips without bs4 and ftfy), noise from ``prepare_latents`` (unpacked, 4
channels), the scheduler's own timesteps undivided, ``added_cond_kwargs`` with no
resolution, the learned-sigma half of the output dropped, classifier-free guidance with
the empty prompt at guidance above 1. Text-pair probes only.
"""

from __future__ import annotations

from plantain_core.errors import PlantainError
from plantain_core.models.family import TEXT_KINDS, ModelFamily, encode_in_chunks, fresh_schedule
from plantain_core.models.layouts import BlockInfo, Site

from .sd3 import UnpackedLatents

#: ``max_sequence_length`` of ``PixArtSigmaPipeline.__call__``
T5_TOKENS = 300
#: PixArt's latents: 4 channels; a learned-sigma transformer outputs twice as many
LATENT_CHANNELS = 4


def clean_caption() -> bool:
    """``__call__``'s default ``clean_caption=True`` as diffusers applies it: only with bs4
    and ftfy installed (without them it warns on every call and cleans nothing)."""
    from diffusers.utils import is_bs4_available, is_ftfy_available

    return bool(is_bs4_available() and is_ftfy_available())

#: bundled transformer configs (sources in docs/models.md)
PRESETS = {"PixArt-alpha/PixArt-Sigma-XL-2-1024-MS": "PixArt-Sigma-XL-2-1024-MS.json"}


class PixArtSigmaFamily(UnpackedLatents, ModelFamily):
    name = "pixart-sigma"
    description = "PixArt-Sigma (PixArtSigmaPipeline; T5 text encoder, self- and cross-attention per block)"
    pipeline_class = "PixArtSigmaPipeline"
    transformer_class = "PixArtTransformer2DModel"
    card_tag = "pixart-sigma"
    kinds = TEXT_KINDS
    text_tokens = T5_TOKENS
    prompt_limit = T5_TOKENS
    timestep_scale = 1.0
    unit_notes = (
        "self[i]: the block's self-attention over the image tokens (attn1.to_out[0]); cross[i]: its "
        "cross-attention, image-token queries over the T5 tokens (attn2.to_out[0]); both read image tokens only",
        "no text stream: --token-scope text has no units, and image equals all",
    )

    def padding_note(self) -> str:
        return (f"The T5 tokens (the cross-attention's keys and values) are padded to {T5_TOKENS} under an attention "
                "mask, so padding is masked out")

    def presets(self) -> dict:
        import pathlib

        from plantain_core.models.hub import json_presets

        return json_presets(pathlib.Path(__file__).with_name("presets"), PRESETS)

    def sites(self, transformer) -> list[Site]:
        sites: list[Site] = []
        for i, block in enumerate(getattr(transformer, "transformer_blocks", [])):
            for kind, attn in (("self", getattr(block, "attn1", None)), ("cross", getattr(block, "attn2", None))):
                if attn is None:
                    continue
                dim = attn.to_out[0].in_features
                if dim % attn.heads:
                    raise PlantainError(f"{kind}[{i}]: {attn.heads} heads do not divide to_out's {dim} inputs")
                info = BlockInfo(kind, i, attn.heads, dim // attn.heads, dim, 0, ("image",))
                sites.append(Site(info, "image", attn.to_out[0]))
        if not sites:
            raise PlantainError(f"{type(transformer).__name__} has no PixArt transformer blocks to probe")
        return sites

    def prompt_tokens(self, pipe, prompt):
        text = pipe._text_preprocessing(prompt, clean_caption=clean_caption())[0]
        return list(pipe.tokenizer(text, verbose=False)["input_ids"])

    def encode_prompts(self, bundle, prompts):
        import torch

        pipe = bundle.pipeline
        clean = clean_caption()

        def encode(chunk):
            pe, mask, _, _ = pipe.encode_prompt(prompt=list(chunk), do_classifier_free_guidance=False,
                                                device=pipe._execution_device, clean_caption=clean,
                                                max_sequence_length=T5_TOKENS)
            return {"encoder_hidden_states": pe, "encoder_attention_mask": mask}

        with torch.inference_mode():
            return encode_in_chunks(prompts, encode), {}

    def call_kwargs(self, bundle, size) -> dict:
        return {"use_resolution_binning": False}  # keep the size asked for

    def text_kwargs(self, text, shared, n):
        return {"encoder_hidden_states": text["encoder_hidden_states"],
                "encoder_attention_mask": text["encoder_attention_mask"]}

    def transformer_kwargs(self, pipe, hidden, timestep, text, ids, guidance):
        return dict(hidden_states=hidden, timestep=self.scale_timestep(timestep), **text,
                    added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)

    def scale_timestep(self, t):
        return t

    def prediction(self, out, n_latent):
        # (batch, channels, height, width); a learned-sigma model's second half is the variance
        return out[:, :LATENT_CHANNELS] if out.shape[1] == 2 * LATENT_CHANNELS else out

    def schedule(self, pipe, steps, image_seq_len, device):
        from diffusers.pipelines.pixart_alpha.pipeline_pixart_sigma import retrieve_timesteps

        return fresh_schedule(pipe, steps, device, retrieve_timesteps)

    def uses_cfg(self, pipe, guidance):
        return guidance > 1.0  # the pipeline's do_classifier_free_guidance


PIXART_SIGMA = PixArtSigmaFamily()
