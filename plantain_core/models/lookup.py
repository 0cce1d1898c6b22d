"""Finding a model family: among the registered plugins' families, by loaded bundle,
transformer or transformer class; and the unit layouts of a transformer through its family.

The contract itself is :mod:`plantain_core.models.family`; this module sits above the
plugin registry (which checks families against the contract when a plugin registers one).
"""

from __future__ import annotations

from ..errors import PlantainError
from ..plugins import builtin_registry, get_registry
from .family import ModelFamily, checked_sites, guarded

#: The family of a loader that names none: FLUX.2 Klein, the only shape plantain knew
#: before families existed.
DEFAULT_FAMILY = "flux2-klein"


def families(registry=None) -> list[ModelFamily]:
    """Every registered model family (the built-in ones when the registry has none)."""
    registry = get_registry() if registry is None else registry
    found = [entry.obj for entry in registry.families.values()]
    return found or builtin_families()


def builtin_families() -> list[ModelFamily]:
    """The families of plantain's own plugins (loaded through their entry points, as any plugin's)."""
    return [entry.obj for entry in builtin_registry().families.values()]


def model_label(name) -> str:
    """The model a family imitates, named for sentences such as "a tiny model's numbers say
    nothing about X": its description up to the first parenthesis (``FLUX.2 [klein]``,
    ``Qwen-Image``); ``the model it imitates`` for an unknown family (an untrusted name). A record
    without one predates families: FLUX.2 Klein's, as :func:`family_of` reads it."""
    name = name or DEFAULT_FAMILY
    found = next((f for f in families() + builtin_families() if f.name == name), None)
    return str(found.description).split(" (", 1)[0] if found is not None else "the model it imitates"


def family_of(bundle) -> ModelFamily:
    """The family of a loaded bundle, guarded (:func:`guarded`); a loader that names none
    gets FLUX.2 Klein's, the only shape plantain knew before families existed."""
    family = getattr(bundle, "family", None)
    if family is None:
        family = builtin_registry().families[DEFAULT_FAMILY].obj
    return guarded(family, f"model loader {getattr(bundle, 'name', '?')!r}")


def family_for_transformer(transformer, registry=None) -> ModelFamily:
    """The first registered family whose transformer class is ``transformer``'s."""
    return family_for_class(type(transformer).__name__, registry)


def family_for_class(name: str, registry=None) -> ModelFamily:
    """The first registered family (then built-in one) whose transformer class is ``name``."""
    for family in families(registry) + builtin_families():
        if family.transformer_class == name:
            return family
    raise PlantainError(f"no model family knows the transformer class {name}; "
                        f"known: {', '.join(sorted({f.transformer_class for f in families(registry)}))}")


def transformer_layouts(transformer, names=None, token_scope: str = "all", family: ModelFamily | None = None):
    """The unit layouts ``names`` (default: all) of ``transformer`` under ``token_scope``."""
    from .layouts import LAYOUT_NAMES, blocks_of, build_layouts

    names = LAYOUT_NAMES if names is None else names
    family = family or family_for_transformer(transformer)
    return build_layouts(names, blocks_of(checked_sites(family, transformer)), token_scope)


def describe_blocks(transformer, family: ModelFamily | None = None):
    """The blocks (:class:`~plantain_core.models.layouts.BlockInfo`) of ``transformer``'s capture sites."""
    from .layouts import blocks_of

    return blocks_of(checked_sites(family or family_for_transformer(transformer), transformer))
