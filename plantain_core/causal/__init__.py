"""The causal check (``plantain run --causal``): unit sets chosen from the statistics
(``unit_sets``, ``plan``), ablation and patching passes (``effects``, ``attribution``),
their statistics (``stats``) and the check run on a run folder (``check``).

May import: ``stats``, ``capture``, ``spec``, ``models``, ``rundir``, ``config``,
``plugins``; ``report.analysis`` (a run's statistics) and ``report.causal_section``
(its card section). Nothing imports it but ``cli`` and ``sweep``.
"""


def __getattr__(name: str):  # the 0.1 module plantain_core.causal (deprecated): its names
    from .. import _moved_attr

    return _moved_attr(__name__, name)
