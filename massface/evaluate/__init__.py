"""The ``massface-eval`` command: input kinds, protocols, reports and ``compare``.

The scoring itself (``verify``, folds, distances, normalisation) is
:mod:`massface.scoring`; models and images are run by :mod:`massface.runtime`.
"""
