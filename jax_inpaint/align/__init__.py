"""Real photos: find the face, align it the way FFHQ was aligned, and put completions back into the photo.

`ffhq` (the recipe and the transform; numpy, scipy and PIL only), `landmarks` (mediapipe's face
detector and mesh, imported only when a face is looked for: the optional extra `pip install
"jax-inpaint[align]"`), `photo` (inpainting a photo through its aligned face, paste-back, files).
"""
