"""The ``sign-balance`` interpreter: which way do the responsive units lean, and in how
many pairs does the probe's effect hold?

It reads ``result`` (a ``plantain_core.ProbeResult``): ``result.primary`` is the
``heads`` layout's ``LayoutStats`` when captured; its ``t`` has one value per unit and
``diff`` one row per pair (in ``result.pair_ids`` order, the order of ``pairs``).
"""

from __future__ import annotations

import numpy as np

from plantain_core import Interpretation, Section


class SignBalance:
    description = "share of responsive units larger under A, and of pairs whose effect has the probe's sign"

    def interpret(self, spec, pairs, result) -> Interpretation:
        st = result.primary
        threshold = st.thresholds[0]
        responsive = np.isfinite(st.t) & (np.abs(st.t) > threshold)
        n = int(responsive.sum())
        if n == 0:
            numbers = {"layout": st.layout, "responsive_units": 0}
            return Interpretation(numbers, (Section("Sign balance", f"No unit has |t| > {threshold:g}."),))
        larger_under_a = int((st.t[responsive] > 0).sum())
        # per pair: the responsive units' differences, each signed by its unit's t
        signed = st.diff[:, responsive] * np.sign(st.t[responsive])
        per_pair = signed.mean(axis=1)
        agree = [pid for pid, x in zip(result.pair_ids, per_pair) if x > 0]
        a_name, b_name = spec.direction
        numbers = {
            "layout": st.layout,
            "responsive_units": n,
            "larger_under_a": larger_under_a,
            "pairs_with_probe_sign": len(agree),
            "pairs": len(pairs),
        }
        text = (f"Of the {n} units with |t| > {threshold:g} ({st.layout}), {larger_under_a} are larger under "
                f"\"{a_name}\" and {n - larger_under_a} under \"{b_name}\". Signed by each unit's t, their mean "
                f"difference is positive in {len(agree)} of {len(pairs)} pairs.")
        return Interpretation(numbers, (Section("Sign balance", text),))
