"""Command ``view``: the case browser for any folder of volumes and one or more prediction folders (library
modules are imported inside the command: start-up time of ``mood-dpa --help``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app
from .checks import OVERWRITE_OPTION, check_number


@app.command("view")
def view_cmd(
    out: Path = typer.Option(..., "-o", "--output", help="Folder to write the browser into (replaced whole); with --serve "
                             "and no -i: a folder to serve as it is (a browser folder, or the demo's report/)."),
    inputs: Optional[Path] = typer.Option(None, "-i", "--input", help="Folder of volumes (*.nii.gz), e.g. a synth set's toy/."),
    preds: Optional[List[str]] = typer.Option(None, "-p", "--pred", help="A prediction folder in the MOOD layout "
                                              "(<case>.nii.gz scores, <case>.nii.gz.txt sample score), as FOLDER or "
                                              "NAME=FOLDER; repeat for several methods."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="MOOD labels: the set's root, its toy_label/ (with pixel/ "
                                          "and sample/) or a folder of masks. Adds outlines, per-case AP and hits."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="manifest.csv of 'mood-dpa synth' (anomaly kinds); "
                                            "default: the one beside --labels, when there."),
    cases: Optional[str] = typer.Option(None, "--cases", help="Only these cases (comma-separated names, as the volume "
                                        "files without .nii.gz)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many cases, taken in turn from each kind "
                                        "(for large sets; the page opens equally fast, the folder grows per case)."),
    max_size: int = typer.Option(128, "--max-size", help="Display grid: at most this many voxels along an axis (larger "
                                 "volumes are block-reduced: mean of intensities, max of scores and labels)."),
    title: str = typer.Option("mood-dpa case browser", "--title", help="Title of the page."),
    serve: Optional[int] = typer.Option(None, "--serve", help="Then serve the folder on this port (0: a free one) until "
                                        "Ctrl-C; open the printed URL (e.g. through ssh -L)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address --serve binds to; the default lets only this machine in."),
    overwrite: bool = OVERWRITE_OPTION,
) -> None:
    """Browse cases in a web page: each volume on three planes, every method's score map over it, the true anomaly.

    Writes OUT/index.html (open it with any current browser straight from disk: no server, no network)
    and OUT/data/ (one small script per case, read when the case is opened). Example, after the demo:

      mood-dpa view -i mood_demo/valset/toy --labels mood_demo/valset -p DPA=mood_demo/predictions/dpa
      -p mood_demo/predictions/histogram -o case_browser
    """
    from ..errors import MoodError
    from ..viewer import check_predictions, choose_cases, find_cases, find_manifest, parse_method, write_viewer

    if serve is not None:
        check_number("--serve", serve, low=0, high=65535)
    if inputs is None:
        if serve is None:
            raise MoodError("-i/--input is required (without it, --serve PORT serves an existing folder)")
        page = "index.html" if (out / "index.html").is_file() else "report.html"
        return _serve(out, serve, host, page)
    if not preds:
        raise MoodError("give at least one prediction folder with -p/--pred")
    check_number("--max-size", max_size, low=8, high=512)
    if limit is not None:
        check_number("--limit", limit, low=1)
    methods = [parse_method(p) for p in preds]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise MoodError(f"--pred: two prediction folders share the name {next(n for n in names if names.count(n) > 1)!r}; "
                        "name them with NAME=FOLDER")
    if labels is not None and not labels.is_dir():
        raise MoodError(f"--labels {labels}: not a folder")
    if manifest is None:
        manifest = find_manifest(labels)
    from ..outputs import prepare_output_dir

    prepare_output_dir(out, inputs=[inputs, labels, *(m.folder for m in methods)], overwrite=overwrite, replace=True)
    chosen = choose_cases(find_cases(inputs, labels, manifest), [c for c in cases.split(",") if c] if cases else None, limit)

    def warn(msg: str) -> None:
        typer.echo(f"warning: {msg}", err=True)

    check_predictions(chosen, methods, warn)
    summary = write_viewer(out, chosen, methods, title=title, max_size=max_size, progress=True, warn=warn)
    typer.echo(f"wrote {summary.cases} cases x {len(methods)} methods ({summary.total_bytes / 1e6:.1f} MB, "
               f"{summary.mb_per_case:.2f} MB per case) to {summary.index}")
    if serve is not None:
        _serve(out, serve, host, "index.html")


def _serve(folder: Path, port: int, host: str, page: str) -> None:
    from ..viewer import serve_folder

    try:
        serve_folder(folder, port, host, page=page,
                     on_ready=lambda url: typer.echo(f"serving {folder} at {url} (Ctrl-C stops)"))
    except KeyboardInterrupt:
        typer.echo("stopped serving")
