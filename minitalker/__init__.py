"""minitalker: an educational, from-scratch reference implementation of DiffTalker.

Two agents joined by 68 facial landmarks (iBUG scheme):

1. ``LandmarkCompletionTransformer``: audio around a frame + the speaker's reference landmarks
   (mouth and jaw masked) -> the full 68 landmarks of that frame.
2. A conditional diffusion UNet: noisy target frame + reference image -> denoised frame, with the
   landmarks entering through cross-attention (the slot a text-to-image model gives text tokens).

Submodules are imported lazily by the user (``from minitalker import audio``) so that
``import minitalker`` stays fast.
"""

__version__ = "0.1.0"
