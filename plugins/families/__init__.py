"""The built-in model families (FLUX.2 Klein and [dev], FLUX.1 and Kontext, SD3) with their
loaders and embedded tiny models (``builtin``). The entry-point plugins ``core``, ``flux1``
and ``sd3`` register them through ``plantain_register_families`` and
``plantain_register_models``, exactly as a third-party family plugin would; they import
only plantain_core's public modules (the family contract, loaders, layouts, tiny builders).
"""
