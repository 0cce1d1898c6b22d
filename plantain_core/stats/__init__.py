"""Per-unit statistics of one run's captures, pure numpy/statsmodels: the engine
(``engine``: paired t, sign-flip null, FWER/FDR, LayoutStats), split-half reliability,
the reviewer's checks (``checks`` with ``common_mode``, ``freedman_lane``, ``power``),
across-steps and trends, and the result files (``results``: summary layouts,
``units.csv``, ``blocks.csv``).

May import: ``rundir.fsutil`` and each other. Never ``capture``, ``models``, ``report``.
"""


def __getattr__(name: str):  # the 0.1 module plantain_core.stats (deprecated): its names
    from .. import _moved_attr

    return _moved_attr(__name__, name)
