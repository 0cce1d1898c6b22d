"""The probe side, before any model: specs (``probe_spec``: TOML loading and validation),
stimuli (``stimuli``: Pair, Stimulus, ImageSource), pair tables and pairs files
(``pairtable`` <- ``pairfile``), the spec catalog (``catalog``) and a resolved probe
(``probes``: spec + pairs + providers).

May import: ``errors``, ``plugins`` (the registry of generators and spec folders). Never
``models``, ``capture`` or anything above.
"""


def __getattr__(name: str):  # the 0.1 module plantain_core.spec (deprecated): its names
    from .. import _moved_attr

    return _moved_attr(__name__, name)
