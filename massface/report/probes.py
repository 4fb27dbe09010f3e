"""Identification probes on the page of ``--protocol identification``.

Every probe was searched in the gallery (:mod:`massface.evaluate.protocols.search`); its
outcome gives the score histograms and the two galleries of failures, at the open-set
threshold of FAR = 1 % (the headline DIR's):

- **false alarms**: impostor probes (identity not enrolled) whose best gallery score is
  at or above the threshold, highest first, each with the gallery image it matched;
- **misses**: genuine probes not identified at rank 1, largest margin of the wrong best
  match over the mate first (mates beyond the searched depth first of all), each with
  that wrong match. Scores are cosine similarities: higher is more alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from massface.evaluate.protocols.far import OPEN_SET_FARS, far_index
from massface.evaluate.protocols.identification import DIR_FAR, IdentificationResult
from massface.report.page import Card, Face, Gallery
from massface.report.plots import GENUINE_COLOUR, IMPOSTOR_COLOUR, Axes, HistogramChart, VLine
from massface.report.thumbs import ImageSource


@dataclass
class ProbeFailure:
    probe: str
    match: str            # the best gallery entry
    top_score: float
    mate_score: float | None
    rank: int | None      # None: an impostor probe, or a mate beyond the searched depth


def open_set_threshold(r: IdentificationResult) -> float | None:
    """The open-set threshold at FAR = 1 % (None without impostor probes)."""
    if r.open_set is None:
        return None
    return float(r.open_set.thresholds.threshold[far_index(OPEN_SET_FARS, DIR_FAR)])


def probe_failures(r: IdentificationResult, worst: int | None = None
                   ) -> tuple[list[ProbeFailure], list[ProbeFailure]]:
    """(false alarms at the FAR = 1 % threshold, misses at rank 1), worst first."""
    o = r.outcomes
    if o is None:
        return [], []
    thr = open_set_threshold(r)
    alarms = np.flatnonzero(~o.genuine & (o.top_score >= thr)) if thr is not None \
        else np.array([], dtype=np.int64)
    alarms = alarms[np.argsort(-o.top_score[alarms], kind="stable")]
    missed = np.flatnonzero(o.genuine & (o.rank != 1))
    known = o.known[missed]
    margin = np.where(known, o.top_score[missed] - np.nan_to_num(o.mate_score[missed]),
                      np.inf)
    missed = missed[np.argsort(-margin, kind="stable")]

    def failure(i: int) -> ProbeFailure:
        known_i = bool(o.known[i])
        return ProbeFailure(r.probe_keys[i], r.gallery_keys[int(o.top_index[i])],
                            float(o.top_score[i]),
                            float(o.mate_score[i]) if known_i else None,
                            int(o.rank[i]) if known_i else None)

    return [failure(int(i)) for i in alarms[:worst]], [failure(int(i)) for i in
                                                        missed[:worst]]


def score_histogram(r: IdentificationResult, index: int, name: str) -> HistogramChart | None:
    """Genuine probes' mate scores against impostor probes' best scores."""
    o = r.outcomes
    if o is None:
        return None
    thr = open_set_threshold(r)
    lines = [] if thr is None else [VLine(thr, f"threshold at FAR {DIR_FAR:g}")]
    return HistogramChart(f"probes-{index}", f"{name}: probe scores",
                          Axes("cosine similarity", "density"),
                          [("genuine probes: mate score", o.mate_score[o.known],
                            GENUINE_COLOUR),
                           ("impostor probes: best score", o.top_score[~o.genuine],
                            IMPOSTOR_COLOUR)], lines=lines)


def _card(f: ProbeFailure, images: ImageSource, thr: float | None) -> Card:
    faces = [Face(f.probe, images.thumbnail(f.probe)), Face(f.match, images.thumbnail(f.match))]
    facts = [("best score", f"{f.top_score:.4f}")]
    if f.mate_score is not None:
        facts += [("mate", f"{f.mate_score:.4f}"), ("rank", str(f.rank))]
    elif thr is not None and f.rank is None and f.top_score >= thr:
        facts.append((">=", f"{thr:.4f}"))
    return Card("probe · best gallery match", faces, facts)


def probe_galleries(r: IdentificationResult, images: ImageSource, worst: int
                    ) -> list[Gallery]:
    alarms, missed = probe_failures(r, worst)
    all_alarms, all_missed = probe_failures(r)
    thr = open_set_threshold(r)
    where = "" if images.problem is None else f" No face images: {images.problem}."
    out = []
    if thr is not None:
        out.append(Gallery(f"Worst false alarms ({len(alarms)} of {len(all_alarms)})",
                           [_card(f, images, thr) for f in alarms],
                           f"Impostor probes (identity not enrolled) whose best score is at "
                           f"or above the FAR {DIR_FAR:g} threshold {thr:.4f}, highest "
                           f"first.{where}", "No false alarms."))
    out.append(Gallery(f"Worst misses at rank 1 ({len(missed)} of {len(all_missed)})",
                       [_card(f, images, None) for f in missed],
                       "Genuine probes whose best match is another identity, largest margin "
                       f"over the mate first.{where}", "Every genuine probe is identified "
                       "at rank 1."))
    return out
