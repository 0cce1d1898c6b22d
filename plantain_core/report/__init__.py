"""Turning a run folder's captures into its outputs: the analysis (``analysis``:
statistics per layout, ``summary.json``, ``units.csv``, the interpreter's
``Interpretation``, the placebo's share), the card and its sections (``card``,
``*_section``), figures (matplotlib is imported only inside the figure functions), the
reproduce block, and comparing two runs (``compare``).

May import: ``stats``, ``rundir``, ``config``, ``spec``, ``models`` (names and
families for the card), ``plugins`` and the placebo folder name from
``capture.placebo``. Never ``causal`` or ``sweep``.
"""
