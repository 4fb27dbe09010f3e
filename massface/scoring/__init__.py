"""massface.scoring: embeddings and pairs become numbers.

The core floor under ``massface-eval``, the export's accuracy budget and training's
periodic verification. ``verify(embeddings, issame, ...)`` scores pair-ordered embeddings
exactly as facenet's ``lfw.evaluate`` (which MassFace's ``calAcc`` calls) does,
vectorised; see ``../shared/docs/SPEC.md`` section 1 and
:mod:`massface.scoring.verification`. Folds, distances, normalisation and flip fusion,
the per-row cosine and the result types live here too. It imports no stage package.
"""

from massface.scoring.result import Protocol, TprAtFar, VerificationResult
from massface.scoring.verification import DEFAULT_FAR_TARGETS, verify

__all__ = ["DEFAULT_FAR_TARGETS", "Protocol", "TprAtFar", "VerificationResult", "verify"]
