"""Every named choice of a command comes from its registry: the --help lists each entry,
so a registration is all it takes to offer one (and an unknown name lists the choices)."""

from __future__ import annotations

import pytest

from tests.helpers.cli import run_cli


def _help(app) -> str:
    result = run_cli(app, ["--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_infer_help_offers_every_registered_choice():
    from massface.infer.cli import app
    from massface.infer.outputs import WRITERS
    from massface.runtime.backends import BACKENDS, DEVICES, PRECISIONS

    text = _help(app)
    for registry in (WRITERS, PRECISIONS, BACKENDS, DEVICES):
        for name in registry:
            assert f"{name} ({registry.description(name)})" in " ".join(
                registry.choices().split()), name
            assert name in text, (registry.kind, name)
    for name in BACKENDS:  # the model help names every file a backend runs (.xml too)
        for suffix in BACKENDS.get(name).suffixes:
            assert suffix in text.split("--om")[0], suffix


def test_export_and_pairs_help_offer_every_registered_choice():
    pytest.importorskip("tensorflow")
    from massface.export.atc import PRECISION_MODES
    from massface.export.cli import app as export_app
    from massface.export.int8 import CALIBRATIONS
    from massface.tools.pairs_generate import PAIR_FORMATS, SPLITS
    from massface.tools.pairs_generate import app as pairs_app

    export_help = _help(export_app)
    for registry in (PRECISION_MODES, CALIBRATIONS):
        assert all(name in export_help for name in registry), registry.kind
    pairs_help = _help(pairs_app)
    for registry in (SPLITS, PAIR_FORMATS):
        assert all(f"{n} ({registry.description(n)})" in pairs_help for n in registry)


def test_unknown_names_list_the_registered_choices():
    from massface.errors import InputError
    from massface.export.atc import PRECISION_MODES, validate_precision_mode
    from massface.runtime.backends import open_backend

    with pytest.raises(InputError, match=r"--precision-mode: unknown ATC precision mode "
                                         r"'fp8' \(choose one of: allow_fp32_to_fp16, "):
        validate_precision_mode("fp8")
    assert validate_precision_mode("force_fp16") == "force_fp16" in PRECISION_MODES
    with pytest.raises(InputError, match=r"--device: unknown device 'tpu' \(choose one of: "
                                         r"auto, cpu, cuda\)"):
        open_backend("m.onnx", backend="onnxruntime", device="tpu")


def test_subcommands_are_typer_commands_of_the_main_app(tmp_path):
    """``massface-eval compare``, ``massface-train report`` and ``massface-pairs
    blufr-split`` are subcommands of one typer app each (no sys.argv reading); the main
    command still takes its positional arguments, and its --help lists the subcommands."""
    from massface.evaluate.cli import app as eval_app
    from massface.tools.pairs_generate import app as pairs_app

    main_help = run_cli(eval_app, ["--help"], prog_name="massface-eval")
    assert main_help.exit_code == 0 and "INPUTS" in main_help.output.upper()
    assert "massface-eval compare ... (massface-eval compare --help)" in " ".join(
        main_help.output.split())
    compare_help = run_cli(eval_app, ["compare", "--help"], prog_name="massface-eval")
    assert compare_help.exit_code == 0 and "REFERENCE" in compare_help.output.upper()
    split_help = run_cli(pairs_app, ["blufr-split", "--help"], prog_name="massface-pairs")
    assert split_help.exit_code == 0 and "--trial" in split_help.output
    missing = run_cli(pairs_app, [str(tmp_path / "nowhere"), "--out",
                                        str(tmp_path / "p.txt")], prog_name="massface-pairs")
    assert missing.exit_code == 2  # ROOT reached the main command, not a subcommand


def test_no_stage_module_reads_sys_argv():
    """Subcommands go through massface.cli.MainAndSubcommands, not sys.argv checks."""
    import ast
    from pathlib import Path

    import massface

    root = Path(massface.__file__).parent
    readers = []
    for path in root.rglob("*.py"):
        if path.name in ("cli.py",) and path.parent == root:
            continue  # the harness itself
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr == "argv"
                    and isinstance(node.value, ast.Name) and node.value.id == "sys"):
                readers.append(str(path.relative_to(root)))
    assert readers == []


def test_tests_run_commands_through_the_one_helper():
    """One CLI runner for every command: tests/helpers/cli.py is the only place that
    builds typer's runner."""
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    needle = "CliRunner" + "("  # spelled so that this file does not match itself
    own = [str(p.relative_to(tests)) for p in tests.rglob("*.py")
           if needle in p.read_text(encoding="utf-8")]
    assert own == ["helpers/cli.py"], own
