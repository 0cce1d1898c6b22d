"""Running a probe's passes through a model and keeping one number per unit and pass:
capture hooks on the attention projections (``hooks``; named so they are not confused
with pluggy hooks), the transformer inputs of one stimulus (``passes``), conditioning
images (``images``), the checks and the one model load before a run (``prepare``), the run loop that writes ``captures/*.npz`` and the manifest
(``runner``), how the transformer runs (``compiled``: torch.compile, attention backend,
no step caches), the kernel noise floor (``noise``), its records (``run_records``), trajectory steps (``trajectory``), the
length placebo's pairs (``placebo``) and a run split across processes (``distributed``).

May import: ``spec``, ``models``, ``rundir``, ``config``, ``plugins``, ``errors``; the
runner draws its stimulus sheet with ``report.figures``. Never ``stats`` or ``causal``.
"""


def __getattr__(name: str):  # the 0.1 module plantain_core.capture (deprecated): its names
    from .. import _moved_attr

    return _moved_attr(__name__, name)
