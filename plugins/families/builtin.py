"""The built-in families' embedded tiny models and loaders, as the built-in plugins register them."""

from __future__ import annotations

from typing import Any

from plantain_core.models import tiny, tiny_flux1, tiny_flux2_dev, tiny_sd3
from plantain_core.models.loaders import HubLoader, TinyLoader, TinyModel

from . import tiny_dit
from .flux1 import FLUX1, FLUX1_KONTEXT
from .flux2 import FLUX2_DEV, FLUX2_KLEIN
from .pixart import PIXART_SIGMA
from .qwen_image import QWEN_IMAGE
from .sd3 import SD3
from .z_image import Z_IMAGE

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

_TINY_DIT = "plantain_plugins.families.tiny_dit"
TINY_QWEN_IMAGE = TinyModel("tiny-qwen-image", QWEN_IMAGE, f"{_TINY_DIT}:build_tiny_qwen_image_pipeline",
                            tiny_dit.TINY_QWEN_IMAGE_REVISION, f"{_TINY_DIT}:QWEN_IMAGE_TRANSFORMER_CONFIG",
                            size=tiny_dit.TINY_SIZE, about="Qwen-Image")
TINY_Z_IMAGE = TinyModel("tiny-z-image", Z_IMAGE, f"{_TINY_DIT}:build_tiny_z_image_pipeline",
                         tiny_dit.TINY_Z_IMAGE_REVISION, f"{_TINY_DIT}:Z_IMAGE_TRANSFORMER_CONFIG",
                         size=tiny_dit.TINY_SIZE, about="Z-Image")
TINY_PIXART_SIGMA = TinyModel("tiny-pixart-sigma", PIXART_SIGMA, f"{_TINY_DIT}:build_tiny_pixart_sigma_pipeline",
                              tiny_dit.TINY_PIXART_SIGMA_REVISION, f"{_TINY_DIT}:PIXART_TRANSFORMER_CONFIG",
                              size=tiny_dit.TINY_SIZE, about="PixArt-Sigma")


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


def qwen_image_loaders() -> dict[str, Any]:
    return {"tiny-qwen-image": TinyLoader(TINY_QWEN_IMAGE),
            "qwen-image": HubLoader(QWEN_IMAGE, r"^qwen-?image(?!.*edit)", "Qwen/Qwen-Image")}


def z_image_loaders() -> dict[str, Any]:
    return {"tiny-z-image": TinyLoader(TINY_Z_IMAGE), "z-image": HubLoader(Z_IMAGE, r"^z-?image", "Tongyi-MAI/Z-Image-Turbo")}


def pixart_loaders() -> dict[str, Any]:
    return {"tiny-pixart-sigma": TinyLoader(TINY_PIXART_SIGMA),
            "pixart-sigma": HubLoader(PIXART_SIGMA, r"pixart-?sigma", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS")}


def builtin_loaders() -> dict[str, Any]:
    return {**flux2_loaders(), **flux1_loaders(), **sd3_loaders(), **qwen_image_loaders(), **z_image_loaders(),
            **pixart_loaders()}
