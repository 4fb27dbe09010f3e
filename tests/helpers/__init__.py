"""Test helpers shared by tests/ and bench/: real-data paths, slow obviously-correct
references, test doubles of hardware APIs, and small model builders.

Import them as ``from tests.helpers.naive_reference import naive_evaluate`` (pytest puts
the repository root on the path because ``tests`` is a package; ``bench/`` scripts run
as ``python -m bench.<name>`` from the root).
"""
