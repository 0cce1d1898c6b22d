"""``plantain publish RUN_DIR REPO_ID``: the card and results of a run, uploaded as a model
repository on the Hugging Face Hub through ``huggingface_hub``."""

from __future__ import annotations

import os
import pathlib
import re
import tempfile

import click

from ..errors import PlantainError

#: What a published run holds; captures only with --with-captures (they can be large).
PUBLISHED = ("README.md", "manifest.json", "summary.json", "units.csv", "blocks.csv", "steps.csv", "clusters.csv",
             "tfce.csv", "causal.json", "explorer.html")


def files_to_publish(run_dir: pathlib.Path, with_captures: bool) -> list[str]:
    """The run's files that go to the hub, relative to the run folder, after checking it."""
    from ..report.analysis import read_manifest

    manifest = read_manifest(run_dir)  # refuses links, special files and bad manifests
    if manifest.get("status") != "complete":
        raise PlantainError(f"{run_dir} is not a complete run (status {manifest.get('status')!r}); finish it with "
                            "--resume before publishing")
    names = [n for n in PUBLISHED if (run_dir / n).is_file()]
    names += sorted(f"figures/{p.name}" for p in (run_dir / "figures").glob("*.png")) if (run_dir / "figures").is_dir() else []
    if with_captures:
        names += sorted(f"captures/{p.name}" for p in (run_dir / "captures").glob("*.npz"))
        if (run_dir / "placebo" / "manifest.json").is_file():  # the length placebo: a run of its own inside
            names += ["placebo/manifest.json"] + sorted(f"placebo/captures/{p.name}"
                                                        for p in (run_dir / "placebo" / "captures").glob("*.npz"))
    return names


#: Folders whose paths are local to one machine: a published file naming one leaks it.
LOCAL_ROOTS = ("/home/", "/Users/", "/root/", "/tmp/", "/var/folders/", "/private/", "/mnt/", "/media/", "/scratch/")
TEXT_SUFFIXES = (".md", ".json", ".csv")


def local_paths(run_dir: pathlib.Path, names: list[str]) -> list[tuple[str, str]]:
    """(file, path) for each text file of ``names`` that names a local path: this
    machine's home, working, temporary or run folder, the run's local model folder, or a
    path under a folder that is local on any machine (``/home/``, ``/Users/``, ``/tmp/``, ...)."""
    from ..capture.run_records import local_model

    roots = {os.path.expanduser("~"), os.getcwd(), tempfile.gettempdir(), str(run_dir.resolve().parent),
             local_model(run_dir) or ""}
    roots = sorted({r.rstrip("/\\") for r in roots if len(r.rstrip("/\\")) > 1}, key=len, reverse=True)
    pattern = re.compile("|".join([re.escape(r) + r"(?:[/\\\"]|$)" for r in roots]
                                  + [r"(?<![\w.:/-])" + re.escape(r) for r in LOCAL_ROOTS]
                                  + [r"(?<![\w])~/", r"\b[A-Za-z]:\\\\?Users"]))
    found = []
    for name in names:
        if not name.endswith(TEXT_SUFFIXES):
            continue
        text = (run_dir / name).read_text(encoding="utf-8", errors="replace")
        match = pattern.search(text) or pattern.search(text.replace("\\/", "/"))
        if match:
            end = re.search(r"[\s\"'`|,)]", text[match.start():])
            found.append((name, text[match.start():match.start() + (end.start() if end else 80)][:120]))
    return found


def check_no_local_paths(run_dir: pathlib.Path, names: list[str]) -> None:
    """Refuse, in one line, a run whose files to publish name a local path."""
    found = local_paths(run_dir, names)
    if found:
        name, path = found[0]
        more = f" (and {len(found) - 1} more files)" if len(found) > 1 else ""
        raise PlantainError(f"{run_dir / name} names the local path {path!r}{more}: nothing was uploaded; a run made "
                            "by this plantain records none (rerun it, or `plantain report` it to rewrite the card), "
                            "or remove the path and publish again")


@click.command("publish")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=pathlib.Path))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--with-captures", is_flag=True, help="Also upload captures/*.npz (the raw per-pair numbers).")
@click.option("--dry-run", is_flag=True, help="List exactly what would be uploaded, and upload nothing.")
def cli(run_dir, repo_id, private, with_captures, dry_run):
    """Upload RUN_DIR's card, figures, summary and CSVs to the hub repository REPO_ID."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PlantainError(f"REPO_ID {repo_id!r} is not a hub repository id (user/name): {exc}") from None
    names = files_to_publish(run_dir, with_captures)
    check_no_local_paths(run_dir, names)  # --dry-run says so too: it lists what publishing would do
    total = sum((run_dir / n).stat().st_size for n in names)
    if dry_run:
        for name in names:
            click.echo(f"{(run_dir / name).stat().st_size:>12,}  {name}")
        click.echo(f"would upload {len(names)} files ({total:,} bytes) to https://huggingface.co/{repo_id}"
                   f"{' (private)' if private else ''}")
        return
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(run_dir), repo_id=repo_id, repo_type="model", allow_patterns=names,
                          commit_message=f"plantain run {run_dir.name}")
    except Exception as exc:  # offline, no token, no permission: one line, whatever the hub client raised
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PlantainError(f"cannot publish to {repo_id}: {type(exc).__name__}: {reason[:300]} (needs the network "
                            "and a token: `hf auth login`; --dry-run lists the files)") from None
    click.echo(f"uploaded {len(names)} files ({total:,} bytes) to https://huggingface.co/{repo_id}")
