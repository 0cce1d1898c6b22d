"""Checks of what a model family's methods return: a plugin's return values are untrusted,
and a malformed one would otherwise fail deep inside a pass or a capture hook.

:data:`RETURNS` holds one check per :class:`~plantain_core.models.family.ModelFamily` method
(:class:`~plantain_core.models.family.GuardedFamily` applies them); :func:`checked_sites`
checks a family's capture sites. Kept apart from the contract so that ``family.py`` stays
the contract itself; both names are importable from ``plantain_core.models.family``.
"""

from __future__ import annotations

import functools

from ..errors import PlantainError, plugin_call


def checked_sites(family, transformer) -> list:
    """``family.sites(transformer)``, checked: a plugin's return value is untrusted, and a
    malformed site would otherwise fail deep inside a capture hook."""
    import re

    from .layouts import STREAMS, BlockInfo, Site

    name = getattr(family, "name", "?")
    sites = plugin_call(f"model family {name!r}: sites() on {type(transformer).__name__}", family.sites, transformer)
    if not isinstance(sites, list) or not sites:
        raise PlantainError(f"model family {name!r}: sites() must return a non-empty list of Site")
    for k, site in enumerate(sites):
        where = f"model family {name!r}: sites()[{k}]"
        if not isinstance(site, Site) or not isinstance(site.block, BlockInfo):
            raise PlantainError(f"{where} is {type(site).__name__}, not a plantain_core.Site of a BlockInfo")
        b = site.block
        if not isinstance(b.kind, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,31}", b.kind):
            raise PlantainError(f"{where}: block kind {b.kind!r} must be a short identifier (it names units)")
        counts = (b.index, b.heads, b.head_dim, b.attn_dim, b.mlp_dim)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts) or b.heads < 1 \
                or b.head_dim < 1 or b.attn_dim != b.heads * b.head_dim:
            raise PlantainError(f"{where}: {b.name} needs whole numbers with heads, head_dim >= 1 and "
                                f"attn_dim = heads x head_dim (got {counts[1:]})")
        if site.stream not in STREAMS or site.stream not in b.streams:
            raise PlantainError(f"{where}: stream {site.stream!r} is not one of the block's {b.streams} "
                                f"(streams are {', '.join(STREAMS)})")
        width = getattr(site.module, "in_features", None)
        if not callable(getattr(site.module, "register_forward_pre_hook", None)) or \
                (isinstance(width, int) and width < b.attn_dim + b.mlp_dim):
            raise PlantainError(f"{where}: {b.name}/{site.stream} is not a module taking {b.attn_dim + b.mlp_dim} "
                                "input features")
    return sites


def _is_tensor(value) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _pair(value, first=None, second=None) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and (first is None or first(value[0])) \
        and (second is None or second(value[1]))


def _str_dict(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _encoded(value, args) -> str | None:
    if not _pair(value, _str_dict, _str_dict):
        return "must return ({prompt: {kwarg: tensor}}, {kwarg: tensor})"
    embeds, prompts = value[0], args[1]
    for prompt in prompts:
        one = embeds.get(prompt)
        if not _str_dict(one) or not all(_is_tensor(v) and v.ndim >= 1 and v.shape[0] == 1 for v in one.values()):
            return f"must give every prompt a dict of tensors with batch size 1 (not so for {prompt[:40]!r})"
        if not _is_tensor(one.get("encoder_hidden_states")):
            return "must give every prompt an `encoder_hidden_states` tensor (the noise dtype and the text length)"
    return None


@functools.lru_cache(maxsize=None)
def _forward_params(transformer_class) -> frozenset | None:
    """The keyword arguments ``transformer_class.forward`` takes; None where it takes any."""
    import inspect

    try:
        params = inspect.signature(transformer_class.forward).parameters
    except (AttributeError, TypeError, ValueError):
        return None
    return None if any(p.kind is p.VAR_KEYWORD for p in params.values()) else frozenset(params)


def _forward_kwargs(value, args) -> str | None:
    if not _str_dict(value):
        return "must return a dict of keyword arguments"
    transformer = getattr(args[0], "transformer", None)
    params = _forward_params(type(transformer)) if transformer is not None else None
    unknown = sorted(set(value) - params) if params else []
    if unknown:
        return f"gives {', '.join(unknown)}, which {type(transformer).__name__}.forward does not take"
    return None


def _scheduled(value, args) -> str | None:
    if not _pair(value) or not hasattr(value[0], "step"):
        return "must return (a scheduler with .step, its timesteps)"
    try:
        n = len(value[1])
    except TypeError:
        return "must return timesteps with a length"
    return None if n == args[1] else f"returned {n} timesteps for {args[1]} steps"


def _check(ok, wanted: str):
    return lambda value, args: None if ok(value) else f"must return {wanted}"


#: How each family method's return value is checked (a plugin's return value is untrusted).
RETURNS = {
    "prompt_tokens": _check(lambda v: isinstance(v, (list, tuple)) and all(
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 1 << 31 for t in v), "a list of token ids"),
    "encode_prompts": _encoded,
    "encode_image": _check(lambda v: _pair(v, _is_tensor, _is_tensor), "(latents, position ids) tensors"),
    "noise": _check(lambda v: _pair(v, _is_tensor, lambda ids: ids is None or _is_tensor(ids)),
                    "(latents, position ids or None) tensors"),
    "text_encoder_out_layers": _check(lambda v: isinstance(v, tuple) and all(isinstance(i, int) for i in v),
                                      "a tuple of layer indices"),
    "call_kwargs": _check(_str_dict, "a dict of keyword arguments"),
    "pipeline_guidance": _check(_str_dict, "a dict of keyword arguments"),
    "text_length": _check(lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
                          "a token count or None"),
    "size_multiple": _check(_whole, "a positive integer"),
    "latent_tokens": _check(_whole, "a positive integer"),
    "model_input": _check(_is_tensor, "a tensor"),
    "join_ids": _check(lambda v: v is None or _is_tensor(v), "a tensor or None"),
    "text_kwargs": _check(_str_dict, "a dict of keyword arguments"),
    "transformer_kwargs": _forward_kwargs,
    "prediction": _check(_is_tensor, "a tensor"),
    "schedule": _scheduled,
    "uses_cfg": _check(lambda v: isinstance(v, bool), "True or False"),
    "scale_model_input": _check(_is_tensor, "a tensor"),
    "loop_timestep": _check(_is_tensor, "a tensor"),
    "guide": _check(_is_tensor, "a tensor"),
    "step_kwargs": _check(_str_dict, "a dict of keyword arguments"),
    "step": _check(_is_tensor, "a tensor"),
    "padding_note": _check(lambda v: isinstance(v, str), "a string"),
    "presets": _check(lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(c, dict)
                                                            for k, c in v.items()), "{hub id: config dict}"),
}
