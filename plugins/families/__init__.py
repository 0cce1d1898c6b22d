"""The built-in model families (FLUX.2 Klein and [dev], FLUX.1 and Kontext, SD3, Qwen-Image,
Z-Image, PixArt-Sigma) with their loaders and embedded tiny models (``builtin``; the last
three's tiny builders in ``tiny_dit``, their presets in ``presets/``). The entry-point plugins
``core``, ``flux1``, ``sd3``, ``qwen_image``, ``z_image`` and ``pixart`` register them through
``plantain_register_families`` and ``plantain_register_models``, exactly as a third-party
family plugin would; they import only plantain_core's public modules (the family contract,
loaders, layouts, tiny builders).
"""
