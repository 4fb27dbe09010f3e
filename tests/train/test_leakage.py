"""massface-train refuses validation pairs that show training people (or, with
validation.allow_overlap, warns), naming them; people outside the training data pass."""

from __future__ import annotations

from massface.formats.pairs import Pair, write_path_pairs
from massface.train.data import scan_image_folder
from massface.train.validation import check_no_leak
from tests.train.test_run_guards import one_line_error, train


def pairs_file(path, *people_pairs):
    pairs = [Pair(f"{a}/1.pgm", f"{b}/2.pgm", a == b) for a, b in people_pairs]
    write_path_pairs(path, pairs)
    return path


def naive_overlap(folder, pairs):
    """Identities named on both sides, by reading the pairs file's text."""
    lines = [ln.split("\t") for ln in pairs.read_text().splitlines() if "\t" in ln]
    named = {side.split("/")[0] for ln in lines for side in ln[:2]}
    return named & set(folder.identities)


def test_validation_pairs_naming_training_people_are_refused(orl_dir, tmp_path):
    pairs = pairs_file(tmp_path / "pairs.txt", ("s3", "s3"), ("s2", "s4"), ("s3", "s5"))
    result = train(orl_dir, tmp_path / "work", f"validation.pairs={pairs}",
                   f"validation.root={orl_dir}")
    one_line_error(result, f"validation.pairs {pairs} shares 1 identity (s2)",
                   "validation.allow_overlap=true")
    assert not (tmp_path / "work" / "run" / "checkpoints").exists()


def test_overlap_is_named_or_only_warned(orl_dir, tmp_path):
    folder = scan_image_folder(orl_dir, ["s1", "s2", "s3"])
    clean = pairs_file(tmp_path / "clean.txt", ("s4", "s4"), ("s5", "s6"))
    leaky = pairs_file(tmp_path / "leaky.txt", ("s1", "s1"), ("s3", "s7"), ("s8", "s8"))
    assert check_no_leak(clean, folder) == set() == naive_overlap(folder, clean)
    warnings: list[str] = []
    shared = check_no_leak(leaky, folder, allow=True, warn=warnings.append)
    assert shared == {"s1", "s3"} == naive_overlap(folder, leaky)
    assert len(warnings) == 1 and "2 identities (s1, s3)" in warnings[0]
