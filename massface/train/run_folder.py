"""The run folder ``<work_dir>/<name>/``: config snapshot, checkpoints, summary.

- ``config.yaml``: the full merged config (what :func:`massface.train.checkpoints.
  load_backbone` and the export stage read: ``model.embedding_size``, preprocessing); a
  rerun whose config differs says which keys changed;
- ``checkpoints/ckpt-<step>``: ``tf.train.Checkpoint(backbone, head, optimizer, step,
  loss_scale, good_steps)`` through a ``CheckpointManager``; a run restarts from the
  latest one, else from ``train.pretrained``'s backbone when set;
- ``summary.json``: what the run did (:class:`massface.train.trainer.TrainResult`).

Only the chief of a multi-worker run keeps files: the other workers must still save
(saving is collective) but into ``.worker-<i>/``, removed at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from massface.errors import InputError
from massface.io import remove_stale_temps, write_json, write_text
from massface.train import config as config_mod
from massface.train.callbacks import RunLog
from massface.train.checkpoints import CHECKPOINT_DIR, CONFIG_FILE, resolve_checkpoint


class RunFolder:
    """Snapshot, resume / pretrained start, checkpoints and summary of one run."""

    def __init__(self, cfg: config_mod.ExperimentConfig, parts: dict[str, Any], *,
                 chief: bool, worker: int | None, log: RunLog) -> None:
        import tensorflow as tf

        self.cfg, self.chief, self.log = cfg, chief, log
        self.path: Path = cfg.run_dir
        self.step = parts["step"]
        self.checkpoint = tf.train.Checkpoint(**parts)
        ckpt_dir = self.path / CHECKPOINT_DIR
        if not chief:  # multi-worker: only the chief's checkpoints are kept
            ckpt_dir = self.path / f".worker-{worker}"
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(ckpt_dir), max_to_keep=int(cfg.train.keep_checkpoints),
            checkpoint_name="ckpt")

    @property
    def latest(self) -> str | None:
        """The newest checkpoint prefix, or None."""
        return self.manager.latest_checkpoint

    def prepare(self, model: Any) -> int:
        """Snapshot the config, resume from the latest checkpoint or load --pretrained;
        returns the step the run starts at."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.chief:  # leftovers of a killed run's atomic writes (the chief holds the lock)
            remove_stale_temps(self.path)
        self._snapshot_config()
        if self.latest:
            return self._resume(self.latest)
        pretrained = self.cfg.train.pretrained
        if pretrained:
            from massface.train.checkpoints import restore_backbone

            prefix, _ = resolve_checkpoint(pretrained)
            restore_backbone(model, prefix)
            self.log.say(f"backbone initialised from {prefix}")
        return 0

    def _snapshot_config(self) -> None:
        snapshot = self.path / CONFIG_FILE
        if snapshot.exists():
            changed = _diff(config_mod.read_yaml(snapshot), self.cfg.to_dict())
            if changed:
                self.log.warn(f"{snapshot}: config changed since the last run: "
                              + ", ".join(changed[:8]))
        if self.chief:
            write_text(snapshot, config_mod.dump_config(self.cfg))

    def _resume(self, latest: str) -> int:
        import tensorflow as tf

        from massface.train.checkpoints import check_readable

        check_readable(latest)  # a damaged file is named as such, not as a config change
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise InputError(f"{latest}: cannot resume this run with the current config "
                             f"({str(exc).splitlines()[0][:300]}); use another --name "
                             "or the run's own config.yaml") from exc
        self.log.say(f"resumed from {latest} (step {int(self.step.numpy())})")
        return int(self.step.numpy())

    def save(self, step: int) -> str:
        """Checkpoint everything at ``step``; returns the prefix."""
        import tensorflow as tf

        self.step.assign(step)
        path = self.manager.save(checkpoint_number=step)
        if not self.chief:
            tf.io.gfile.rmtree(self.manager.directory)
        return path

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.chief:
            write_json(self.path / "summary.json", summary)
            remove_stale_temps(self.path)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [prefix.rstrip(".")] if old != new else []
