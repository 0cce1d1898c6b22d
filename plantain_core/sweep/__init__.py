"""``plantain sweep``: a grid of run configurations (``grid``, ``plan``), its cells run
locally or on Ray (``execute``, ``run``), their state on disk (``state``) and the
sweep's own report (``report``).

May import everything below it (``execute``, ``capture``, ``stats``, ``causal``,
``report``, ``spec``, ``models``, ``rundir``, ``config``); only ``cli`` imports it.
"""


def __getattr__(name: str):  # the 0.1 module plantain_core.sweep (deprecated): its names
    from .. import _moved_attr

    return _moved_attr(__name__, name)


class _Callable(__import__("types").ModuleType):
    """``pt.sweep(grid, out=...)`` is the API's sweep(): once this package is imported,
    Python binds ``plantain_core.sweep`` to it, so the package answers the call itself."""

    def __call__(self, *args, **kwargs):
        from ..api import sweep

        return sweep(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _Callable
