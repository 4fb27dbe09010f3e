"""``massface-eval``: score embeddings with the LFW 10-fold protocol (or ``--protocol``).

Reads massface embedding folders, msame/ais_bench output folders and ``.npy``/``.npz``
arrays (see :mod:`massface.evaluate.inputs`), scores each with
:func:`massface.scoring.verify` and prints one comparison table; ``--json``,
``--markdown`` and ``--roc`` write reports atomically. Bad input exits with status 2 and
a message naming the file. ``--protocol blufr | identification | all-pairs`` score an
embedding folder as a labelled set instead (:mod:`massface.evaluate.protocols`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from massface.cli import MAIN, MainAndSubcommands, command, exit_help
from massface.errors import InputError
from massface.evaluate.compare_cli import compare_cmd
from massface.evaluate.inputs import INPUT_KINDS, LoadOptions, load_input
from massface.evaluate.protocols import (
    PROTOCOLS,
    PairOptions,
    ProtocolEntry,
    ScaleOptions,
    SearchOptions,
    SplitOptions,
    check_options,
    evaluate_path,
)
from massface.evaluate.protocols.labelled import FeatureOptions
from massface.evaluate.protocols.search import DENSE_MAX_GALLERY, SEARCHES
from massface.evaluate.report import REPORT_KINDS, print_console, write_json, write_markdown
from massface.formats.msame import DTYPES
from massface.io import check_output_file
from massface.report.html import HtmlReport
from massface.scoring.distances import DISTANCES
from massface.scoring.embeddings import FLIPS, NORMALIZATIONS
from massface.scoring.folds import FOLDINGS

app = typer.Typer(cls=MainAndSubcommands, add_completion=False,
                  help="Score face embeddings with the LFW k-fold verification protocol.")


@app.command(MAIN, hidden=True, no_args_is_help=True, epilog=exit_help(InputError))
@command("massface-eval")
def evaluate(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(
        help="Embedding folders, msame/ais_bench output folders, or .npy/.npz arrays in "
             "pair order. Several are compared in one table.", show_default=False)],
    labels: Annotated[Path | None, typer.Option(
        help="Pair labels: actual_issame.txt, pairs.txt (LFW or massface path-pairs), a JSON "
             "list or a .npy array, for inputs without their own (pairs.txt of an embedding "
             "folder, 'issame' in an .npz, actual_issame.txt in an output folder); where "
             "both exist they must agree. A pairs file given with an embedding folder "
             "chooses the pairs scored.")] = None,
    kind: Annotated[str, typer.Option(
        help=f"Input kind: auto (detected), {INPUT_KINDS.choices()}.")] = "auto",
    dtype: Annotated[str, typer.Option(
        help="Raw .bin output type: float32, float16, or auto (from file size and --dim).")
    ] = "auto",
    dim: Annotated[int | None, typer.Option(help="Embedding size, to check or infer dtype.")
                   ] = None,
    output_index: Annotated[int, typer.Option(
        help="Which model output k of <i>_output_<k>.bin to read.")] = 0,
    normalization: Annotated[str, typer.Option(
        help=f"Normalisation: {NORMALIZATIONS.choices()}.")] = "l2",
    flip: Annotated[str, typer.Option(
        help=f"Flip fusion when flip embeddings exist: {FLIPS.choices()}.")] = "none",
    distance: Annotated[str, typer.Option(
        help=f"Distance: {DISTANCES.choices()}.")] = "euclidean",
    subtract_mean: Annotated[bool, typer.Option(
        "--subtract-mean", help="Subtract the training folds' mean embedding per fold.")
    ] = False,
    folds: Annotated[int, typer.Option(help="Number of folds.")] = 10,
    folds_by: Annotated[str, typer.Option(
        help=f"How pairs are dealt into folds: {FOLDINGS.choices()}.")] = "position",
    step: Annotated[float, typer.Option(
        help="Accuracy threshold step (thresholds arange(0, 4, step)).")] = 0.01,
    far: Annotated[float, typer.Option(help="FAR target of VAL@FAR.")] = 1e-3,
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Drop pairs whose image has no output (reported, folds kept "
        "by original pair index) instead of failing.")] = False,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Write every metric, the protocol and input sha256s as JSON.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write a Markdown report.")] = None,
    roc: Annotated[Path | None, typer.Option(help="Write the ROC curves (PNG).")] = None,
    html: Annotated[Path | None, typer.Option(
        help="Write a self-contained HTML report: curves, histograms, per-fold table, "
             "failed pairs with their faces (needs the 'report' extra).")] = None,
    html_worst: Annotated[int, typer.Option(
        help="--html: worst false accepts and false rejects (identification: false alarms "
             "and misses) shown per input.")] = 12,
    protocol: Annotated[str, typer.Option(
        help=f"Protocol: {PROTOCOLS.choices()}. All but lfw score embedding folders as "
             "labelled sets of images.")] = "lfw",
    blufr_config: Annotated[Path | None, typer.Option(
        help="blufr: the BLUFR config .mat (default: data/lfw/blufr/blufr_lfw_config.mat "
             "under $MASSFACE_SHARED, else under ../shared from the working folder).",
        show_default=False)] = None,
    trials: Annotated[str | None, typer.Option(
        help="blufr: score only these trials, e.g. 1 or 1-3,7 (1-based; then only their "
             "test images need embeddings).", show_default=False)] = None,
    trained_on: Annotated[Path | None, typer.Option(
        help="blufr: the massface-train run folder (or training tree) the model was trained "
             "on; a trial whose test people it trained on is refused (exit 2).",
        show_default=False)] = None,
    image_labels: Annotated[Path | None, typer.Option(
        help="identification, all-pairs: '<path> <label>' lines (default: the identity "
             "folder of each image).", show_default=False)] = None,
    gallery: Annotated[Path | None, typer.Option(
        help="identification: gallery list ('<path>' or '<path> <label>' lines).")] = None,
    probe: Annotated[Path | None, typer.Option(
        help="identification: probe list (default: the images not in the gallery).")] = None,
    seed: Annotated[int, typer.Option(help="identification: seed of the split.")] = 0,
    gallery_identities: Annotated[float, typer.Option(
        help="identification split: fraction of the identities with more than "
             "--gallery-images images that are enrolled.")] = 0.5,
    gallery_images: Annotated[int, typer.Option(
        help="identification split: images per enrolled identity.")] = 1,
    search: Annotated[str, typer.Option(
        help=f"identification: auto (dense up to --dense-max-gallery, FAISS above), "
             f"{SEARCHES.choices()}.")] = "auto",
    max_rank: Annotated[int, typer.Option(
        help="identification: CMC to this rank (FAISS: results per probe).")] = 100,
    dense_max_gallery: Annotated[int, typer.Option(
        help="identification: largest gallery searched densely by --search auto.")
    ] = DENSE_MAX_GALLERY,
    ivf_nlist: Annotated[int | None, typer.Option(
        help="faiss-ivf: k-means cells (default: about 4 sqrt(gallery)).",
        show_default=False)] = None,
    ivf_nprobe: Annotated[int, typer.Option(help="faiss-ivf: cells searched per probe.")] = 16,
) -> None:
    """Score INPUTS with the LFW protocol (SPEC section 1) and report every metric."""
    for option, path in (("--json", json_path), ("--markdown", markdown), ("--roc", roc),
                         ("--html", html)):
        if path is not None:
            check_output_file(path, option)
    if html_worst < 0:
        raise InputError(f"--html-worst {html_worst}: must be 0 or more")
    report = HtmlReport(html, html_worst) if html is not None else None
    NORMALIZATIONS.get(normalization, "--normalization")
    FLIPS.get(flip, "--flip")
    # options the user gave (even at their default value) must belong to the protocol
    given = {name: _source(ctx, name) != "DEFAULT"
             for name in ctx.params if name not in ("inputs", "protocol", "normalization",
                                                    "flip", "json_path", "markdown", "html",
                                                    "html_worst")}
    entry = check_options(protocol, given)
    if entry.pairs is not None:
        if entry.report != "pairs":
            _check_fixed_preparation(ctx, protocol)
        DISTANCES.get(distance, "--distance")
        if dtype not in ("auto", *DTYPES):
            raise InputError(f"--dtype {dtype!r}: choose auto, {', '.join(DTYPES)}")
        if kind != "auto":
            INPUT_KINDS.get(kind, "--kind")
        load_opts = LoadOptions(
            labels=labels, kind=kind, dtype=dtype, dim=dim, output_index=output_index,
            allow_missing=allow_missing, n_folds=folds)
        pair_opts = PairOptions(
            flip=flip, normalization=normalization, distance=distance,
            subtract_mean=subtract_mean, n_folds=folds, threshold_step=step, far_target=far,
            folds_by=folds_by)

        def score(path: Path) -> tuple[Any, Any]:
            return _score_pairs(path, entry, load_opts, pair_opts)
    else:
        if search != "auto":
            SEARCHES.get(search, "--search")
        opts = ScaleOptions(
            FeatureOptions(normalization, flip), image_labels, blufr_config, allow_missing,
            SplitOptions(gallery, probe, seed, gallery_identities, gallery_images),
            SearchOptions(search, max_rank, dense_max_gallery, ivf_nlist, ivf_nprobe, seed),
            progress=True, trials=trials, trained_on=trained_on)

        def score(path: Path) -> tuple[Any, Any]:
            return evaluate_path(path, protocol, opts)
    # the one evaluation path: every input scored by its protocol, then one report writer
    run_type = REPORT_KINDS.get(entry.report, "report kind").run
    _write(entry.report, [run_type(*score(path)) for path in inputs], json_path, markdown,
           roc, report)


def _check_fixed_preparation(ctx: typer.Context, protocol: str) -> None:
    """A published pair protocol (``sphereface``) fixes normalisation and flip."""
    for name in ("normalization", "flip", "html"):
        if _source(ctx, name) != "DEFAULT":
            raise InputError(f"--{name}: not an option of --protocol {protocol} (the protocol "
                             "fixes how features are prepared, and has no HTML page)")


def _score_pairs(path: Path, entry: ProtocolEntry, opts: LoadOptions,
                 pair_opts: PairOptions) -> tuple[Any, Any]:
    """One input's pairs scored by the protocol: the one scoring path of pair inputs."""
    data = load_input(path, opts)
    try:
        return data, entry.pairs(data, pair_opts)  # type: ignore[misc]
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc


def _source(ctx: typer.Context, name: str) -> str:
    """Where an option's value came from: DEFAULT, COMMANDLINE, ..."""
    source = ctx.get_parameter_source(name)
    return "DEFAULT" if source is None else source.name


def _write(kind: str, runs: list[Any], json_path: Path | None, markdown: Path | None,
           roc: Path | None, html: HtmlReport | None) -> None:
    """The report of ``runs`` (report kind ``kind``, :data:`REPORT_KINDS`): console, then
    each file asked for. ``--roc`` is an option of the pair protocols with curves of their
    own only (``check_options`` refuses it elsewhere)."""
    console = Console()
    print_console(kind, runs, console)
    if json_path is not None:
        write_json(json_path, kind, runs)
    if markdown is not None:
        write_markdown(markdown, kind, runs)
    plot_roc = REPORT_KINDS.get(kind, "report kind").roc
    if roc is not None and plot_roc is not None:
        plot_roc(roc, runs)
    if html is not None:
        html.write(kind, runs, console)


app.command("compare", no_args_is_help=True, epilog=exit_help(
    InputError, done="a report was made (whatever the cause)"))(compare_cmd)


def main() -> None:
    """Console entry point: ``massface-eval INPUTS...`` and ``massface-eval compare ...``."""
    app(prog_name="massface-eval")
