"""plantain's benchmarks: ``python -m benchmarks`` (from the repository root).

Figures (each a ratio measured in one process, arms interleaved, median of rounds with
IQR and min/max; see ``docs/performance.md``):

- ``capture``    — capture overhead: hooked vs bare transformer forward (``capture_bench``)
- ``throughput`` — probe throughput: ``run_probe`` vs a naive pipeline loop (``throughput_bench``)
- ``stats``      — statistics engine vs a per-unit scipy loop (``stats_bench``)
- ``memory``     — capture memory per pass, peak RSS of runs (``memory_bench``)
- ``nnsight``    — the same capture with nnsight, as a peer (``nnsight_bench``)
- ``encode``     — prompt encoding: the pipeline's full encoder call vs an early exit (``encode_bench``)
- ``causal``     — cost of the causal check per unit set, per mode (``causal_bench``)
- ``specs``      — validating a spec of 100,000 pairs, inline or in a pairs file (``spec_bench``)
- ``trajectory`` — a K = 8 step-resolved run vs the hooked pipeline loop and the model floor (``trajectory_bench``)
- ``sweep``      — 8 tiny cells: ``plantain sweep`` on Ray (2 workers) vs in one process (``sweep_bench``)
- ``calibration`` — error rates of every test the card reports, on simulated data sets (``calibration_bench``)
- ``compile``    — capture overhead inside torch.compile: compiled hooked vs compiled bare, graph breaks (``compile_bench``)
- ``full-klein`` — FLUX.2 Klein 4B on a GPU: passes/s and MFU (``klein_gpu``; opt-in)

Results go to ``benchmarks/results/latest.json`` (schema in ``docs/performance.md``).
"""

SCHEMA = 1
FIGURES = ("capture", "throughput", "stats", "memory", "nnsight", "encode", "causal", "specs", "trajectory",
           "sweep", "calibration", "compile", "full-klein")
DEFAULT_FIGURES = FIGURES[:-1]
