"""``massface-eval compare REF CANDIDATE``: where two runs' embeddings differ, and why.

REF and CANDIDATE are any two inputs massface-eval reads (embedding folders, msame /
ais_bench output folders, arrays) for the same images, typically the CPU run and the
device run. With pair labels on both sides (their own, or ``--labels``) they are compared
pair slot by pair slot and their accuracies too; without (a gallery run over a plain
image list) image by image, matched by name when both runs name their images
(``a/b`` and ``a/b.jpg`` are one image: :func:`massface.formats.pairs.match_references`),
else by order. The report:

- per-image cosine of CANDIDATE to REF (min, 1st percentile, median) and the worst
  images by name (an image used by several pairs counts once when the names are known:
  from a pairs file or massface-infer's outputs; otherwise every pair slot counts);
- with labels, both LFW accuracies and whether the difference is beyond the fold noise: the paired
  per-fold differences ``d_f`` give a standard error ``std(d_f, ddof=1) / sqrt(folds)``;
  the difference is beyond noise when ``|mean d_f| > 2 SE`` (or, with SE 0, when it is
  not 0);
- with the reference model and its images (``--model --images``), a **cause**: a sample
  of the images is re-embedded under each deployment mistake of
  :mod:`massface.evaluate.hypotheses` and compared with CANDIDATE's embeddings of the
  same images.

The verdict, with its thresholds (``THRESHOLDS`` in the JSON):

- ``none`` when every image's cosine is at least :data:`NONE_COSINE` (1 - 1e-7). Two
  float32 runs of one model on different runtimes or batch sizes agree to about 1e-10;
  the float16 simulation of the shared MobileFaceNet sits near 1 - 3e-6, so the bound
  separates "the same computation" from "a different one, however slightly".
- otherwise a hypothesis *reproduces* CANDIDATE when its median cosine on the sample is
  at least :data:`REPRODUCE_COSINE` (0.999) and its mean gap ``1 - cosine`` is at most
  :data:`EXPLAINS_FRACTION` of the correct pipeline's (it explains most of what the
  correct pipeline does not). The cause is that of the reproducing hypothesis with the
  smallest gap; ``unknown`` when none reproduces (two mistakes at once, a wrong model,
  a cause not in the list). A broken pipeline typically gives cosines far below 0.999
  for every hypothesis but the right one, which reproduces to 1 - 1e-9 or so.
- without ``--model``: ``none`` or ``unknown`` only.

The reference model is also checked against REF on the sample (``reference_check``): a
diagnosis made with a model that does not reproduce REF is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.evaluate.hypotheses import HYPOTHESES, ReferenceModel
from massface.evaluate.inputs import (
    ImageInput,
    LoadOptions,
    PairInput,
    has_pair_labels,
    load_images,
    load_input,
)
from massface.evaluate.labels import read_labels
from massface.formats import msame
from massface.formats.pairs import match_references
from massface.io import read_json
from massface.scoring.distances import cosine_rows
from massface.scoring.verification import verify

NONE_COSINE = 1 - 1e-7
REPRODUCE_COSINE = 0.999
EXPLAINS_FRACTION = 0.5
REF_CHECK_COSINE = 0.9999
THRESHOLDS = {"none_min_cosine": NONE_COSINE, "reproduce_median_cosine": REPRODUCE_COSINE,
              "explains_fraction_of_gap": EXPLAINS_FRACTION,
              "reference_check_median_cosine": REF_CHECK_COSINE}


@dataclass
class Aligned:
    """REF and CANDIDATE, one row per image (or pair slot), with names when known."""

    ref: PairInput | ImageInput
    cand: PairInput | ImageInput
    names: list[str] | None
    rows: np.ndarray  # pair-order row of each image
    cosines: np.ndarray  # per image
    labelled: bool = True  # pairs with labels: the accuracies can be compared
    matched_by: str = "pair order"

    def label(self, k: int) -> str:
        return self.names[self.rows[k]] if self.names else f"slot {int(self.rows[k])}"


def _row_names(data: PairInput) -> list[str] | None:
    """Each pair-order row's image reference: from a pairs file, or massface-infer's
    msame description (``order``); None when the input does not say."""
    labels = data.details.get("labels")
    if labels:
        lab = read_labels(labels)
        if lab.pairs is not None and 2 * len(lab.pairs) == len(data.embeddings):
            return [r for p in lab.pairs for r in (p.a, p.b)]
    if data.kind == "outputs":
        meta = Path(data.name) / msame.WRITER_META
        if meta.is_file():
            order = read_json(meta, "massface-infer output description").get("order")
            if isinstance(order, list) and len(order) == len(data.embeddings):
                return [str(o) for o in order]
    return None


def align(ref_path: Path, cand_path: Path, opts: LoadOptions) -> Aligned:
    """Load both inputs and pair their rows up, refusing inputs that do not match: as
    pairs when both have labels (or ``--labels``), else image by image (a gallery run).

    Raw device outputs do not say their width: without ``--dim`` the other input's is
    used (768 bytes are 192 float32 or 384 float16 values)."""
    if has_pair_labels(ref_path, opts) and has_pair_labels(cand_path, opts):
        return _align_pairs(ref_path, cand_path, opts)
    return _align_images(ref_path, cand_path, opts)


def _align_images(ref_path: Path, cand_path: Path, opts: LoadOptions) -> Aligned:
    """Two runs of the same images without labels: rows matched by name when both runs
    name their images (:func:`massface.formats.pairs.match_references`), else by order."""
    ref = load_images(ref_path, opts)
    cand_opts = opts if opts.dim is not None else replace(opts, dim=ref.embeddings.shape[1])
    cand = load_images(cand_path, cand_opts)
    n_ref, n_cand = len(ref.embeddings), len(cand.embeddings)
    if ref.embeddings.shape[1] != cand.embeddings.shape[1]:
        raise InputError(f"{cand_path}: embeddings of width {cand.embeddings.shape[1]}, but "
                         f"{ref_path}'s are {ref.embeddings.shape[1]} wide: not the same model "
                         "output")
    if ref.names and cand.names:
        rows = match_references(ref.names, cand.names, cand_path)
        if (rows < 0).any() or n_cand != n_ref:
            k = int(np.argmax(rows < 0)) if (rows < 0).any() else None
            first = f"; first missing: {ref.names[k]}" if k is not None else ""
            raise InputError(f"{cand_path}: {n_cand} images, {int((rows >= 0).sum())} of "
                             f"{ref_path}'s {n_ref} found by name{first}: compare runs of "
                             "the same images")
        cand, names, how = cand.reordered(rows), ref.names, "name"
    else:
        if n_cand != n_ref:
            raise InputError(f"{cand_path}: {n_cand} rows but {ref_path} has {n_ref}: not "
                             "the same images")
        names, how = ref.names or cand.names, "order (a run does not name its images)"
    cos = cosine_rows(ref.embeddings, cand.embeddings)
    return Aligned(ref, cand, names, np.arange(n_ref), cos, labelled=False, matched_by=how)


def _align_pairs(ref_path: Path, cand_path: Path, opts: LoadOptions) -> Aligned:
    """Two runs scored as pairs: the same labels, the same images in one order."""
    ref = load_input(ref_path, opts)
    cand_opts = opts if opts.dim is not None else replace(opts, dim=ref.embeddings.shape[1])
    cand = load_input(cand_path, cand_opts)
    if ref.embeddings.shape != cand.embeddings.shape:
        raise InputError(f"{cand_path}: {cand.embeddings.shape[0]} rows of width "
                         f"{cand.embeddings.shape[1]}, but {ref_path} has "
                         f"{ref.embeddings.shape[0]} of width {ref.embeddings.shape[1]}: "
                         "not the same images")
    if (ref.issame != cand.issame).any():
        raise InputError(f"{cand_path}: its pair labels differ from {ref_path}'s (first at "
                         f"pair {int(np.argmax(ref.issame != cand.issame))})")
    names_r, names_c = _row_names(ref), _row_names(cand)
    if names_r and names_c:  # one row per pair slot on both sides (shapes are equal)
        # slot k names one image on both sides: cand's slot k is the first slot of the
        # image that REF's slot k names (match_references answers first slots)
        rows = match_references(names_r, names_c, cand_path)
        bad = np.flatnonzero(rows != match_references(names_c, names_c, cand_path))
    if names_r and names_c and bad.size:
        k = int(bad[0])
        raise InputError(f"{cand_path}: row {k} is {names_c[k]} but {ref_path}'s row {k} is "
                         f"{names_r[k]}: the inputs must list the same images in one order")
    names = names_r or names_c
    if names:
        first: dict[str, int] = {}
        for i, n in enumerate(names):
            first.setdefault(n, i)
        rows = np.fromiter(first.values(), dtype=np.int64)
    else:
        rows = np.arange(len(ref.embeddings))
    cos = cosine_rows(ref.embeddings[rows], cand.embeddings[rows])
    return Aligned(ref, cand, names, rows, cos, matched_by="pair order, names checked"
                   if names_r and names_c else "pair order")


def accuracy_difference(ref: PairInput, cand: PairInput) -> dict[str, Any]:
    """Both LFW accuracies and whether they differ beyond the fold noise."""
    r = verify(ref.embeddings, ref.issame, fold_ids=ref.fold_ids)
    c = verify(cand.embeddings, cand.issame, fold_ids=cand.fold_ids)
    d = np.asarray(c.fold_accuracy, np.float64) - np.asarray(r.fold_accuracy, np.float64)
    diff = float(c.accuracy - r.accuracy)
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    beyond = abs(diff) > 2 * se if se > 0 else diff != 0
    return {"reference": float(r.accuracy), "reference_std": float(r.accuracy_std),
            "candidate": float(c.accuracy), "candidate_std": float(c.accuracy_std),
            "difference": diff, "fold_differences": [float(x) for x in d],
            "standard_error": se, "beyond_fold_noise": bool(beyond),
            "rule": "|mean fold difference| > 2 x its standard error"}


def _stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = cosine_rows(a, b)
    return {"median_cosine": float(np.median(cos)), "min_cosine": float(cos.min()),
            "mean_gap": float(np.mean(1.0 - cos))}


def sample_rows(n: int, size: int) -> np.ndarray:
    """``size`` image indices spread evenly over ``0..n-1`` (all when n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, size).round().astype(np.int64))


def hypotheses_evidence(aligned: Aligned, model: ReferenceModel, sample: int
                        ) -> tuple[list[dict], dict, dict, list[str]]:
    """(evidence per hypothesis, correct pipeline vs CANDIDATE, correct vs REF, names)."""
    if not aligned.names:
        raise InputError(f"{aligned.cand.name}: the images are not named (no pairs file, "
                         "no massface-infer.json order), so they cannot be re-embedded: "
                         "pass --labels with the LFW pairs.txt the run used")
    picked = sample_rows(len(aligned.rows), sample)
    names = [aligned.names[aligned.rows[k]] for k in picked]
    cand = aligned.cand.embeddings[aligned.rows[picked]]
    ref = aligned.ref.embeddings[aligned.rows[picked]]
    correct = model.embed(names, None)
    baseline, ref_check = _stats(correct, cand), _stats(correct, ref)
    evidence = []
    for name in HYPOTHESES:
        h = HYPOTHESES.get(name)
        row = {"hypothesis": name, "cause": h.cause,
               "description": HYPOTHESES.description(name)}
        emb = model.embed(names, name)
        if emb is None:
            evidence.append({**row, "tried": False, "reason": model.fp16_reason})
            continue
        s = _stats(emb, cand)
        s["reproduces"] = bool(s["median_cosine"] >= REPRODUCE_COSINE
                               and s["mean_gap"] <= EXPLAINS_FRACTION * baseline["mean_gap"])
        evidence.append({**row, "tried": True, **s})
    return evidence, baseline, ref_check, names


def verdict(aligned: Aligned, evidence: list[dict] | None) -> tuple[str, str]:
    """(cause, one-sentence explanation)."""
    worst = float(aligned.cosines.min())
    if worst >= NONE_COSINE:
        return "none", (f"they agree: every image's cosine is >= {NONE_COSINE} "
                        f"(min {worst:.10f})")
    if evidence is None:
        return "unknown", ("they differ; give the reference model and its images (--model "
                           "--images) for a diagnosis")
    found = [e for e in evidence if e.get("reproduces")]
    if not found:
        best = max((e for e in evidence if e.get("tried")), key=lambda e: e["median_cosine"])
        return "unknown", (f"no single mistake reproduces the candidate (closest: "
                           f"{best['hypothesis']}, median cosine {best['median_cosine']:.6f}"
                           f" < {REPRODUCE_COSINE})")
    best = min(found, key=lambda e: e["mean_gap"])
    return best["cause"], (f"{best['description']} reproduces the candidate: median "
                           f"cosine {best['median_cosine']:.9f} on the sample")


def compare(ref_path: Path, cand_path: Path, opts: LoadOptions, *,
            model: ReferenceModel | None = None, sample: int = 32, worst: int = 10
            ) -> dict[str, Any]:
    """The comparison report (a JSON-ready dict; see the module docstring)."""
    aligned = align(Path(ref_path), Path(cand_path), opts)
    return compare_aligned(aligned, ref_path, cand_path, model=model, sample=sample,
                           worst=worst)


def compare_aligned(aligned: Aligned, ref_path: Path, cand_path: Path, *,
                    model: ReferenceModel | None = None, sample: int = 32, worst: int = 10
                    ) -> dict[str, Any]:
    """:func:`compare` of inputs already loaded and paired up by :func:`align`."""
    cos = aligned.cosines
    order = np.argsort(cos, kind="stable")[:worst]
    report: dict[str, Any] = {
        "reference": str(ref_path), "candidate": str(cand_path),
        "images": int(cos.size), "per": "image" if aligned.names else "pair slot",
        "min_cosine": float(cos.min()), "p1_cosine": float(np.percentile(cos, 1)),
        "median_cosine": float(np.median(cos)),
        "worst": [{"path": aligned.label(int(k)), "cosine": float(cos[k])} for k in order],
        "matched_by": aligned.matched_by,
        "accuracy": (accuracy_difference(aligned.ref, aligned.cand)  # type: ignore[arg-type]
                     if aligned.labelled else None),
        "thresholds": THRESHOLDS,
    }
    evidence = None
    if model is not None and cos.min() < NONE_COSINE:
        evidence, baseline, ref_check, names = hypotheses_evidence(aligned, model, sample)
        report["baseline"] = {"description": "the correct pipeline vs the candidate",
                              **baseline}
        report["reference_check"] = {
            "description": "the reference model's correct pipeline vs REF",
            **ref_check, "ok": ref_check["median_cosine"] >= REF_CHECK_COSINE}
        report["sample"] = {"images": len(names), "names": names,
                            "model": str(model.path), "preprocessing": model.preprocessing}
    report["cause"], report["verdict"] = verdict(aligned, evidence)
    report["evidence"] = evidence or []
    return report
