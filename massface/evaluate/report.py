"""Reports of one or several scored runs: rich console tables, Markdown, JSON, ROC plot.

A run is an input (where the embeddings and labels came from, with sha256 digests) plus
its :class:`VerificationResult`. Every report names the protocol that produced it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from massface import __version__, io
from massface.evaluate.inputs import PairInput
from massface.evaluate.protocols.base import ProtocolResult
from massface.evaluate.protocols.labelled import FeatureSet
from massface.optional import require
from massface.registry import Registry
from massface.scoring.result import VerificationResult

REPORT_FORMAT = "massface-eval"
REPORT_VERSION = 1


@dataclass
class Run:
    """One scored input."""

    input: PairInput
    result: VerificationResult

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input.to_dict(), **self.result.to_dict()}


def _pct(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def _tpr_header(target: float) -> str:
    return f"TPR@FAR={target:g} %"


def summary_rows(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (one row per run)."""
    targets = [t.far_target for t in runs[0].result.tpr_at_far]
    far = runs[0].result.protocol.far_target
    header = ["run", "pairs", "accuracy %", "± std", f"VAL@FAR={far:g} %", "± std", "FAR %",
              "AUC", "EER %", *[_tpr_header(t) for t in targets]]
    rows = []
    for run in runs:
        r = run.result
        pairs = f"{r.n_pairs}"
        if run.input.dropped_pairs:
            pairs += f" ({len(run.input.dropped_pairs)} dropped)"
        cells = [run.input.name, pairs, _pct(r.accuracy), _pct(r.accuracy_std), _pct(r.val),
                 _pct(r.val_std), _pct(r.far, 4), f"{r.auc:.6f}", _pct(r.eer)]
        for t in r.tpr_at_far:
            cells.append(_pct(t.tpr) if t.status == "ok" else t.status)
        rows.append(cells)
    return header, rows


def fold_rows(run: Run) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one run's per-fold table."""
    r = run.result
    header = ["fold", "pairs", "threshold", "accuracy %", "VAL threshold", "VAL %", "FAR %"]
    rows = [[str(f + 1), str(int(r.fold_sizes[f])), f"{r.fold_threshold[f]:.4f}",
             _pct(r.fold_accuracy[f]), f"{r.fold_val_threshold[f]:.6f}", _pct(r.fold_val[f]),
             _pct(r.fold_far[f], 4)] for f in range(r.protocol.n_folds)]
    return header, rows


def protocol_lines(runs: list[Run]) -> list[str]:
    lines = [f"Protocol: {runs[0].result.protocol.describe()}"]
    for run in runs:
        r = run.result
        if r.protocol.far_target * r.n_diff < 1:
            lines.append(f"{run.input.name}: VAL@FAR={r.protocol.far_target:g} rests on only "
                         f"{r.n_diff} different-person pairs (fewer than 1/FAR): the FAR "
                         "target cannot be resolved")
        if run.input.dropped_pairs:
            lines.append(f"{run.input.name}: {len(run.input.dropped_pairs)} of "
                         f"{run.input.n_pairs_total} pairs dropped (missing images); the "
                         "others keep the fold of their original pair index")
    return lines


def inference_lines(runs: list[Run]) -> list[str]:
    """``run: embedded by <backend> in <precision>`` for inputs whose producer recorded it."""
    lines = []
    for run in runs:
        d = run.input.details
        if "precision" in d:
            lines.append(f"{run.input.name}: embedded by {d.get('backend', '?')} in "
                         f"{d['precision']}" + (f" ({d['backend_choice']})"
                                                if d.get("backend_choice") else ""))
    return lines


def print_report(runs: list[Run], console: Any) -> None:
    """Rich tables: metrics (rows) by run (columns), and the folds when there is one run."""
    from rich.table import Table

    header, rows = summary_rows(runs)
    table = Table(title="LFW-protocol verification")
    table.add_column("metric", justify="left")
    for row in rows:
        table.add_column(row[0], justify="right", overflow="fold")
    for i, name in enumerate(header[1:], start=1):
        table.add_row(name, *[row[i] for row in rows])
    console.print(table)
    console.print(protocol_lines(runs)[0], highlight=False, soft_wrap=True)
    for line in inference_lines(runs):
        console.print(line, highlight=False, soft_wrap=True)
    if len(runs) == 1:
        header, rows = fold_rows(runs[0])
        folds = Table(title="per fold")
        for h in header:
            folds.add_column(h, justify="right")
        for row in rows:
            folds.add_row(*row)
        console.print(folds)
    for line in protocol_lines(runs)[1:]:
        console.print(f"[yellow]{line}[/yellow]", highlight=False, soft_wrap=True)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    out = ["| " + " | ".join(esc(h) for h in header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def markdown_report(runs: list[Run]) -> str:
    header, rows = summary_rows(runs)
    parts = ["# LFW-protocol verification\n"]
    parts += [f"\n{line}\n" for line in inference_lines(runs)]
    parts += ["\n" if parts[1:] else "", _markdown_table(header, rows)]
    parts += [f"\n{line}\n" for line in protocol_lines(runs)]
    for run in runs:
        header, rows = fold_rows(run)
        parts.append(f"\n## {run.input.name}: per fold\n\n")
        parts.append(_markdown_table(header, rows))
        digests = run.input.files
        if "outputs_manifest_sha256" in run.input.details:
            digests = {**digests, f"{run.input.details['output_folder']} (manifest)":
                       run.input.details["outputs_manifest_sha256"]}
        parts.append("\nInputs (sha256):\n\n")
        parts += [f"- `{path}`: `{digest}`\n" for path, digest in digests.items()]
    return "".join(parts)


def report_dict(runs: list[Run]) -> dict[str, Any]:
    """The JSON report: ``runs`` always; with one run its metrics are also at the top level."""
    out: dict[str, Any] = {"format": REPORT_FORMAT, "version": REPORT_VERSION,
                           "massface_version": __version__}
    dicts = [run.to_dict() for run in runs]
    if len(dicts) == 1:
        out.update(dicts[0])
    out["runs"] = dicts
    return out


def write_roc(path: Path, runs: list[Run]) -> None:
    """ROC curves of every run, TPR against log-scale FAR (Agg backend, no display)."""
    require("matplotlib", extra="report", purpose="--roc (plots)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for run in runs:
        r = run.result
        keep = r.fpr > 0
        ax.plot(r.fpr[keep], r.tpr[keep], drawstyle="steps-post",
                label=f"{run.input.name} (acc {_pct(r.accuracy, 2)}%, AUC {r.auc:.4f})")
    ax.set_xscale("log")
    ax.set_ylim(top=1.002)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TPR)")
    ax.set_title("ROC (mean over test folds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# --- labelled-set protocols (blufr, identification, all-pairs) -------------------------


@dataclass
class ProtocolRun:
    """One input scored by a protocol other than the LFW default: an embedding folder as a
    labelled set, or pair inputs (``sphereface``)."""

    input: FeatureSet | PairInput
    result: ProtocolResult

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input.to_dict(), **self.result.to_dict()}


def protocol_title(runs: list[ProtocolRun]) -> str:
    return {"blufr": "BLUFR (LFW) verification and open-set identification",
            "identification": "1:N identification",
            "all-pairs": "All-pairs verification",
            "sphereface": "LFW by the SphereFace/CosFace protocol"}.get(
                runs[0].result.protocol_name, runs[0].result.protocol_name)


def protocol_summary(runs: list[ProtocolRun]) -> tuple[list[str], list[list[str]]]:
    """Headline figures: header (metric, run names...) and one row per metric."""
    header = ["metric", *[Path(run.input.path).name or str(run.input.path) for run in runs]]
    heads = [dict(run.result.headline()) for run in runs]
    metrics = list(dict.fromkeys(m for h in heads for m in h))
    return header, [[m, *[h.get(m, "-") for h in heads]] for m in metrics]


def protocol_run_lines(runs: list[ProtocolRun]) -> list[str]:
    lines = [f"Protocol: {runs[0].result.describe()}"]
    for run in runs[1:]:
        if run.result.describe() != runs[0].result.describe():
            lines.append(f"{run.input.path}: protocol {run.result.describe()}")
    return lines


def print_protocol_report(runs: list[ProtocolRun], console: Any) -> None:
    """Headline table (metrics by run); with one run also its brief tables; notes."""
    from rich.table import Table

    def show(title: str, header: list[str], rows: list[list[str]]) -> None:
        table = Table(title=title)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)

    show(protocol_title(runs), *protocol_summary(runs))
    for line in protocol_run_lines(runs):
        console.print(line, highlight=False, soft_wrap=True)
    if len(runs) == 1:
        for t in runs[0].result.tables():
            if t.brief:
                show(t.title, t.header, t.rows)
    for run in runs:
        for note in run.result.notes():
            console.print(f"[yellow]{run.input.path}: {note}[/yellow]", highlight=False,
                          soft_wrap=True)


def protocol_markdown(runs: list[ProtocolRun]) -> str:
    parts = [f"# {protocol_title(runs)}\n\n", _markdown_table(*protocol_summary(runs))]
    parts += [f"\n{line}\n" for line in protocol_run_lines(runs)]
    for run in runs:
        name = run.input.path
        parts += [f"\n{name}: {note}\n" for note in run.result.notes()]
        for t in run.result.tables():
            parts.append(f"\n## {name}: {t.title}\n\n")
            parts.append(_markdown_table(t.header, t.rows))
        parts.append("\nInputs (sha256):\n\n")
        parts += [f"- `{path}`: `{digest}`\n" for path, digest in run.input.files.items()]
    return "".join(parts)


def protocol_report_dict(runs: list[ProtocolRun]) -> dict[str, Any]:
    """The JSON report: ``protocol`` and ``runs``; with one run its figures at the top too."""
    out: dict[str, Any] = {"format": REPORT_FORMAT, "version": REPORT_VERSION,
                           "massface_version": __version__,
                           "protocol_name": runs[0].result.protocol_name}
    dicts = [run.to_dict() for run in runs]
    if len(dicts) == 1:
        out.update(dicts[0])
    out["runs"] = dicts
    return out


# --- the one set of writers: every protocol's runs, by the report kind it names ----------


@dataclass(frozen=True)
class ReportKind:
    """How the runs of a protocol's report kind (``ProtocolEntry.report``) are rendered:
    the run type, the console tables, the Markdown text, the JSON dict and, for kinds
    with curves of their own, the ``--roc`` plot. Its HTML page is the entry of the same
    name in :data:`massface.report.PAGES`."""

    run: type
    console: Callable[[list[Any], Any], None]
    markdown: Callable[[list[Any]], str]
    json: Callable[[list[Any]], dict[str, Any]]
    roc: Callable[[Path, list[Any]], None] | None = None


REPORT_KINDS: Registry[ReportKind] = Registry("report kind")
REPORT_KINDS.register("pairs", ReportKind(Run, print_report, markdown_report, report_dict,
                                          write_roc),
                      description="LFW pairs: per-fold table, ROC, failed pairs")
REPORT_KINDS.register("protocol", ReportKind(ProtocolRun, print_protocol_report,
                                             protocol_markdown, protocol_report_dict),
                      description="a protocol result's headline, tables and notes")


def print_console(kind: str, runs: list[Any], console: Any) -> None:
    REPORT_KINDS.get(kind, "report kind").console(runs, console)


def write_json(path: Path, kind: str, runs: list[Any]) -> None:
    io.write_json(path, REPORT_KINDS.get(kind, "report kind").json(runs))


def write_markdown(path: Path, kind: str, runs: list[Any]) -> None:
    io.write_text(path, REPORT_KINDS.get(kind, "report kind").markdown(runs))
