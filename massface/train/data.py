"""Folder-per-identity datasets, P x K / shuffled batch samplers and a tf.data pipeline.

Why this shape: the samplers are plain seeded NumPy index generators, so batch ``i`` of a
run is a pure function of ``(seed, i)``. Resuming at step ``i`` regenerates exactly the
batches a straight run would have seen (bit-exact resume), and augmentation uses
stateless random ops seeded by ``(seed, step)`` for the same reason. Images are decoded
with Pillow (it reads ORL's PGMs, which ``tf.io.decode_image`` does not), resized to the
network's size and converted to RGB; small datasets are decoded once into memory.

Identities with fewer than K images in a P x K batch: the identity's images are all used
and the block is filled by drawing again from them (with repetition); augmentation makes
the repeats differ. The batch keeps its static shape ``[P * K, H, W, 3]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from massface.errors import InputError
from massface.formats import pairs as pairs_format
from massface.formats.pairs import natural_key as _natural_key  # 's10' after 's9'
from massface.registry import Registry
from massface.train.config import AugmentConfig

if TYPE_CHECKING:
    from massface.train.config import DataConfig

#: What a training folder may hold: the pair files' image types plus .pnm and .gif.
IMAGE_EXTENSIONS = (*pairs_format.IMAGE_EXTENSIONS, ".pnm", ".gif")


@dataclass
class ImageFolder:
    """A folder-per-identity dataset: ``root/<identity>/<image>``.

    ``paths[i]`` is relative to ``root``; ``labels[i]`` indexes ``identities``.
    """

    root: Path
    identities: list[str]
    paths: list[str]
    labels: np.ndarray = field(repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "identities": len(self.identities),
                "images": len(self.paths)}


def scan_image_folder(root: str | os.PathLike[str], identities: Sequence[str] | None = None,
                      min_images: int = 1) -> ImageFolder:
    """List ``root``'s identity folders (natural order) and their images.

    ``identities`` restricts to the named folders (each must exist); identities with
    fewer than ``min_images`` images are dropped. Raises :class:`InputError` for a
    missing, empty or unreadable folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base}: dataset folder does not exist")
    try:
        folders = sorted((p.name for p in base.iterdir() if p.is_dir()
                          and not p.name.startswith(".")), key=_natural_key)
    except OSError as exc:
        raise InputError(f"{base}: cannot list the dataset folder ({exc})") from exc
    if identities is not None:
        wanted = [str(i) for i in identities]
        missing = [i for i in wanted if i not in set(folders)]
        if missing:
            raise InputError(f"{base}: identity folders not found: {', '.join(missing[:10])}")
        folders = wanted
    names, paths, labels = [], [], []
    for folder in folders:
        try:
            files = sorted((f.name for f in (base / folder).iterdir()
                            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                            and not f.name.startswith(".")), key=_natural_key)
        except OSError as exc:
            raise InputError(f"{base / folder}: cannot list images ({exc})") from exc
        if len(files) < max(min_images, 1):
            continue
        label = len(names)
        names.append(folder)
        paths.extend(f"{folder}/{f}" for f in files)
        labels.extend([label] * len(files))
    if not paths:
        raise InputError(f"{base}: no images found (expected <identity>/<image> with one of "
                         f"{', '.join(IMAGE_EXTENSIONS)}"
                         + (f", at least {min_images} per identity)" if min_images > 1 else ")"))
    return ImageFolder(base, names, paths, np.asarray(labels, np.int64))


def load_image(path: str | os.PathLike[str], size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB of an image file, resized to ``size`` (h, w): the decoder
    inference uses (:func:`massface.runtime.preprocess.decode_image`), so a model is trained
    on pixels exactly as it will be fed them. Training squashes (fit ``squash``: ORL's
    92x112 faces stretched to 112x112, as the recipe always did), and an export of the run
    records that fit in ``export.json`` so that inference does the same.

    Raises :class:`InputError` naming the file when it cannot be decoded.
    """
    from massface.formats.preprocessing import TRAIN_FIT
    from massface.runtime.preprocess import decode_image

    return decode_image(path, str(path), size, fit=TRAIN_FIT)


def load_images(root: Path, paths: Sequence[str], size: tuple[int, int],
                threads: int = 4) -> np.ndarray:
    """Decode many images (thread pool; Pillow releases the GIL while decoding)."""
    out = np.empty((len(paths), size[0], size[1], 3), np.uint8)
    if not paths:
        return out

    def one(i: int) -> None:
        out[i] = load_image(root / paths[i], size)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(len(paths))))
    return out


# ---------------------------------------------------------------------------- samplers


class ShuffleSampler:
    """Plain shuffled batches for softmax-style pretraining.

    Each epoch is a fresh seeded permutation cut into ``len // batch`` batches (the
    remainder is dropped, a different one every epoch), so shapes are static.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int) -> None:
        if len(labels) < batch_size:
            raise InputError(f"the dataset has {len(labels)} images, fewer than one batch "
                             f"of {batch_size}")
        self.n = len(labels)
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = self.n // batch_size

    @classmethod
    def from_config(cls, folder: ImageFolder, data: DataConfig, seed: int) -> ShuffleSampler:
        """``data.batch_size`` images per batch."""
        return cls(folder.labels, int(data.batch_size), seed)

    def batch(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return order[k * self.batch_size:(k + 1) * self.batch_size]


class PKSampler:
    """P identities x K images per batch; every identity once per pass, then reshuffle.

    Batch ``i`` is identity-major (K images of the first identity, then the next...).
    Passes are consecutive seeded permutations of the identities; a batch that straddles
    two passes never holds the same identity twice (the next pass's duplicates move to its
    end). An identity with fewer than K images gives all of them plus draws with
    repetition. Batches are cached per pass so random access by step is cheap.
    """

    def __init__(self, labels: np.ndarray, P: int, K: int, seed: int) -> None:
        self.by_identity = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
        self.by_identity = [ix for ix in self.by_identity if len(ix)]
        if len(self.by_identity) < P:
            raise InputError(f"P x K sampling needs at least P={P} identities, the dataset "
                             f"has {len(self.by_identity)}")
        self.P, self.K, self.seed = P, K, seed
        self.batch_size = P * K
        n = len(self.by_identity)
        self.steps_per_epoch = max(n // P, 1)
        self._chunks: list[np.ndarray] = []
        self._length = 0
        self._cache: np.ndarray | None = None

    @classmethod
    def from_config(cls, folder: ImageFolder, data: DataConfig, seed: int) -> PKSampler:
        """``data.P`` x ``data.K``; refuses what can never give an (anchor, positive) pair."""
        if int(data.K) < 2:
            raise InputError(f"config: data.K must be at least 2 for a P x K (triplet) "
                             f"objective (got {data.K}): with one image per identity no "
                             "(anchor, positive) pair exists and no triplet is ever selected")
        single = [folder.identities[i] for i in np.flatnonzero(folder.counts() < 2)]
        if single:
            shown = ", ".join(single[:10]) + (" ..." if len(single) > 10 else "")
            raise InputError(
                f"{data.train_dir}: {len(single)} identities have a single image and "
                f"cannot give a positive pair in a triplet run ({shown}); set "
                "data.min_images=2 to leave them out")
        return cls(folder.labels, int(data.P), int(data.K), seed)

    def _identity_stream(self, upto: int) -> np.ndarray:
        """The concatenated passes, extended until it holds ``upto`` identities.

        Passes depend on the previous pass's tail, so they are built in order and kept
        (int32, P * steps values: 16 MB for 100k steps at P = 41).
        """
        while self._length < upto:
            order = np.random.default_rng([self.seed, len(self._chunks), 1]).permutation(
                len(self.by_identity)).astype(np.int32)
            tail = self._length % self.P
            if tail:
                current = np.concatenate(self._chunks)[self._length - tail:]
                dup = np.isin(order, current)
                order = np.concatenate([order[~dup], order[dup]])
            self._chunks.append(order)
            self._length += len(order)
            self._cache = None
        if self._cache is None:
            self._cache = np.concatenate(self._chunks)
        return self._cache

    def batch(self, step: int) -> np.ndarray:
        ids = self._identity_stream((step + 1) * self.P)[step * self.P:(step + 1) * self.P]
        rng = np.random.default_rng([self.seed, step, 2])
        out = []
        for i in ids:
            images = self.by_identity[i]
            if len(images) >= self.K:
                out.append(rng.choice(images, size=self.K, replace=False))
            else:
                extra = rng.choice(images, size=self.K - len(images), replace=True)
                out.append(np.concatenate([images, extra]))
        return np.concatenate(out)


#: The batch samplers by the name an objective asks for (``Objective.sampler``); each has
#: ``from_config(folder, data_config, seed)``, ``batch_size``, ``steps_per_epoch`` and
#: ``batch(step)``.
SAMPLERS: Registry[Any] = Registry("sampler")
SAMPLERS.register("shuffle", ShuffleSampler,
                  description="seeded shuffled batches of data.batch_size images")
SAMPLERS.register("pk", PKSampler,
                  description="data.P identities x data.K images, every identity once a pass")


# ---------------------------------------------------------------------- augmentation


@dataclass
class Augment(AugmentConfig):
    """Per-image random augmentation, applied batched with stateless ops.

    ``flip``: left-right with probability 0.5 (MassFace's only augmentation). ``crop``:
    a random square-ish crop whose side is uniform in ``[crop, 1]`` of the image, resized
    back (0 or 1 disables). ``shift``: random translation up to that many pixels (edge
    pixels repeated). ``brightness``: add uniform ``[-b, b] * 255``. ``contrast``: scale
    around the image mean by uniform ``[1 - c, 1 + c]``.
    """

    @classmethod
    def from_config(cls, cfg: AugmentConfig) -> Augment:
        return cls(**asdict(cfg))

    def __call__(self, images: Any, seed: Any) -> Any:
        """``images`` float32 ``[B, H, W, 3]`` in 0..255; ``seed`` shape-[2] int tensor."""
        import tensorflow as tf

        shape = tf.shape(images)
        b, h, w = shape[0], shape[1], shape[2]
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
        x = images
        if self.crop and 0.0 < self.crop < 1.0:
            side = tf.random.stateless_uniform([b], seeds[0], self.crop, 1.0)
            pos = tf.random.stateless_uniform([b, 2], seeds[1]) * (1.0 - side[:, None])
            boxes = tf.stack([pos[:, 0], pos[:, 1], pos[:, 0] + side, pos[:, 1] + side], 1)
            x = tf.image.crop_and_resize(x, boxes, tf.range(b), tf.stack([h, w]))
        if self.shift:
            s = tf.cast(self.shift, tf.float32)
            off = tf.random.stateless_uniform([b, 2], seeds[2], -s, s)
            hf, wf = tf.cast(h - 1, tf.float32), tf.cast(w - 1, tf.float32)
            boxes = tf.stack([off[:, 0] / hf, off[:, 1] / wf,
                              1.0 + off[:, 0] / hf, 1.0 + off[:, 1] / wf], 1)
            x = tf.image.crop_and_resize(x, boxes, tf.range(b), tf.stack([h, w]),
                                         extrapolation_value=0.0)
            x = tf.clip_by_value(x, 0.0, 255.0)
        if self.flip:
            coin = tf.random.stateless_uniform([b, 1, 1, 1], seeds[3]) < 0.5
            x = tf.where(coin, tf.reverse(x, axis=[2]), x)
        if self.contrast:
            f = tf.random.stateless_uniform([b, 1, 1, 1], seeds[4], 1.0 - self.contrast,
                                            1.0 + self.contrast)
            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            x = (x - mean) * f + mean
        if self.brightness:
            d = tf.random.stateless_uniform([b, 1, 1, 1], seeds[5], -self.brightness,
                                            self.brightness) * 255.0
            x = x + d
        if self.contrast or self.brightness:
            x = tf.clip_by_value(x, 0.0, 255.0)
        return x


# --------------------------------------------------------------------------- pipeline


class BatchSource:
    """uint8 image batches for steps ``start, start+1, ...`` (in memory or from files)."""

    def __init__(self, folder: ImageFolder, sampler: Any, size: tuple[int, int],
                 cache: bool, threads: int = 4) -> None:
        self.folder, self.sampler, self.size, self.threads = folder, sampler, size, threads
        self.images = load_images(folder.root, folder.paths, size, threads) if cache else None

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.sampler.batch(step)
        labels = self.folder.labels[idx]
        if self.images is not None:
            return self.images[idx], labels
        return load_images(self.folder.root, [self.folder.paths[i] for i in idx], self.size,
                           self.threads), labels

    def iterate(self, start: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        step = start
        while True:
            images, labels = self.batch(step)
            yield step, images, labels
            step += 1


def build_source(data: DataConfig, sampler: str, seed: int) -> BatchSource:
    """The run's images and batches: scan ``data.train_dir``, the sampler the objective
    names (from :data:`SAMPLERS`), in memory when ``data.cache`` says so (auto: <= 2 GB)."""
    if data.train_dir is None:
        raise InputError("config: data.train_dir is not set")
    folder = scan_image_folder(data.train_dir, data.identities, int(data.min_images))
    if folder.num_classes < 2:
        # one class: softmax heads have nothing to separate and triplets no negative; the
        # loss would fall to zero and the model learn nothing, with exit 0
        raise InputError(f"{data.train_dir}: only one identity ({folder.identities[0]}) to "
                         "train on; a face model learns to tell identities apart: give a "
                         "folder with at least 2 identity folders (check data.identities "
                         "and data.min_images)")
    chosen = SAMPLERS.get(sampler, "objective").from_config(folder, data, seed)
    size = data.size
    in_memory = (data.cache == "true" or (data.cache == "auto"
                 and len(folder) * size[0] * size[1] * 3 <= 2 * 1024**3))
    return BatchSource(folder, chosen, size, in_memory, int(data.threads))


def make_dataset(source: BatchSource, batch_size: int, *, start_step: int, seed: int,
                 augment: Augment, mean: float = 127.5, std: float = 128.0,
                 prefetch: int = 2, num_parts: int = 1, parts: Sequence[int] = (0,)) -> Any:
    """A ``tf.data.Dataset`` of ``(images float32 [B,H,W,3], labels int64 [B])`` batches.

    Infinite, starting at ``start_step``; augmentation seeded by ``(seed, step)``.
    With ``num_parts > 1`` every global batch (built and augmented whole, so the data do
    not depend on how many replicas there are) is cut into ``num_parts`` contiguous
    slices and the dataset yields the slices ``parts`` of each step in order: what one
    input pipeline of a ``tf.distribute`` strategy feeds its local replicas.
    """
    import tensorflow as tf

    from massface.formats.preprocessing import Preprocessing

    h, w = source.size
    prep = Preprocessing(mean=mean, std=std)  # training images are RGB
    ds = tf.data.Dataset.from_generator(
        lambda: source.iterate(start_step),
        output_signature=(tf.TensorSpec([], tf.int64),
                          tf.TensorSpec([batch_size, h, w, 3], tf.uint8),
                          tf.TensorSpec([batch_size], tf.int64)))

    def prepare(step: Any, images: Any, labels: Any) -> tuple[Any, Any]:
        x = augment(tf.cast(images, tf.float32), tf.stack([tf.constant(seed, tf.int64), step]))
        return prep.normalize(x), labels

    ds = ds.map(prepare, num_parallel_calls=1, deterministic=True)
    if num_parts > 1:
        if batch_size % num_parts:
            raise InputError(f"a batch of {batch_size} images does not split evenly over "
                             f"{num_parts} replicas")
        size = batch_size // num_parts

        def split(x: Any, y: Any) -> Any:
            xs = tf.stack([x[p * size:(p + 1) * size] for p in parts])
            ys = tf.stack([y[p * size:(p + 1) * size] for p in parts])
            return tf.data.Dataset.from_tensor_slices((xs, ys))

        ds = ds.flat_map(split)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return ds.with_options(options).prefetch(prefetch)
