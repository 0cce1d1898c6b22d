"""The built-in families' embedded tiny models and loaders, as the built-in plugins register them."""

from __future__ import annotations

from typing import Any

from plantain_core.models import tiny, tiny_flux1, tiny_flux2_dev, tiny_sd3
from plantain_core.models.loaders import HubLoader, TinyLoader, TinyModel

from .flux1 import FLUX1, FLUX1_KONTEXT
from .flux2 import FLUX2_DEV, FLUX2_KLEIN
from .sd3 import SD3

TINY_KLEIN = TinyModel("tiny", FLUX2_KLEIN, "plantain_core.models.tiny:build_tiny_pipeline", tiny.TINY_REVISION,
                       "plantain_core.models.tiny:TRANSFORMER_CONFIG", tiny.TEXT_OUT_LAYERS, tiny.TINY_SIZE,
                       "FLUX.2 Klein")
TINY_FLUX2_DEV = TinyModel("tiny-flux2-dev", FLUX2_DEV, "plantain_core.models.tiny_flux2_dev:build_tiny_flux2_dev_pipeline",
                           tiny_flux2_dev.TINY_FLUX2_DEV_REVISION, "plantain_core.models.tiny_flux2_dev:TRANSFORMER_CONFIG",
                           tiny_flux2_dev.TEXT_OUT_LAYERS, tiny.TINY_SIZE, "FLUX.2 [dev]")
TINY_FLUX1 = TinyModel("tiny-flux1", FLUX1, "plantain_core.models.tiny_flux1:build_tiny_flux1_pipeline",
                       tiny_flux1.TINY_FLUX1_REVISION, "plantain_core.models.tiny_flux1:TRANSFORMER_CONFIG",
                       size=tiny_flux1.TINY_SIZE, about="FLUX.1 [dev]")
TINY_FLUX1_KONTEXT = TinyModel("tiny-flux1-kontext", FLUX1_KONTEXT,
                               "plantain_core.models.tiny_flux1:build_tiny_flux1_kontext_pipeline",
                               tiny_flux1.TINY_FLUX1_KONTEXT_REVISION, "plantain_core.models.tiny_flux1:TRANSFORMER_CONFIG",
                               size=tiny_flux1.TINY_SIZE, about="FLUX.1 Kontext [dev]")
TINY_SD3 = TinyModel("tiny-sd3", SD3, "plantain_core.models.tiny_sd3:build_tiny_sd3_pipeline", tiny_sd3.TINY_SD3_REVISION,
                     "plantain_core.models.tiny_sd3:TRANSFORMER_CONFIG", size=tiny_sd3.TINY_SIZE,
                     about="Stable Diffusion 3.5 medium")


class KleinLoader(HubLoader):
    """FLUX.2 Klein (4B/9B, base or distilled) from a hub id or a local diffusers folder."""

    def __init__(self):
        super().__init__(FLUX2_KLEIN, r"klein", "black-forest-labs/FLUX.2-klein-base-4B")


def flux2_loaders() -> dict[str, Any]:
    return {"tiny": TinyLoader(TINY_KLEIN), "flux2-klein": KleinLoader(),
            "tiny-flux2-dev": TinyLoader(TINY_FLUX2_DEV),
            "flux2-dev": HubLoader(FLUX2_DEV, r"^(?!.*klein).*flux\.?2", "black-forest-labs/FLUX.2-dev")}


def flux1_loaders() -> dict[str, Any]:
    return {"tiny-flux1": TinyLoader(TINY_FLUX1), "tiny-flux1-kontext": TinyLoader(TINY_FLUX1_KONTEXT),
            "flux1-kontext": HubLoader(FLUX1_KONTEXT, r"kontext", "black-forest-labs/FLUX.1-Kontext-dev"),
            "flux1": HubLoader(FLUX1, r"^(?!.*kontext).*flux\.?1", "black-forest-labs/FLUX.1-dev")}


def sd3_loaders() -> dict[str, Any]:
    return {"tiny-sd3": TinyLoader(TINY_SD3),
            "sd3": HubLoader(SD3, r"stable-diffusion-3|\bsd3", "stabilityai/stable-diffusion-3.5-medium")}


def builtin_loaders() -> dict[str, Any]:
    return {**flux2_loaders(), **flux1_loaders(), **sd3_loaders()}
