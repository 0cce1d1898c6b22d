"""The Qwen-Image family (``QwenImagePipeline``, ``QwenImageTransformer2DModel``).

Capture sites: every block is dual-stream (Qwen-Image has 60, 24 heads of 128: 1,440
heads). Its attention runs over the text tokens then the image tokens and splits the
output again: ``attn.to_out[0]`` takes the image stream's part, ``attn.to_add_out`` the
text stream's, as FLUX's joint blocks do. No MLP channels are captured.

Passes follow ``QwenImagePipeline.__call__``: the prompt in Qwen-Image's template through
the Qwen2.5-VL text encoder's last hidden state, the template's first tokens dropped
(``prompt_template_encode_start_idx``) and the rest cut at 512 tokens, *unpadded*: each
prompt keeps its own length (a batch of equal-length prompts needs no attention mask,
and plantain batches by text length, so no prompt is padded); noise from
``prepare_latents`` (packed 2x2); ``img_shapes`` for the transformer's RoPE; sigmas
linspace(1, 1/K, K) with ``calculate_shift`` on the scheduler's settings; the timestep
divided by 1000. ``__call__`` runs classifier-free guidance only when given a negative
prompt; plantain gives none, so it runs no CFG at any ``--guidance`` (the transformer has
no guidance embedding either). Text-pair probes only.
"""

from __future__ import annotations

from plantain_core.errors import PlantainError
from plantain_core.models.family import TEXT_KINDS, ModelFamily, encode_in_chunks, fresh_schedule
from plantain_core.models.layouts import BlockInfo, Site

#: ``max_sequence_length`` of ``QwenImagePipeline.__call__``: the text stream's longest length.
TEXT_TOKENS = 512

#: the steps of the schedule whose step 0 is the one-step probe pass (__call__'s own is 0/0)
PROBE_SCHEDULE_STEPS = 2

#: bundled transformer configs (sources in docs/models.md)
PRESETS = {"Qwen/Qwen-Image": "Qwen-Image.json"}


class QwenImageFamily(ModelFamily):
    name = "qwen-image"
    description = "Qwen-Image (QwenImagePipeline; Qwen2.5-VL text encoder, dual-stream blocks)"
    pipeline_class = "QwenImagePipeline"
    transformer_class = "QwenImageTransformer2DModel"
    card_tag = "qwen-image"
    kinds = TEXT_KINDS
    text_tokens = TEXT_TOKENS
    prompt_limit = TEXT_TOKENS
    reference_steps_for_one = PROBE_SCHEDULE_STEPS  # its 1-step schedule is 0/0: see schedule()
    unit_notes = (
        "dual-stream blocks only: heads are slices of the attention output before attn.to_out[0] (image tokens) "
        "and attn.to_add_out (text tokens)",
    )

    def padding_note(self) -> str:
        return ("The text stream is each prompt's own length (the template's system turn dropped, at most "
                f"{TEXT_TOKENS} tokens), unpadded")

    def presets(self) -> dict:
        import pathlib

        from plantain_core.models.hub import json_presets

        return json_presets(pathlib.Path(__file__).with_name("presets"), PRESETS)

    def sites(self, transformer) -> list[Site]:
        sites: list[Site] = []
        for i, block in enumerate(getattr(transformer, "transformer_blocks", [])):
            attn = block.attn
            dim = attn.to_out[0].in_features
            if dim % attn.heads or attn.to_add_out.in_features != dim:
                raise PlantainError(f"joint[{i}]: {attn.heads} heads do not split to_out's {dim} inputs")
            info = BlockInfo("joint", i, attn.heads, dim // attn.heads, dim, 0)
            sites += [Site(info, "image", attn.to_out[0]), Site(info, "text", attn.to_add_out)]
        if not sites:
            raise PlantainError(f"{type(transformer).__name__} has no Qwen-Image transformer blocks to probe")
        return sites

    def prompt_tokens(self, pipe, prompt):
        ids = pipe.tokenizer(pipe.prompt_template_encode.format(prompt), verbose=False)["input_ids"]
        return list(ids[pipe.prompt_template_encode_start_idx:])

    def encode_prompts(self, bundle, prompts):
        import torch

        pipe = bundle.pipeline

        def encode(chunk):
            # one prompt per call (chunk=1): a batch would pad every prompt to the longest under a mask;
            # alone, the mask is all ones and encode_prompt drops it, as __call__ with one prompt does
            embeds, _ = pipe.encode_prompt(prompt=list(chunk), device=pipe._execution_device,
                                           max_sequence_length=TEXT_TOKENS)
            return {"encoder_hidden_states": embeds}

        with torch.inference_mode():
            return encode_in_chunks(prompts, encode, chunk=1), {}

    def noise(self, pipe, generator, size, dtype, device):
        import torch

        latents = pipe.prepare_latents(1, pipe.transformer.config.in_channels // 4, size[0], size[1], dtype, device,
                                       generator)
        m = pipe.vae_scale_factor * 2
        # not position ids: the latent grid (frames, rows, columns) the transformer's RoPE reads as img_shapes
        return latents, torch.tensor([[1, size[0] // m, size[1] // m]])

    def model_input(self, latents, cond):
        if cond is not None:
            raise PlantainError("Qwen-Image takes no conditioning image")
        return latents

    def text_kwargs(self, text, shared, n):
        return {"encoder_hidden_states": text["encoder_hidden_states"]}

    def transformer_kwargs(self, pipe, hidden, timestep, text, ids, guidance):
        shape = tuple(int(v) for v in ids[0])
        return dict(hidden_states=hidden, timestep=self.scale_timestep(timestep), guidance=None,
                    encoder_hidden_states_mask=None, **text, img_shapes=[[shape]] * hidden.shape[0],
                    attention_kwargs={}, return_dict=False)

    def pipeline_guidance(self, guidance):
        # plantain's guidance is true CFG (true_cfg_scale), which __call__ runs only with a negative prompt
        return {"true_cfg_scale": guidance, "guidance_scale": None}

    def schedule(self, pipe, steps, image_seq_len, device):
        """As ``__call__``; except at one step, where Qwen-Image's ``shift_terminal`` (0.02)
        stretches the sigmas by 0/0 and ``__call__`` runs on a NaN timestep: the probe pass
        is then the first step of every longer schedule (sigma 1, timestep 1000)."""
        import numpy as np

        if steps == 1:
            scheduler, timesteps = self.schedule(pipe, PROBE_SCHEDULE_STEPS, image_seq_len, device)
            return scheduler, timesteps[:1]
        from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift, retrieve_timesteps

        config = pipe.scheduler.config
        mu = calculate_shift(image_seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                             config.get("base_shift", 0.5), config.get("max_shift", 1.15))
        return fresh_schedule(pipe, steps, device, retrieve_timesteps, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)


QWEN_IMAGE = QwenImageFamily()
