"""Raw photos in: face detection (MTCNN on ONNX Runtime) and 5-point alignment.

    from massface.align import MTCNN, AlignSettings, FaceAligner, TEMPLATES
    faces = MTCNN().detect(rgb)                 # boxes, scores, five landmarks
    crop = FaceAligner(AlignSettings(TEMPLATES.get("arcface"))).crop(rgb, faces.landmarks[0])

``massface-align`` (:mod:`massface.align.cli`) aligns whole folders; ``massface-infer
--align`` (:mod:`massface.align.infer_step`) detects and aligns in its decode workers.
"""

from massface.align.faces import PICKS, AlignSettings, FaceAligner, NoFaceError
from massface.align.mtcnn import MTCNN, DetectorOptions, Faces
from massface.align.templates import TEMPLATES, Template, resolve_template
from massface.align.transform import WARPS, similarity, warp_affine

__all__ = ["MTCNN", "PICKS", "TEMPLATES", "WARPS", "AlignSettings", "DetectorOptions",
           "FaceAligner", "Faces", "NoFaceError", "Template", "resolve_template",
           "similarity", "warp_affine"]
