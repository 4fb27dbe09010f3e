"""Every named choice of a command comes from its registry: the --help lists each entry,
so a registration is all it takes to offer one (and an unknown name lists the choices)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


def _help(app) -> str:
    result = CliRunner().invoke(app, ["--help"], terminal_width=400)
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
