"""Transformer inputs and configs for the benchmarks: shapes as a probe pass has them.

A probe pass is one ``Flux2Transformer2DModel`` forward: ``512`` text tokens (the
pipeline pads every prompt to 512), ``(size / 16)²`` noisy-latent tokens, and as many
again for a conditioning image of the same size. Positions follow the pipeline:
latent ``(t=0, h, w, l=0)``, conditioning image ``t=10``, text ``(0, 0, 0, l)``.
"""

from __future__ import annotations

from typing import Any

TEXT_TOKENS = 512

#: The "wide" CPU configuration: Klein's head dimension (128), its MLP ratio and text
#: width (Qwen3-4B 2560 × 3 layers = 7680), but only 4 heads and 1 joint + 2 single
#: blocks, so that one forward with 512 text + 1024 image tokens (a 512² image) takes
#: well under a few seconds on one CPU thread.
WIDE_CONFIG: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 128,
    "num_layers": 1,
    "num_single_layers": 2,
    "attention_head_dim": 128,
    "num_attention_heads": 4,
    "joint_attention_dim": 7680,
    "timestep_guidance_channels": 256,
    "mlp_ratio": 3.0,
    "axes_dims_rope": (32, 32, 32, 32),
    "rope_theta": 2000,
    "guidance_embeds": False,
}


def build_transformer(config: dict[str, Any], *, device: str = "cpu", dtype=None, seed: int = 0):
    """A ``Flux2Transformer2DModel`` with seeded random weights, built directly on ``device``."""
    import torch
    from diffusers import Flux2Transformer2DModel

    dtype = dtype or torch.float32
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            model = Flux2Transformer2DModel(**cfg)
        finally:
            torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False)


def forward_kwargs(transformer, batch: int, image_side: int, *, conditioned: bool = False,
                   text_tokens: int = TEXT_TOKENS, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of one transformer forward: ``batch`` stimuli, an
    ``image_side × image_side`` latent grid (+ one conditioning image of the same grid)."""
    import torch

    p = next(transformer.parameters())
    device, dtype = p.device, p.dtype
    cfg = transformer.config
    gen = torch.Generator("cpu").manual_seed(seed)
    grid = torch.cartesian_prod(torch.arange(1), torch.arange(image_side), torch.arange(image_side), torch.arange(1))
    ids = grid
    if conditioned:
        cond = grid.clone()
        cond[:, 0] = 10
        ids = torch.cat([grid, cond], dim=0)
    n_img = ids.shape[0]
    txt = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(text_tokens))
    hidden = torch.randn(batch, n_img, cfg.in_channels, generator=gen)
    text = torch.randn(batch, text_tokens, cfg.joint_attention_dim, generator=gen)
    return {
        "hidden_states": hidden.to(device, dtype),
        "encoder_hidden_states": text.to(device, dtype),
        "timestep": torch.full((batch,), 0.75, device=device, dtype=dtype),
        "img_ids": ids.unsqueeze(0).expand(batch, -1, -1).to(device),
        "txt_ids": txt.unsqueeze(0).expand(batch, -1, -1).to(device),
        "guidance": None,
        "joint_attention_kwargs": None,
        "return_dict": False,
    }


def forward_flops(config: dict[str, Any], image_tokens: int, text_tokens: int = TEXT_TOKENS) -> dict[str, float]:
    """Analytic FLOPs (multiply-add = 2) of one forward of one stimulus.

    Counts every linear layer of the blocks (joint: each stream's own weights on its own
    tokens; single: fused QKV+MLP-in and attention+MLP out on all tokens), the attention
    products (QKᵀ and AV, 4·T²·inner per block, no mask: the pipeline passes none), the
    input embedders and the output projection. Norms, RoPE, activations and the per-sample
    modulation MLPs are left out (well under 1 %).
    """
    inner = config["num_attention_heads"] * config["attention_head_dim"]
    mlp = int(inner * config["mlp_ratio"])
    t_all = image_tokens + text_tokens
    # per token, per stream of a joint block: q,k,v (3·inner²), out (inner²), MLP in (gated: 2·mlp·inner), MLP out
    per_stream = 3 * inner * inner + inner * inner + 2 * mlp * inner + mlp * inner
    joint_linear = 2 * per_stream * t_all  # each stream on its own tokens: image + text = all tokens
    single_linear = 2 * t_all * (inner * (3 * inner + 2 * mlp) + (inner + mlp) * inner)
    attention = 4 * t_all * t_all * inner
    layers_joint, layers_single = config["num_layers"], config["num_single_layers"]
    embed = 2 * (image_tokens * config["in_channels"] * inner + text_tokens * config["joint_attention_dim"] * inner)
    out_ch = config.get("out_channels") or config["in_channels"]
    proj_out = 2 * image_tokens * inner * out_ch
    linear = layers_joint * joint_linear + layers_single * single_linear + embed + proj_out
    attn = (layers_joint + layers_single) * attention
    return {"linear": float(linear), "attention": float(attn), "total": float(linear + attn)}
