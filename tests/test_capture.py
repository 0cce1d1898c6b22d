"""Capture hooks: values checked against an independent float64 recomputation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from plantain_core.capture.hooks import capture_units
from plantain_core.models import tiny

TEXT_LEN = 512


@pytest.fixture(scope="module", params=["tiny", "head-dim-32"])
def transformer(request):
    """The tiny model (head dim 16, the slice width) and a variant whose head dim (32) is
    not the slice width: a heads/slices width mix-up passes with one, fails with the other."""
    if request.param == "tiny":
        return tiny.build_tiny_pipeline().transformer
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(3)
    config = {**tiny.TRANSFORMER_CONFIG, "attention_head_dim": 32, "num_attention_heads": 2,
              "axes_dims_rope": (8, 8, 8, 8)}
    return Flux2Transformer2DModel(**config).eval()


def _inputs(transformer, batch: int, seed: int, cond_tokens: int = 0):
    """Random but well-formed transformer inputs: 8x8 latent (128 px) + optional reference."""
    from diffusers import Flux2KleinPipeline as P

    g = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    text = torch.randn(batch, TEXT_LEN, cfg.joint_attention_dim, generator=g)
    latents = torch.randn(batch, 64 + cond_tokens, cfg.in_channels, generator=g)
    img_ids = P._prepare_latent_ids(torch.zeros(1, 1, 8, 8))
    if cond_tokens:
        side = int(math.isqrt(cond_tokens))
        img_ids = torch.cat([img_ids, P._prepare_image_ids([torch.zeros(1, 1, side, side)])], dim=1)
    return dict(hidden_states=latents, encoder_hidden_states=text, timestep=torch.full((batch,), 0.9),
                img_ids=img_ids.expand(batch, -1, -1), txt_ids=P._prepare_text_ids(text), guidance=None,
                return_dict=False)


def _record_attn_inputs(transformer):
    """Test-only hooks grabbing each block's attention-module inputs (normed streams, RoPE)."""
    seen, handles = {}, []
    for kind, blocks in (("joint", transformer.transformer_blocks), ("single", transformer.single_transformer_blocks)):
        for i, block in enumerate(blocks):
            def hook(module, args, kwargs, key=(kind, i)):
                seen[key] = {k: (tuple(t.detach().double() for t in v) if isinstance(v, tuple) else v.detach().double())
                             for k, v in kwargs.items() if v is not None}
            handles.append(block.attn.register_forward_pre_hook(hook, with_kwargs=True))
    return seen, handles


# ---- independent float64 reference ---------------------------------------------------------
def _rms_norm(x, norm):
    eps = norm.eps if norm.eps is not None else torch.finfo(torch.float64).eps
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * norm.weight.double()


def _rope(x, cos, sin):
    # x: (B, S, H, D); pairs (2i, 2i+1) rotate by the angle in cos/sin[..., 2i]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([-x2, x1], dim=-1).flatten(-2)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


def _attend(q, k, v):
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).flatten(2)


@torch.no_grad()
def _joint_reference(attn, inp):
    """(text, image) attention outputs of a joint block = inputs of to_add_out / to_out[0]."""
    W = lambda lin: lin.weight.double()  # noqa: E731
    img, txt, (cos, sin) = inp["hidden_states"], inp["encoder_hidden_states"], inp["image_rotary_emb"]
    d = attn.head_dim
    heads = lambda x: x.unflatten(-1, (-1, d))  # noqa: E731
    q = torch.cat([_rms_norm(heads(txt @ W(attn.add_q_proj).T), attn.norm_added_q),
                   _rms_norm(heads(img @ W(attn.to_q).T), attn.norm_q)], dim=1)
    k = torch.cat([_rms_norm(heads(txt @ W(attn.add_k_proj).T), attn.norm_added_k),
                   _rms_norm(heads(img @ W(attn.to_k).T), attn.norm_k)], dim=1)
    v = torch.cat([heads(txt @ W(attn.add_v_proj).T), heads(img @ W(attn.to_v).T)], dim=1)
    out = _attend(_rope(q, cos, sin), _rope(k, cos, sin), v)
    return out[:, :txt.shape[1]], out[:, txt.shape[1]:]


@torch.no_grad()
def _single_reference(attn, inp):
    """The to_out input of a single block: [attention output, SwiGLU MLP hidden]."""
    x, (cos, sin) = inp["hidden_states"], inp["image_rotary_emb"]
    proj = x @ attn.to_qkv_mlp_proj.weight.double().T
    inner, d = attn.inner_dim, attn.head_dim
    q, k, v = (proj[..., j * inner:(j + 1) * inner].unflatten(-1, (-1, d)) for j in range(3))
    gate, lin = proj[..., 3 * inner:].chunk(2, dim=-1)
    out = _attend(_rope(_rms_norm(q, attn.norm_q), cos, sin), _rope(_rms_norm(k, attn.norm_k), cos, sin), v)
    return torch.cat([out, torch.nn.functional.silu(gate) * lin], dim=-1)


def _unit_rms(x, width, features=None):
    """(B, T, F) -> (B, F // width) RMS over tokens and each unit's features."""
    x = x[..., :features] if features else x
    return np.sqrt(x.pow(2).unflatten(-1, (-1, width)).mean(dim=(1, 3)).numpy())


# ---- tests ----------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["all", "image", "text"])
def test_capture_matches_float64_recomputation(transformer, scope):
    seen, handles = _record_attn_inputs(transformer)
    try:
        with capture_units(transformer, ("heads", "slices16"), token_scope=scope) as cap, torch.no_grad():
            transformer(**_inputs(transformer, batch=2, seed=1, cond_tokens=16))
            got = cap.take()
    finally:
        for h in handles:
            h.remove()
    lay = cap.layouts
    d = transformer.config.attention_head_dim
    for i, block in enumerate(transformer.transformer_blocks):
        txt, img = _joint_reference(block.attn, seen[("joint", i)])
        both = torch.cat([txt, img], dim=1)
        heads_ref = {"all": both, "image": img, "text": txt}[scope]
        slices_ref = txt if scope == "text" else img  # joint slices16: to_out[0] unless scope is text
        span_h, span_s = lay["heads"].spans[i], lay["slices16"].spans[i]
        np.testing.assert_allclose(got["heads"][:, span_h.start:span_h.stop], _unit_rms(heads_ref, d), rtol=1e-4)
        np.testing.assert_allclose(got["slices16"][:, span_s.start:span_s.stop], _unit_rms(slices_ref, 16), rtol=1e-4)
    n_joint = len(transformer.transformer_blocks)
    for i, block in enumerate(transformer.single_transformer_blocks):
        full = _single_reference(block.attn, seen[("single", i)])
        part = {"all": full, "image": full[:, TEXT_LEN:], "text": full[:, :TEXT_LEN]}[scope]
        span_h, span_s = lay["heads"].spans[n_joint + i], lay["slices16"].spans[n_joint + i]
        ref_h = _unit_rms(part, d, block.attn.inner_dim)
        np.testing.assert_allclose(got["heads"][:, span_h.start:span_h.stop], ref_h, rtol=1e-4)
        np.testing.assert_allclose(got["slices16"][:, span_s.start:span_s.stop], _unit_rms(part, 16), rtol=1e-4)
    assert got["heads"].dtype == np.float64 and got["heads"].shape == (2, len(lay["heads"]))


def test_scopes_differ_and_all_combines_streams(transformer):
    rows = {}
    for scope in ("all", "image", "text"):
        with capture_units(transformer, ("heads",), token_scope=scope) as cap, torch.no_grad():
            transformer(**_inputs(transformer, batch=1, seed=2))
            rows[scope] = cap.take()["heads"][0]
    n_img, n_txt = 64, TEXT_LEN
    # RMS over both streams is the token-weighted quadratic mean of the two streams' RMS
    combined = np.sqrt((n_img * rows["image"] ** 2 + n_txt * rows["text"] ** 2) / (n_img + n_txt))
    np.testing.assert_allclose(rows["all"], combined, rtol=1e-5)
    assert not np.allclose(rows["image"], rows["text"])


def test_batched_equals_unbatched(transformer):
    inputs = _inputs(transformer, batch=3, seed=3)
    with capture_units(transformer, ("heads", "slices16")) as cap, torch.no_grad():
        transformer(**inputs)
        batched = cap.take()
        for b in range(3):
            one = {k: (v[b:b + 1] if torch.is_tensor(v) else v) for k, v in inputs.items()}
            transformer(**one)
        single = cap.take()  # rows of three forwards, in call order
    for name in ("heads", "slices16"):
        assert single[name].shape == batched[name].shape == (3, len(cap.layouts[name]))
        np.testing.assert_allclose(batched[name], single[name], rtol=1e-5)
        assert not np.allclose(batched[name][0], batched[name][1])


def _hook_count(transformer):
    mods = [transformer]
    for block in transformer.transformer_blocks:
        mods += [block.attn.to_out[0], block.attn.to_add_out]
    mods += [block.attn.to_out for block in transformer.single_transformer_blocks]
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in mods)


def test_hooks_removed_after_exit_and_error(transformer):
    assert _hook_count(transformer) == 0
    with capture_units(transformer) as cap:
        assert _hook_count(transformer) == 2 + len(cap.sites)
    assert _hook_count(transformer) == 0
    with pytest.raises(ValueError, match="boom"):
        with capture_units(transformer):
            raise ValueError("boom")
    assert _hook_count(transformer) == 0
    with pytest.raises(RuntimeError):  # an error inside the forward itself
        with capture_units(transformer), torch.no_grad():
            bad = _inputs(transformer, batch=1, seed=4)
            bad["encoder_hidden_states"] = bad["encoder_hidden_states"][..., :5]
            transformer(**bad)
    assert _hook_count(transformer) == 0


def test_editor_replaces_projection_input(transformer):
    """The intervention hook point: an editor zeroing joint[0] head 0 on the image stream."""
    d = transformer.config.attention_head_dim

    def editor(site, x, text_len):
        if site.block.name == "joint[0]" and site.stream == "image":
            x = x.clone()
            x[..., :d] = 0
            return x
        return None

    inputs = _inputs(transformer, batch=1, seed=5)
    with torch.no_grad():
        plain = transformer(**inputs)[0]
        with capture_units(transformer, ("heads",), token_scope="image", editor=editor) as cap:
            edited = transformer(**inputs)[0]
            rows = cap.take()["heads"][0]
    assert rows[0] == 0.0 and rows[1] > 0
    assert not torch.allclose(plain, edited)
