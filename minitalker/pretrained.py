"""Standing on a pre-trained text-to-image model: DiffTalker's route through diffusers.

A text-to-image UNet (Stable Diffusion's ``UNet2DConditionModel``) denoises ``x_t`` while its
cross-attention layers read a sequence of text-token embeddings, ``encoder_hidden_states``
``(B, L, cross_attention_dim)``. DiffTalker's observation (Qi et al. 2023) is that 68 landmark
tokens fit that slot just as well, so the whole pre-trained network, which already knows how
images of faces look, can be reused; only the *meaning* of the tokens is new::

    landmarks (B, 68, 2) ─ LandmarkTokenizer ─ Linear ─► (B, 68, cross_attention_dim): encoder_hidden_states
    x_t  (B, c, h, w)   noisy latents (or pixels) ──┐
    cond (B, k·c, h, w) reference + masked target ──┴─► conv_in = base(x_t) + extra(cond) ─► rest of the UNet
                                                        (base: pre-trained; extra: new, zero-initialised)

The reference frame (and the target with its lower half masked) reach the network through new
input channels of ``conv_in``. Their weights start at zero, so at step 0 the adapted UNet computes
exactly what the pre-trained one computed (the ControlNet "zero convolution" trick, Zhang et al.
2023): fine-tuning starts from the pre-trained behaviour instead of from a broken network.

In latent mode (Stable Diffusion) images are first encoded by the frozen ``AutoencoderKL``
(``encode``/``decode``), and diffusion runs on ``c = 4`` latent channels at ``1/8`` of the size.
The adapter has the interface of our own :class:`~minitalker.nn.unet.LandmarkUNet` (the
:class:`~minitalker.face_agent.Denoiser` of the face agent: ``forward(x_t, t, cond, landmarks, drop=None)``,
``encode``/``decode``), so the face agent's loss trains it with our ``Trainer`` and its
``generate_frames`` samples it, with our DDIM or diffusers' ``DDIMScheduler``
(:mod:`minitalker.diffusion.bridge`); the two agree to float precision.

Our interpretation where the paper is silent: the token projection is a plain ``Linear``; the
conditioning is the first part of our own face UNet's (:mod:`minitalker.face_agent`: the reference
and the target with its face mask's area hidden, no mask channel; the warped reference and sketch
stay our UNet's, so the adapter is posed with ``FaceAgentConfig(warp=False, sketch=False)`` and the
VAE-encoded condition keeps a fixed ``2c`` channels); latents are the VAE posterior *mean*
(deterministic; diffusers' training scripts draw a sample, which adds a little noise);
fine-tuning keeps the checkpoint's own noise schedule and objective (its ``scheduler/``
subfolder), because that is the denoising task the network learned.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from torch import nn

from .config import PresetConfig, cache_dir, check_choice, check_positive
from .data.faces import load_face
from .diffusion.bridge import diffusers_ddim, diffusion_config_from_scheduler
from .diffusion.schedule import DiffusionConfig
from .io import load_checkpoint, model_weights
from .nn.tokenizer import LandmarkTokenizer
from .pixels import to_tensor
from .video import aligned_crops

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # the Stable Diffusion 1.5 weights on the Hugging Face hub
FREEZE = ("none", "all_but_attention", "new_only")
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
           "diffusion_pytorch_model.safetensors.index.json")


@dataclass
class PretrainedConfig(PresetConfig):
    """Which pre-trained model to adapt, and how.

    ``model``: a folder in diffusers layout (``unet/``, optionally ``vae/`` and ``scheduler/``), a
    hub id, or ``None`` for the tiny local stand-in built by :func:`make_tiny_pretrained`.
    ``freeze`` (see :meth:`PretrainedLandmarkUNet.set_freeze`): ``"none"`` trains everything but the
    VAE; ``"all_but_attention"`` trains the new parts and the cross-attention keys/values, the only
    pre-trained weights that read the tokens (as Custom Diffusion, Kumari et al. 2023, does for new
    concepts); ``"new_only"`` trains the tokenizer, the projection and the new ``conv_in`` channels.
    """

    model: str | None = None
    latent: bool = True  # diffuse VAE latents (needs vae/) or pixels (the UNet must take 3 channels)
    image_size: int = 64  # square crops, in pixels
    token_dim: int = 64  # width D of our landmark tokens, before the projection
    cross_attention_dim: int | None = None  # the text width the UNet must have (768 for SD 1.x); None = any
    cond_images: int = 2  # images concatenated to x_t: reference frame + masked target
    freeze: str = "all_but_attention"

    def __post_init__(self) -> None:
        check_choice(self, "freeze", FREEZE)
        check_positive(self, "image_size", "token_dim", "cond_images")
        if self.cross_attention_dim is not None:
            check_positive(self, "cross_attention_dim")

    @classmethod
    def fast(cls) -> PretrainedConfig:
        """The tiny local model of :func:`make_tiny_pretrained`: 64 px faces, 16x16x4 latents."""
        return cls()

    @classmethod
    def full(cls) -> PretrainedConfig:
        """Stable Diffusion 1.5 (4 latent channels, 768-wide text tokens) at 256 px, i.e. 32x32 latents.

        SD 1.x was trained at 512 px; 256 px is our choice for face crops (4x cheaper, and the
        network adapts to the smaller size while fine-tuning)."""
        return cls(model=SD15, image_size=256, token_dim=256, cross_attention_dim=768)


class ExpandedConvIn(nn.Module):
    """``conv_in`` over ``[x_t, cond]`` as ``base(x_t) + extra(cond)``; ``extra`` starts at zero.

    A convolution is linear in its input channels, so this *is* one convolution over the
    concatenation with weight ``[W_base | W_extra]``; keeping two modules lets us freeze the
    pre-trained ``W_base`` while training ``W_extra``. ``(B, c + e, H, W) -> (B, width, H, W)``.
    """

    def __init__(self, base: nn.Conv2d, extra_channels: int):
        super().__init__()
        self.base, self.split = base, base.in_channels
        self.extra = nn.Conv2d(extra_channels, base.out_channels, base.kernel_size, base.stride, base.padding, bias=False)
        nn.init.zeros_(self.extra.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x[:, :self.split]) + self.extra(x[:, self.split:])


def check_unet(unet: nn.Module, vae: AutoencoderKL | None, cfg: PretrainedConfig) -> int:
    """Raise a clear error unless ``unet`` (and ``vae``) can take landmark tokens; return the cross-attention width."""
    if not isinstance(unet, UNet2DConditionModel):
        raise TypeError(f"{type(unet).__name__} has no cross-attention, so landmark tokens have nowhere to go: "
                        "use a text-to-image UNet2DConditionModel (e.g. the unet/ of a Stable Diffusion 1.x checkpoint)")
    width = unet.config.cross_attention_dim
    if isinstance(width, (list, tuple)):
        if len(set(width)) != 1:
            raise ValueError(f"this UNet has a different cross_attention_dim per block {tuple(width)}: "
                             "only one token width is supported; use a Stable Diffusion 1.x/2.x UNet")
        width = width[0]
    if width is None or not any(isinstance(m, Attention) and m.is_cross_attention for m in unet.modules()):
        raise ValueError("this UNet2DConditionModel has no cross-attention layers (cross_attention_dim None or no "
                         "CrossAttn blocks): build it with CrossAttn*Block2D blocks, or load a text-to-image checkpoint")
    if cfg.cross_attention_dim is not None and width != cfg.cross_attention_dim:
        raise ValueError(f"the UNet's cross_attention_dim is {width} but the config expects {cfg.cross_attention_dim} "
                         f"(768: SD 1.x, 1024: SD 2.x): load a matching checkpoint, or set "
                         f"PretrainedConfig(cross_attention_dim={width}) (or None to accept any width)")
    c_in, c_out = unet.config.in_channels, unet.config.out_channels
    if c_in != c_out:
        raise ValueError(f"this UNet takes {c_in} input channels but predicts {c_out} (an inpainting UNet?): "
                         "start from a plain text-to-image UNet; the adapter adds its own conditioning channels")
    if cfg.latent:
        if vae is None:
            raise ValueError("latent=True needs the VAE (a vae/ subfolder next to unet/): add it, or set "
                             "PretrainedConfig(latent=False) for a UNet that works on 3-channel pixels")
        if vae.config.latent_channels != c_in:
            raise ValueError(f"the VAE makes {vae.config.latent_channels}-channel latents but the UNet takes {c_in}: "
                             "load the unet/ and vae/ of the same checkpoint")
    elif c_in != 3:
        raise ValueError(f"pixel mode (latent=False) needs a UNet on 3 channels; this one takes {c_in} "
                         "(a latent-diffusion UNet): set PretrainedConfig(latent=True) and provide its vae/")
    return width


class PretrainedLandmarkUNet(nn.Module):
    """A pre-trained diffusers UNet that denoises a face given the reference image and 68 landmarks."""

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL | None = None, cfg: PretrainedConfig | None = None,
                 diffusion_config: DiffusionConfig | None = None):
        super().__init__()
        self.cfg = cfg = dataclasses.replace(cfg or PretrainedConfig.fast())  # a copy: set_freeze updates it
        width = check_unet(unet, vae, cfg)
        self.unet, self.vae = unet, vae if cfg.latent else None
        self.channels = unet.config.in_channels  # c: 4 latent channels, or 3 pixel channels
        self.scale = 2 ** (len(vae.config.block_out_channels) - 1) if self.vae is not None else 1  # image px per latent px
        levels = 2 ** (len(unet.config.block_out_channels) - 1)
        if cfg.image_size % (self.scale * levels):
            raise ValueError(f"image_size {cfg.image_size} must be divisible by {self.scale * levels} "
                             f"(VAE factor {self.scale} x UNet downsampling {levels})")
        self.tokenizer = LandmarkTokenizer(cfg.token_dim)
        self.proj = nn.Linear(cfg.token_dim, width)  # our tokens -> the width of the text tokens
        unet.conv_in = ExpandedConvIn(unet.conv_in, cfg.cond_images * self.channels)
        # the schedule the network was pre-trained with (SD 1.x defaults when the folder has no scheduler/)
        self.diffusion_config = diffusion_config or diffusion_config_from_scheduler({})
        self.set_freeze(cfg.freeze)

    @property
    def image_size(self) -> int:
        """Side S of the square frames it makes."""
        return self.cfg.image_size

    @property
    def latent_size(self) -> int:
        """Side of the square that diffusion runs on: ``image_size`` in pixel mode, ``/8`` for SD's VAE."""
        return self.cfg.image_size // self.scale

    @property
    def cond_channels(self) -> int:
        """Channels of the posed condition in pixels, before :meth:`encode`: ``cond_images`` RGB images."""
        return 3 * self.cfg.cond_images

    def set_freeze(self, freeze: str) -> None:
        """Choose what trains (see :class:`PretrainedConfig`); the VAE never does."""
        if freeze not in FREEZE:
            raise ValueError(f"freeze must be one of {FREEZE}; got {freeze!r}")
        self.cfg.freeze = freeze
        self.requires_grad_(freeze == "none")
        for m in (self.tokenizer, self.proj, self.unet.conv_in.extra):
            m.requires_grad_(True)
        if freeze == "all_but_attention":
            for m in self.unet.modules():
                if isinstance(m, Attention) and m.is_cross_attention:
                    m.to_k.requires_grad_(True)
                    m.to_v.requires_grad_(True)
        if self.vae is not None:
            self.vae.requires_grad_(False)

    def context(self, landmarks: torch.Tensor | None, drop: torch.Tensor | None = None, batch: int = 1) -> torch.Tensor:
        """What the UNet reads where a prompt would be: (B, 68, 2) -> (B, 68, cross_attention_dim).
        ``landmarks=None`` gives the null condition for ``batch`` rows; ``drop`` (B,) bool nulls some rows."""
        tokens = self.tokenizer.null(batch) if landmarks is None else self.tokenizer(landmarks, drop)  # (B, 68, D)
        return self.proj(tokens)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int, cond: torch.Tensor, landmarks: torch.Tensor | None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the denoising target (eps for SD 1.x) in the space diffusion runs on.

        x_t (B, c, h, w) noisy latents (or pixels); t (B,) or int timesteps; cond (B, cond_images·c, h, w),
        the reference and masked target through :meth:`encode`; landmarks (B, 68, 2) in [-1, 1] of the
        crop, or None (null condition); drop (B,) bool. Returns (B, c, h, w).
        """
        B, want = len(x_t), (len(x_t), self.cfg.cond_images * self.channels, *x_t.shape[-2:])
        if x_t.ndim != 4 or x_t.shape[1] != self.channels:
            raise ValueError(f"x_t must be (B, {self.channels}, h, w) {'latents' if self.vae else 'pixels'}; "
                             f"got {tuple(x_t.shape)}")
        if cond is None or tuple(cond.shape) != want:
            raise ValueError(f"cond must be {want} (reference + masked target, through .encode); "
                             f"got {None if cond is None else tuple(cond.shape)}")
        t = torch.as_tensor(t, device=x_t.device).expand(B)  # (B,)
        h = torch.cat([x_t, cond], dim=1)  # (B, c + k·c, h, w): conv_in splits it again
        return self.unet(h, t, encoder_hidden_states=self.context(landmarks, drop, B)).sample

    # -- between pixels and the space diffusion runs on -------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3k, H, W) in [-1, 1] (k stacked images) -> (B, c·k, H/f, W/f) scaled latents (identity in pixel mode).

        ``z = (mean - shift) * scaling_factor``: LDM scales latents to unit variance (0.18215 for SD 1.x)."""
        if self.vae is None:
            return images
        B, C, H, W = images.shape
        if C % 3:
            raise ValueError(f"images must stack RGB images along channels (B, 3k, H, W); got {tuple(images.shape)}")
        mean = self.vae.encode(images.reshape(B * C // 3, 3, H, W)).latent_dist.mean  # (B·k, c, h, w)
        z = (mean - (self.vae.config.shift_factor or 0.0)) * self.vae.config.scaling_factor
        return z.reshape(B, -1, *z.shape[-2:])

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, c, h, w) scaled latents -> (B, 3, H, W) images in [-1, 1] (clamped; identity in pixel mode)."""
        if self.vae is None:
            return z.clamp(-1, 1)
        z = z / self.vae.config.scaling_factor + (self.vae.config.shift_factor or 0.0)
        return self.vae.decode(z).sample.clamp(-1, 1)

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, cfg: PretrainedConfig | None = None,
                        dtype: torch.dtype = torch.float32) -> PretrainedLandmarkUNet:
        """Adapt the UNet (and VAE) of a diffusers folder or hub id (see :func:`load_diffusers`).

        ``source`` defaults to ``cfg.model``; when both are None, the tiny stand-in of
        :func:`make_tiny_pretrained`, built once into ``cache_dir()/pretrained-tiny``."""
        cfg = cfg or PretrainedConfig.fast()
        source = source or cfg.model
        if source is None:
            source = cache_dir() / ("pretrained-tiny" if cfg.latent else "pretrained-tiny-pixels")
            if not source.exists():
                make_tiny_pretrained(source, latent=cfg.latent)
        unet, vae, scheduler = load_diffusers(source, latent=cfg.latent, dtype=dtype)
        return cls(unet, vae, cfg, diffusion_config_from_scheduler(scheduler))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, ema: bool = True) -> PretrainedLandmarkUNet:
        """A fine-tuned adapter from a checkpoint of our ``Trainer`` (``.../best`` or ``.../last``).

        Its JSON's ``model_config`` must be the adapter's config (``Trainer(..., model_config=
        model.cfg.to_dict())``): the base model is loaded for its architecture and schedule, then every
        weight is replaced by the checkpoint's (the EMA copy when there is one and ``ema``)."""
        tensors, meta = load_checkpoint(path)
        try:
            cfg = PretrainedConfig.from_dict(meta["model_config"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path} was not saved from a PretrainedLandmarkUNet (its model_config is not a "
                             f"PretrainedConfig: {e}); train with model_config=model.cfg.to_dict()") from e
        model = cls.from_pretrained(cfg.model, cfg)
        model.load_state_dict(model_weights(tensors, ema))
        return model


# -- loading a diffusers checkpoint ---------------------------------------------------------------
def _offline() -> bool:
    """True when the Hugging Face hub must not be contacted (read at call time, unlike huggingface_hub's constant)."""
    from huggingface_hub import constants
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or constants.HF_HUB_OFFLINE


def _check_folder(root: Path, latent: bool) -> None:
    """Check the diffusers layout of a local folder before touching any weights."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: pass a folder with unet/ (and vae/) subfolders in "
                                "diffusers layout, or a hub id such as " + SD15)
    subs = ["unet", "vae"] if latent else ["unet"]
    for sub in subs:
        if not (root / sub / "config.json").exists():
            hint = (" (this looks like a bare model folder: move its files into unet/)" if sub == "unet"
                    and (root / "config.json").exists() else "")
            raise FileNotFoundError(f"{root / sub / 'config.json'} is missing{hint}: expected diffusers layout "
                                    f"{root}/{{{','.join(subs)}}}/{{config.json, {WEIGHTS[0]}}}, "
                                    "as written by model.save_pretrained(folder / 'unet')")
        if not any((root / sub / w).exists() for w in WEIGHTS):
            raise FileNotFoundError(f"{root / sub} has a config.json but no weights ({WEIGHTS[0]} or .bin): "
                                    "the download or save was incomplete; save or download it again")


def _hub(source: str, call: Callable[..., Any], sub: str, **kw) -> Any:
    """``call(source, subfolder=sub)`` for a hub id, turning a failed look-up into an error saying what to download."""
    offline = _offline()
    try:
        return call(source, subfolder=sub, local_files_only=offline, **kw)
    except OSError as e:
        from huggingface_hub import constants
        files = " ".join(f"{d}/{f}" for d in ("unet", "vae") for f in ("config.json", WEIGHTS[0]))
        get = f"hf download {source} {files} scheduler/scheduler_config.json"
        if offline:
            raise OSError(f"{source!r} is not a local folder and not in the Hugging Face cache ({constants.HF_HUB_CACHE}), "
                          f"and HF_HUB_OFFLINE is set: on a machine with network run `{get}` (it fills that cache), "
                          f"or `{get} --local-dir DIR` and pass DIR") from e
        raise OSError(f"could not get {sub}/ of {source!r} from the Hugging Face hub: check the id and your network, "
                      f"log in (`hf auth login`) if the repository is gated, or run `{get} --local-dir DIR` "
                      "and pass DIR") from e


def load_diffusers(source: str | os.PathLike, latent: bool = True, dtype: torch.dtype = torch.float32
                   ) -> tuple[UNet2DConditionModel, AutoencoderKL | None, dict]:
    """Load ``unet/`` (+ ``vae/`` when ``latent``) and the ``scheduler/`` config of a local folder or hub id.

    A path that exists is a folder; otherwise ``owner/name`` is a hub id (downloaded, or read from
    the Hugging Face cache; never downloaded when ``HF_HUB_OFFLINE=1``). The UNet's config is checked
    before its weights are read, so a wrong model fails fast. Returns (unet, vae or None, scheduler config).
    """
    local = Path(source).expanduser()
    if local.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)) or str(source).startswith("."):
        _check_folder(local, latent)
        source, load = str(local), (lambda src, call, sub, **kw: call(src, subfolder=sub, **kw))
    else:
        load = _hub
    config = load(source, UNet2DConditionModel.load_config, "unet")
    if config.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        raise TypeError(f"{source}/unet is a {config['_class_name']}, which has no cross-attention, so landmark "
                        "tokens have nowhere to go: use a text-to-image UNet2DConditionModel (e.g. Stable Diffusion 1.x)")
    kw = dict(torch_dtype=dtype, low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None)  # else a warning
    unet = load(source, UNet2DConditionModel.from_pretrained, "unet", **kw)
    vae = load(source, AutoencoderKL.from_pretrained, "vae", **kw) if latent else None
    try:
        scheduler = load(source, DDIMScheduler.load_config, "scheduler")
    except OSError:
        scheduler = {}  # no scheduler/ subfolder: assume SD 1.x's
    return unet, vae, scheduler


# -- a tiny stand-in for Stable Diffusion, for tests and the fast preset ---------------------------
def make_tiny_pretrained(folder: str | os.PathLike, cross_attention_dim: int = 64, latent: bool = True,
                         seed: int = 0) -> Path:
    """Build a tiny Stable-Diffusion-shaped model and ``save_pretrained`` it to ``folder``; return ``folder``.

    ``folder/unet``: a ``UNet2DConditionModel`` with SD's block types (cross-attention at the two
    finer levels and in the middle) but widths 32/64/64; ``folder/vae``: an ``AutoencoderKL`` with
    4 latent channels and a factor of 4 (SD: 8), so 64 px faces become 16x16x4 latents, and a
    ``scaling_factor`` that gives the two bundled face photos unit-variance latents;
    ``folder/scheduler``: SD 1.x's noise schedule. ``latent=False`` makes a 3-channel pixel UNet
    and no VAE. The weights are random: it stands in for the *shape* of a pre-trained model, so
    that every code path (save, load, adapt, train, sample) runs offline in seconds.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists: load it with PretrainedLandmarkUNet.from_pretrained, or delete it first")
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")  # renamed into place when complete
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(seed)
    c = 4 if latent else 3
    unet = UNet2DConditionModel(
        sample_size=16 if latent else 64, in_channels=c, out_channels=c, layers_per_block=1,
        block_out_channels=(32, 64, 64), norm_num_groups=8, attention_head_dim=8, cross_attention_dim=cross_attention_dim,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    unet.save_pretrained(tmp / "unet")
    if latent:
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 32),
                            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                            layers_per_block=1, norm_num_groups=8, sample_size=64, mid_block_add_attention=False)
        faces = np.concatenate([aligned_crops(im[None], lm[None], 64)[0]
                                for im, lm in map(load_face, ("astronaut", "grace_hopper"))])
        with torch.no_grad():  # scale latents to unit variance, as LDM chose SD's 0.18215 from its data
            std = vae.encode(to_tensor(faces)).latent_dist.mean.std()
        vae.register_to_config(scaling_factor=float(1 / std))
        vae.save_pretrained(tmp / "vae")
    diffusers_ddim(diffusion_config_from_scheduler({})).save_pretrained(tmp / "scheduler")
    os.replace(tmp, folder)
    return folder
