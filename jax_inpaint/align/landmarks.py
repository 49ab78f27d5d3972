"""Faces and their landmarks in a photo, offline: mediapipe's face detector and face mesh.

mediapipe 0.10.14 (the optional extra: `pip install "jax-inpaint[align]"`) carries its models inside
its wheel (face_detection_full_range_sparse.tflite, face_detection_short_range.tflite,
face_landmark_with_attention.tflite): nothing is downloaded. Later releases ship no models (their
tasks API downloads .task files), 0.10.21 needs numpy < 2, and dlib / face-alignment / insightface
download their models at run time; OpenCV's Haar cascades find faces but not landmarks precise
enough for the recipe. mediapipe is imported here only, and only when a face is looked for.

How faces are found: the full-range detector looks at the whole photo and, for photos larger than
LEVEL_MIN pixels, at overlapping windows of half and a quarter of its size (so a small face in a large
photo is found); the short-range detector looks at the whole photo too. Each detection's
neighbourhood is given to the face mesh (refine_landmarks: 478 points, the eyes' and lips' contours
refined by its attention model). Faces found twice are merged. Faces are ordered by size, the side
of their FFHQ crop (largest first; equal sizes left to right): `--face 0` is the largest.

The recipe's points from the mesh: each eye centre is the mean of the 16 points of that eye's contour
(the eyelids' edge, as dlib's 6 eye points were for FFHQ), the mouth corners are points 61 and 291.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading

import numpy as np

from jax_inpaint.errors import InputError

INSTALL = 'pip install "jax-inpaint[align]" (mediapipe==0.10.14 with protobuf<5)'

# Mesh indices (mediapipe's face mesh topology). "Left" and "right" are the image's: EYE_LEFT is the
# subject's right eye (mediapipe's FACEMESH_RIGHT_EYE), as dlib's points 36-41 were for FFHQ.
EYE_LEFT = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
EYE_RIGHT = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
IRIS_LEFT, IRIS_RIGHT = 468, 473  # iris centres (refined landmarks), kept in Face.landmarks
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # the face's outline, in order
NUM_LANDMARKS = 478

MIN_CONFIDENCE = 0.5  # of the detectors and the mesh
LEVEL_MIN = 384  # windows of half / a quarter of the photo are looked at while they are at least this large
CROP = 2.2  # the mesh looks at a square this many times the detected box's side


@dataclasses.dataclass(eq=False)  # faces are compared by identity (their landmarks are arrays)
class Face:
    landmarks: np.ndarray  # [478, 2] (x, y) photo pixels, pixel centres at whole numbers
    score: float  # the detector's confidence

    @property
    def points(self) -> np.ndarray:
        """[4, 2]: eye_left, eye_right, mouth_left, mouth_right (the recipe's points; left = the image's)."""
        lm = self.landmarks
        return np.stack([lm[list(EYE_LEFT)].mean(0), lm[list(EYE_RIGHT)].mean(0), lm[MOUTH_LEFT], lm[MOUTH_RIGHT]])

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the landmarks' bounding box."""
        lo, hi = self.landmarks.min(0), self.landmarks.max(0)
        return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    @property
    def size(self) -> float:
        """The side of the face's FFHQ crop, in photo pixels (what faces are ordered by)."""
        from jax_inpaint.align.ffhq import recipe_frame

        _, x, _ = recipe_frame(self.points)
        return 2.0 * math.hypot(*x)


# ---------------------------------------------------------------------------------------------
# mediapipe, imported on first use.

_LOCK = threading.Lock()  # the graphs are not thread-safe; one photo at a time
_MODELS: dict = {}


@contextlib.contextmanager
def _quiet():
    """mediapipe's C++ logging (TensorFlow Lite's 'INFO: Created ... delegate', absl's warnings) goes to
    file descriptor 2 directly: sent to /dev/null while its graphs are built and run."""
    import sys
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # protobuf's deprecation warnings about mediapipe's calls
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def require():
    """mediapipe's face detection and face mesh solutions; a one-line InputError telling what to install
    when the extra is missing or unusable."""
    if "solutions" in _MODELS:
        return _MODELS["solutions"]
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        with _quiet():
            import mediapipe
            from mediapipe.python.solutions import face_detection, face_mesh
    except ImportError as e:
        what = f"{e.name} is not installed" if getattr(e, "name", None) else " ".join(str(e).split())
        if "libGL" in what:  # the cv2 that mediapipe brings (opencv-contrib-python) needs the system's OpenGL
            what += " (Debian/Ubuntu: apt-get install libgl1)"
        raise InputError(f"face alignment needs the optional extra: {INSTALL}; {what}") from None
    try:
        import google.protobuf

        major = int(google.protobuf.__version__.split(".")[0])
    except (ImportError, ValueError, AttributeError):
        major = 4
    if major >= 5:
        raise InputError(f"face alignment needs protobuf 4 (mediapipe 0.10.14's face mesh), found protobuf "
                         f"{google.protobuf.__version__}: {INSTALL}")
    folder = os.path.dirname(mediapipe.__file__)
    needed = ("modules/face_detection/face_detection_full_range_sparse.tflite",
              "modules/face_detection/face_detection_short_range.tflite",
              "modules/face_landmark/face_landmark_with_attention.tflite")
    missing = [n for n in needed if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise InputError(f"mediapipe {getattr(mediapipe, '__version__', '?')} does not carry its face models "
                         f"({os.path.basename(missing[0])}): {INSTALL}")
    _MODELS["solutions"] = (face_detection, face_mesh)
    return _MODELS["solutions"]


def _model(name: str):
    if name not in _MODELS:
        face_detection, face_mesh = require()
        with _quiet():
            if name == "mesh":
                _MODELS[name] = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                                   min_detection_confidence=MIN_CONFIDENCE)
            else:
                _MODELS[name] = face_detection.FaceDetection(model_selection=1 if name == "full" else 0,
                                                             min_detection_confidence=MIN_CONFIDENCE)
    return _MODELS[name]


# ---------------------------------------------------------------------------------------------
# Finding faces.

def _square(photo: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, float, float]:
    """A square of the photo (black outside it): (crop, x0, y0) with the crop's top-left at (x0, y0)."""
    h, w = photo.shape[:2]
    s = max(1, int(round(side)))
    x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
    crop = np.zeros((s, s, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = photo[sy0:sy1, sx0:sx1]
    return crop, float(x0), float(y0)


def _windows(h: int, w: int) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of the detector's views: the whole photo, then overlapping windows of 1/2 and 1/4
    of its longer side while they are at least LEVEL_MIN pixels."""
    out = [(0, 0, w, h)]
    side = max(h, w)
    for level in (2, 4):
        s = side // level
        if s < LEVEL_MIN:
            break
        step = s // 2
        xs = list(range(0, max(w - s, 0) + 1, step)) + ([w - s] if w > s and (w - s) % step else [])
        ys = list(range(0, max(h - s, 0) + 1, step)) + ([h - s] if h > s and (h - s) % step else [])
        out += [(x, y, min(x + s, w), min(y + s, h)) for y in ys for x in xs]
    return out


def _detections(photo: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(cx, cy, side, score) of the faces the detectors see, in photo pixels."""
    h, w = photo.shape[:2]
    found = []
    for i, (x0, y0, x1, y1) in enumerate(_windows(h, w)):
        view = np.ascontiguousarray(photo[y0:y1, x0:x1])
        vh, vw = view.shape[:2]
        for name in (("full", "short") if i == 0 else ("full",)):
            res = _model(name).process(view)
            for d in res.detections or []:
                b = d.location_data.relative_bounding_box
                bx, by, bw, bh = b.xmin * vw + x0, b.ymin * vh + y0, b.width * vw, b.height * vh
                if bw > 0 and bh > 0:
                    found.append((bx + bw / 2, by + bh / 2, max(bw, bh), float(d.score[0])))
    found.sort(key=lambda f: -f[3])
    kept: list[tuple[float, float, float, float]] = []
    for f in found:  # one view of each face is enough when two detections overlap well
        if all(math.hypot(f[0] - k[0], f[1] - k[1]) > 0.3 * min(f[2], k[2]) or abs(math.log(f[2] / k[2])) > 0.5
               for k in kept):
            kept.append(f)
    return kept


def _mesh(photo: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray | None:
    crop, x0, y0 = _square(photo, cx, cy, side * CROP)
    res = _model("mesh").process(crop)
    if not res.multi_face_landmarks:
        return None
    s = crop.shape[0]
    lm = np.array([(p.x, p.y) for p in res.multi_face_landmarks[0].landmark], np.float64)
    if lm.shape != (NUM_LANDMARKS, 2):
        return None
    return lm * s + np.array([x0, y0]) - 0.5  # normalised continuous -> pixel centres at whole numbers


def detect_faces(photo: np.ndarray) -> list[Face]:
    """Every face mediapipe finds in a uint8 RGB photo [H, W, 3], largest first (equal sizes: left to right)."""
    photo = np.ascontiguousarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"detect_faces needs a uint8 RGB photo [H, W, 3], got {photo.dtype} {photo.shape}")
    require()
    faces: list[Face] = []
    with _LOCK, _quiet():
        try:
            for cx, cy, side, score in _detections(photo):
                lm = _mesh(photo, cx, cy, side)
                if lm is None:
                    continue
                face = Face(lm, score)
                p = face.points
                eyes = math.hypot(*(p[1] - p[0]))
                mid = (p[0] + p[1]) / 2
                if eyes < 1e-6 or any(math.hypot(*(mid - (g.points[0] + g.points[1]) / 2)) < 0.5 * eyes for g in faces):
                    continue  # found before (two detections of one face)
                faces.append(face)
        except (RuntimeError, ValueError) as e:
            raise InputError(f"the face detector failed on this photo ({' '.join(str(e).split())[:200]})") from None
    faces.sort(key=lambda f: (-round(f.size, 1), f.box[0]))
    return faces


def pick_face(faces: list[Face], face: int | None, what: str = "the photo") -> Face:
    """faces[face] (0 = the largest, the default), or a one-line InputError."""
    if not faces:
        raise InputError(f"{what}: no face found (alignment needs a face with both eyes and the mouth visible)")
    index = 0 if face is None else face
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise InputError(f"--face must be a whole number >= 0 (0 = the largest face), got {face!r}")
    if index >= len(faces):
        n = len(faces)
        raise InputError(f"--face {index}: {what} has only one face (--face 0)" if n == 1 else
                         f"--face {index}: {what} has {n} faces (--face 0 to {n - 1}, by size, 0 = the largest)")
    return faces[index]
