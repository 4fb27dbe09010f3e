"""BLUFR on LFW (Liao et al., IJCB 2014): large-scale verification and open-set
identification over 10 trials, exactly as ``../shared/docs/SPEC.md`` section 5 says.

Per trial: every unordered pair of the test set (about 9,700 images: 157,000 genuine and
47 million impostor pairs) gives the verification rate VR at the FAR points 0, 1e-8 ..
9e-1, 1; the gallery (1,000 images) x probe (about 8,700) scores give DIR at FAR 0, 1e-4
.. 9e-1, 1 and ranks 1..10, 20..100. Reported: per point the mean and sample std over the
trials; headline ``vr_report`` = mean - std of VR at FAR 0.1%, ``dir_report`` = mean - std
of DIR at FAR 1%, rank 1.

Images are matched to the config's ``imageList`` by file name without extension (an
embedding folder of ``massface-infer --images LFW_ROOT`` holds
``Aaron_Eckhart/Aaron_Eckhart_0001.jpg``); labels come from the config. Speed: each trial
scores its pairs in label-sorted row blocks straight into one float32 buffer
(:mod:`.pairs`) and finds the thresholds by selection (:mod:`.order_stats`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from massface.errors import InputError
from massface.evaluate.protocols.base import ReportTable, Timing, floats, pct
from massface.evaluate.protocols.blufr_config import BlufrConfig, match_images
from massface.evaluate.protocols.far import (
    OPEN_SET_FARS,
    RANKS,
    VERIFICATION_FARS,
    accept_rates,
    far_index,
    far_thresholds,
    mean_std,
)
from massface.evaluate.protocols.labelled import FeatureOptions, FeatureSet
from massface.evaluate.protocols.openset import open_set, usable_ranks
from massface.evaluate.protocols.order_stats import kth_largest
from massface.evaluate.protocols.pairs import all_scores, group_by_label, pair_counts
from massface.evaluate.protocols.search import SearchOptions, search

VR_FAR = 1e-3
DIR_FAR = 1e-2
DIR_RANK = 1


@dataclass
class Curves:
    """A rate per trial at FAR points (and ranks), with the thresholds used."""

    far_points: np.ndarray
    far: np.ndarray          # [trial, far]: k / Nimp
    threshold: np.ndarray    # [trial, far]
    rate: np.ndarray         # [trial, far] (verification) or [trial, rank, far] (DIR)
    ranks: list[int] | None = None

    @property
    def mean(self) -> np.ndarray:
        return mean_std(self.rate)[0]

    @property
    def std(self) -> np.ndarray:
        return mean_std(self.rate)[1]

    def to_dict(self, rate_name: str) -> dict[str, Any]:
        d: dict[str, Any] = {"far_points": floats(self.far_points)}
        if self.ranks is not None:
            d["ranks"] = self.ranks
        d.update({f"{rate_name}_mean": floats(self.mean), f"{rate_name}_std": floats(self.std),
                  f"{rate_name}_mean_minus_std": floats(self.mean - self.std),
                  rate_name: floats(self.rate), "far": floats(self.far),
                  "threshold": floats(self.threshold)})
        return d


@dataclass
class BlufrTrial:
    """Sizes of one trial (after any missing images were left out)."""

    test_images: int
    genuine_pairs: int
    impostor_pairs: int
    gallery: int
    genuine_probes: int
    impostor_probes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class BlufrProtocol:
    """Every setting that changes the BLUFR numbers."""

    config: str
    config_sha256: str
    n_trials: int
    features: FeatureOptions
    allow_missing: bool
    numbers: tuple[int, ...] = ()   # the trials scored (1-based); empty: all of the file's

    def describe(self) -> str:
        which = (f"trial(s) {','.join(map(str, self.numbers))}" if self.numbers
                 else f"{self.n_trials} trials")
        return (f"BLUFR ({which} of {Path(self.config).name}), "
                f"{self.features.describe()}, VR at FAR 0 and 1e-8..1, DIR at FAR 0 and "
                "1e-4..1 x ranks 1..100, mean and sample std over trials")

    def to_dict(self) -> dict[str, Any]:
        return {"name": "blufr", "config": self.config, "config_sha256": self.config_sha256,
                "trials": self.n_trials, "trial_numbers": list(self.numbers) or None,
                **self.features.to_dict(),
                "verification_far_points": list(VERIFICATION_FARS),
                "open_set_far_points": list(OPEN_SET_FARS), "ranks": list(RANKS),
                "headline": {"vr": f"mean - std of VR at FAR={VR_FAR:g}",
                             "dir": f"mean - std of DIR at FAR={DIR_FAR:g}, rank {DIR_RANK}"},
                "ties": "VR: genuine score >= threshold; rank: stable sort of the gallery",
                "allow_missing": self.allow_missing, "description": self.describe()}


@dataclass
class BlufrResult:
    """BLUFR figures: headline, per trial, and the full curves."""

    protocol: BlufrProtocol
    verification: Curves
    open_set: Curves
    trials: list[BlufrTrial]
    numbers: list[int] = field(default_factory=list)  # 1-based number of each trial row
    missing_images: list[str] = field(default_factory=list)
    unused_embeddings: int = 0
    timing: Timing = field(default_factory=Timing)
    protocol_name: str = "blufr"

    @property
    def vr_trials(self) -> np.ndarray:
        return self.verification.rate[:, far_index(VERIFICATION_FARS, VR_FAR)]

    @property
    def dir_trials(self) -> np.ndarray:
        r = self.open_set.ranks.index(DIR_RANK)  # type: ignore[union-attr]
        return self.open_set.rate[:, r, far_index(OPEN_SET_FARS, DIR_FAR)]

    @staticmethod
    def _report(trials: np.ndarray) -> float:
        mean, std = mean_std(trials[:, None])
        return float(mean[0] - std[0])

    @property
    def vr_report(self) -> float:
        return self._report(self.vr_trials)

    @property
    def dir_report(self) -> float:
        return self._report(self.dir_trials)

    def describe(self) -> str:
        return self.protocol.describe()

    def headline(self) -> list[tuple[str, str]]:
        vr, dr = self.vr_trials, self.dir_trials
        return [("trials", str(len(self.trials))),
                (f"VR@FAR={VR_FAR:g} % (mean - std)", pct(self.vr_report)),
                ("VR mean ± std %", f"{pct(vr.mean())} ± {pct(_std(vr))}"),
                (f"DIR@FAR={DIR_FAR:g} rank {DIR_RANK} % (mean - std)", pct(self.dir_report)),
                ("DIR mean ± std %", f"{pct(dr.mean())} ± {pct(_std(dr))}")]

    def tables(self) -> list[ReportTable]:
        return [*self._trial_tables(), self._vr_table(), self._dir_table(),
                self._rank_table()]

    def _trial_tables(self) -> list[ReportTable]:
        num = self.numbers or list(range(1, len(self.trials) + 1))
        brief = [[str(num[t]), pct(self.vr_trials[t]), pct(self.dir_trials[t]),
                  str(tr.test_images), str(tr.genuine_pairs), str(tr.impostor_pairs)]
                 for t, tr in enumerate(self.trials)]
        full = [[str(num[t]), pct(self.vr_trials[t]), pct(self.dir_trials[t]),
                 f"{tr.test_images:,}", f"{tr.genuine_pairs:,}", f"{tr.impostor_pairs:,}",
                 f"{tr.gallery:,}", f"{tr.genuine_probes:,}", f"{tr.impostor_probes:,}",
                 f"{tr.seconds:.2f}"] for t, tr in enumerate(self.trials)]
        head = ["trial", f"VR@{VR_FAR:g} %", f"DIR@{DIR_FAR:g} r{DIR_RANK} %", "test images",
                "genuine pairs", "impostor pairs"]
        return [ReportTable("per trial", head, brief),
                ReportTable("per trial, in full", [*head, "gallery", "genuine probes",
                                                   "impostor probes", "seconds (overlapping)"],
                            full, brief=False)]

    def _vr_table(self) -> ReportTable:
        v = self.verification
        rows = [[f"{f:g}", pct(m), pct(s), pct(m - s), f"{v.far[:, i].mean():.3g}"]
                for i, (f, m, s) in enumerate(zip(v.far_points, v.mean, v.std, strict=True))
                if _shown(f)]
        return ReportTable("verification (VR by FAR)", ["FAR", "VR mean %", "std %",
                           "mean - std %", "actual FAR (mean k/Nimp)"], rows, brief=False)

    def _dir_table(self) -> ReportTable:
        o = self.open_set
        shown = [r for r in (1, 5, 10, 20, 50, 100) if r in (o.ranks or [])]
        header = ["FAR", *[f"DIR r{r} % (mean ± std)" for r in shown]]
        rows = []
        for i, f in enumerate(o.far_points):
            if _shown(f):
                rows.append([f"{f:g}", *[f"{pct(o.mean[o.ranks.index(r), i])} ± "  # type: ignore
                                         f"{pct(o.std[o.ranks.index(r), i])}" for r in shown]])
        return ReportTable("open-set identification (DIR by FAR)", header, rows, brief=False)

    def _rank_table(self) -> ReportTable:
        o = self.open_set
        i = far_index(OPEN_SET_FARS, DIR_FAR)
        rows = [[str(r), pct(o.mean[j, i]), pct(o.std[j, i])]
                for j, r in enumerate(o.ranks or [])]
        return ReportTable(f"DIR at FAR={DIR_FAR:g} by rank", ["rank", "DIR mean %", "std %"],
                           rows, brief=False)

    def notes(self) -> list[str]:
        out = []
        if self.missing_images:
            out.append(f"{len(self.missing_images)} config image(s) had no embedding and were "
                       f"left out of every trial (--allow-missing), e.g. "
                       f"{self.missing_images[0]}")
        if self.unused_embeddings:
            out.append(f"{self.unused_embeddings} embedded image(s) are not in the config and "
                       "were not used")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol.to_dict(),
                "vr_report": self.vr_report, "dir_report": self.dir_report,
                "vr_trials": floats(self.vr_trials), "dir_trials": floats(self.dir_trials),
                "trial_numbers": list(self.numbers),
                "verification": self.verification.to_dict("vr"),
                "open_set": self.open_set.to_dict("dir"),
                "trials": [t.to_dict() for t in self.trials],
                "missing_images": self.missing_images,
                "unused_embeddings": self.unused_embeddings,
                "seconds": self.timing.to_dict()}


def _std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if x.size > 1 else float("nan")


def _shown(far: float) -> bool:
    """FAR points in the console/Markdown tables: 0, 1 and the powers of ten."""
    return far in (0.0, 1.0) or abs(np.log10(far) - round(np.log10(far))) < 1e-9


def _present(idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return idx[rows[idx] >= 0]


@dataclass
class _Scored:
    """A trial's pair scores (stage 1), waiting for its thresholds (stage 2)."""

    t: int
    test_images: int
    impostor: np.ndarray
    genuine: np.ndarray
    seconds: float


def _score_trial(fs: FeatureSet, cfg: BlufrConfig, rows: np.ndarray, t: int,
                 buffer: np.ndarray) -> _Scored:
    """Stage 1 (matrix products, multi-threaded BLAS): every test pair's score."""
    start = time.perf_counter()
    test = _present(cfg.test[t], rows)
    labels = cfg.labels[test]
    order = group_by_label(labels)
    feats = np.ascontiguousarray(fs.features[rows[test[order]]])
    imp, gen = all_scores(feats, labels[order], buffer=buffer)
    if imp.size == 0 or gen.size == 0:
        raise InputError(f"{cfg.path}: trial {cfg.numbers[t]} has {gen.size} genuine and "
                         f"{imp.size} impostor pairs left: need at least one of each")
    return _Scored(t, int(test.size), imp, gen, time.perf_counter() - start)


def _finish_trial(fs: FeatureSet, cfg: BlufrConfig, rows: np.ndarray, ranks: list[int],
                  sc: _Scored) -> tuple[BlufrTrial, tuple, tuple]:
    """Stage 2 (selection, one thread): VR thresholds, then the open-set search."""
    start = time.perf_counter()
    imp = sc.impostor
    v = far_thresholds(VERIFICATION_FARS, imp.size, lambda ks: kth_largest(imp, ks),
                       sc.genuine)
    vr = accept_rates(sc.genuine, v.threshold)
    gal, prob = _present(cfg.gallery[sc.t], rows), _present(cfg.probe[sc.t], rows)
    outcomes, _ = search(fs.features[rows[gal]], cfg.labels[gal], fs.features[rows[prob]],
                         cfg.labels[prob], SearchOptions(backend="dense"))
    o = open_set(outcomes, OPEN_SET_FARS, ranks)
    if o is None:
        raise InputError(f"{cfg.path}: trial {cfg.numbers[sc.t]} has no impostor or no "
                         "genuine probe left")
    trial = BlufrTrial(sc.test_images, int(sc.genuine.size), int(imp.size), int(gal.size),
                       o.n_genuine, o.n_impostor, sc.seconds + time.perf_counter() - start)
    return (trial, (v.far, v.threshold, vr),
            (o.thresholds.far, o.thresholds.threshold, o.dir))


def _run_trials(fs: FeatureSet, cfg: BlufrConfig, rows: np.ndarray, ranks: list[int],
                progress: Any) -> list[tuple[BlufrTrial, tuple, tuple]]:
    """Every trial, as a two-stage pipeline: while one trial's thresholds are selected
    (single-threaded NumPy), the next trial's pairs are scored (BLAS) in a worker thread,
    into the other of two reused impostor buffers. Both release the GIL."""
    from concurrent.futures import ThreadPoolExecutor

    sizes = [pair_counts(cfg.labels[_present(test, rows)])[1] for test in cfg.test]
    buffers = [np.empty(max(sizes), dtype=np.float32) for _ in range(min(2, cfg.n_trials))]
    done = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_score_trial, fs, cfg, rows, 0, buffers[0])
        for t in range(cfg.n_trials):
            scored = pending.result()
            if t + 1 < cfg.n_trials:
                pending = pool.submit(_score_trial, fs, cfg, rows, t + 1,
                                      buffers[(t + 1) % 2])
            done.append(_finish_trial(fs, cfg, rows, ranks, scored))
            if progress is not None:
                progress(t + 1)
    return done


def evaluate_blufr(fs: FeatureSet, cfg: BlufrConfig, features: FeatureOptions,
                   allow_missing: bool = False, progress: Any = None) -> BlufrResult:
    """Run every trial of ``cfg`` on the feature set ``fs``."""
    start = time.perf_counter()
    rows, missing, unused = match_images(fs, cfg, allow_missing)
    sizes = [int((rows[g] >= 0).sum()) for g in cfg.gallery]
    if min(sizes) == 0:
        t = sizes.index(0)
        raise InputError(f"{cfg.path}: trial {t + 1} has an empty gallery (none of its "
                         f"{cfg.gallery[t].size} gallery images is embedded in {fs.path})")
    n_gallery = min(sizes)
    ranks = usable_ranks(RANKS, n_gallery)
    done = _run_trials(fs, cfg, rows, ranks, progress)
    ver = Curves(np.array(VERIFICATION_FARS), *(np.stack([d[1][i] for d in done])
                                                for i in range(3)))
    ops = Curves(np.array(OPEN_SET_FARS), *(np.stack([d[2][i] for d in done])
                                            for i in range(3)), ranks=ranks)
    protocol = BlufrProtocol(str(cfg.path), cfg.sha256, cfg.n_trials, features, allow_missing,
                             tuple(cfg.numbers) if cfg.selected else ())
    timing = Timing({"total": time.perf_counter() - start})
    return BlufrResult(protocol, ver, ops, [d[0] for d in done], list(cfg.numbers), missing,
                       unused, timing)
