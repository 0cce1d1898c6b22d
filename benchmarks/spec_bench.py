"""Spec validation at scale: ``plantain validate`` of a spec with 100,000 pairs.

Three spellings of the same pairs (inline TOML, a CSV pairs file, a JSON Lines pairs
file), each validated fully as ``plantain validate PATH`` does (parse, the generator's
checks, the pairs built, the shared rules). Target: under 10 s each. Beside it, the
parser change that made this possible: the ``toml`` package against the standard
library's ``tomllib`` on the same inline text (``toml`` is quadratic, so it is timed at
2,000 pairs only: 8,000 took 35 s here).
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import time
from typing import Any

from .common import log, quantiles

TARGET_S = 10.0
PARSE_PAIRS = 2_000


def _write(root: pathlib.Path, n: int) -> dict[str, pathlib.Path]:
    rows = [(f"p{i}", f"a red cube number {i} on a table", f"a blue sphere number {i} on a table", i % 7)
            for i in range(n)]
    head = 'schema = 1\nname = "{name}"\ngenerator = "text-pair"\n[stimuli]\n'
    paths = {}
    for name in ("inline", "csv", "jsonl"):
        folder = root / name
        folder.mkdir()
        paths[name] = folder / f"{name}.toml"
    paths["inline"].write_text(head.format(name="inline") + "pairs = [\n" + ",\n".join(
        f'  {{ id = "{i}", a = "{a}", b = "{b}", meta = {{ k = {k} }} }}' for i, a, b, k in rows) + "\n]\n")
    (paths["csv"].parent / "pairs.csv").write_text("id,a,b,k\n" + "".join(f"{i},{a},{b},{k}\n" for i, a, b, k in rows))
    paths["csv"].write_text(head.format(name="csv") + 'pairs_file = "pairs.csv"\n')
    (paths["jsonl"].parent / "pairs.jsonl").write_text(
        "".join(json.dumps({"id": i, "a": a, "b": b, "k": k}) + "\n" for i, a, b, k in rows))
    paths["jsonl"].write_text(head.format(name="jsonl") + 'pairs_file = "pairs.jsonl"\n')
    return paths


def run(quick: bool = False) -> dict[str, Any]:
    import toml
    import tomllib

    from plantain_core.plugins import get_registry
    from plantain_core.spec.probe_spec import load_spec

    n = 20_000 if quick else 100_000
    rounds = 2 if quick else 3
    registry = get_registry()
    with tempfile.TemporaryDirectory(prefix="plantain-spec-bench-") as tmp:
        paths = _write(pathlib.Path(tmp), n)
        times: dict[str, list[float]] = {name: [] for name in paths}
        for r in range(rounds):
            for name in (list(paths) if r % 2 == 0 else list(paths)[::-1]):
                start = time.perf_counter()
                spec = load_spec(paths[name], registry)
                times[name].append(time.perf_counter() - start)
                assert spec.name == name
            log(f"specs: round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
        small = PARSE_PAIRS
        text = paths["inline"].read_text()
        head, body = text.split("pairs = [\n", 1)
        lines = body.split(",\n")[:small]
        text_small = head + "pairs = [\n" + ",\n".join(lines).rstrip("]\n") + "\n]\n"
        parse = {"toml": [], "tomllib": []}
        for r in range(rounds):
            for name, fn in (("toml", toml.loads), ("tomllib", tomllib.loads)):
                start = time.perf_counter()
                fn(text_small)
                parse[name].append(time.perf_counter() - start)
    out = {
        "pairs": n,
        "target_max_s": TARGET_S,
        "validate_s": {name: quantiles(v) for name, v in times.items()},
        "parse_pairs": PARSE_PAIRS,
        "parse_s": {name: quantiles(v) for name, v in parse.items()},
    }
    out["met"] = all(q["median"] <= TARGET_S for q in out["validate_s"].values())
    return out
