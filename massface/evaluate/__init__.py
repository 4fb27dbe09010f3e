"""LFW-protocol face verification: ``verify()`` and the ``massface-eval`` command.

``verify(embeddings, issame, ...)`` scores pair-ordered embeddings exactly as facenet's
``lfw.evaluate`` (which MassFace's ``calAcc`` calls) does, vectorised; see
``../shared/docs/SPEC.md`` section 1 and :mod:`massface.evaluate.verification`.
"""

from massface.evaluate.result import Protocol, TprAtFar, VerificationResult
from massface.evaluate.verification import DEFAULT_FAR_TARGETS, verify

__all__ = ["DEFAULT_FAR_TARGETS", "Protocol", "TprAtFar", "VerificationResult", "verify"]
