"""massface-eval --protocol blufr --trials K (score some trials; only their test images
need embeddings) and --trained-on RUN (a trial whose test people the run trained on is
refused), against the naive BLUFR of tests/helpers/blufr_reference.py."""

from __future__ import annotations

import json

import numpy as np

from massface.formats import embedding_dir
from massface.tools.blufr_split import write_split_tree
from tests.evaluate.test_blufr import make_world, run
from tests.helpers.blufr_reference import naive_blufr, unit


def test_selected_trials_match_the_naive_protocol_on_those_trials(tmp_path):
    world = make_world(tmp_path, 11, n_trials=4)
    out = tmp_path / "r.json"
    code, output = run(world["folder"], "--protocol", "blufr", "--blufr-config",
                       world["config"], "--trials", "2,4", "--json", out)
    assert code == 0, output
    ref = naive_blufr([unit(v) for v in world["vectors"]], world["labels"],
                      [world["trials"][1], world["trials"][3]])
    report = json.loads(out.read_text())
    assert report["vr_trials"] == ref["vr_trials"]
    assert report["dir_trials"] == ref["dir_trials"]
    assert report["trial_numbers"] == [2, 4]
    assert report["protocol"]["trial_numbers"] == [2, 4]


def test_only_the_selected_trials_test_images_are_needed(tmp_path):
    world = make_world(tmp_path, 12, n_trials=3)
    es = embedding_dir.read_embedding_dir(world["folder"])
    test_names = {world["names"][i] for i in world["trials"][0][1]}
    keep = [i for i, p in enumerate(es.paths) if p.rsplit("/", 1)[1] in test_names]
    part = embedding_dir.write_embedding_dir(tmp_path / "t1", es.embeddings[keep],
                                             [es.paths[i] for i in keep])
    args = (part, "--protocol", "blufr", "--blufr-config", world["config"])
    code, output = run(*args)
    assert code == 2 and "have no embedding" in output  # all trials need every image
    out = tmp_path / "r.json"
    code, output = run(*args, "--trials", "1", "--json", out)
    assert code == 0, output
    # (the naive headline needs two trials: the same one twice)
    ref = naive_blufr([unit(v) for v in world["vectors"]], world["labels"],
                      [world["trials"][0]] * 2)
    report = json.loads(out.read_text())
    assert report["vr_trials"] == ref["vr_trials"][:1]
    assert report["dir_trials"] == ref["dir_trials"][:1]
    for bad in ("0", "4", "1-", "x"):
        code, output = run(*args, "--trials", bad)
        assert code == 2 and "--trials" in output, (bad, output)


def _tree(tmp_path, world, trial):
    root = tmp_path / "lfw"
    for n in world["names"]:
        person = n.rsplit("_", 1)[0]
        (root / person).mkdir(parents=True, exist_ok=True)
        (root / person / n).write_bytes(b"x")
    return write_split_tree(root, world["config"], trial, "train", tmp_path / f"t{trial}").path


def test_trained_on_refuses_trials_whose_test_people_it_learnt(tmp_path):
    world = make_world(tmp_path, 13, n_trials=3)
    tree = _tree(tmp_path, world, 1)
    train_ids = set(world["labels"][world["trials"][0][0]])
    leaking = [t + 1 for t in range(3) if train_ids & set(world["labels"][world["trials"][t][1]])]
    assert leaking and 1 not in leaking  # the world has the trap in it
    args = (world["folder"], "--protocol", "blufr", "--blufr-config", world["config"],
            "--trained-on", tree)
    code, output = run(*args)
    text = " ".join(output.split())
    assert code == 2 and f"BLUFR trial {leaking[0]}'s test split" in text and "shares" in text
    shared = sorted(f"Person_{i - 1:03d}" for i in
                    train_ids & set(world["labels"][world["trials"][leaking[0] - 1][1]]))
    assert shared[0] in text and "--trials 1" in text
    code, output = run(*args, "--trials", "1")
    assert code == 0, output
    # a massface-train run folder names its tree in config.yaml
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(f"data:\n  train_dir: {tree}\n")
    code, output = run(*args[:-1], run_dir)
    assert code == 2 and "shares" in output
    assert np.all(world["labels"] >= 1)
