"""Class activation maps and where they fall: the maths ``ssl-derm explain`` and the
benchmark's ``--cam-in-lesion`` share.

``compute_cams`` runs a pytorch-grad-cam method on the encoder's last stage
(``cam_layer``), whose feature map is 1/32 of the input, upsampled to the image; the
positive part of each map is kept and rescaled to [0, 1] per image. A lesion mask
(0 skin, 255 lesion) is cropped as its image was (``read_mask``), and
``cam_in_lesion`` = sum(cam * mask) / sum(cam) is the share of the map's mass inside
the lesion; ``centre_map`` is the baseline of a model that looks only at the centre.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ssl_derm.data import ImagePipeline
from ssl_derm.data.cache import decoded_size, fit_mask
from ssl_derm.errors import UserError

METHODS = ("gradcam", "gradcam++", "eigencam", "scorecam")


def cam_layer(encoder: nn.Module) -> nn.Module:
    """The encoder's last stage: the last block of a timm EfficientNet (smp's ``tu-``
    wrapper keeps the timm model in ``encoder.model``), ``layer4`` of a ResNet."""
    backbone = getattr(encoder, "model", encoder)
    if hasattr(backbone, "blocks"):
        return backbone.blocks[-1]
    if hasattr(backbone, "layer4"):
        return backbone.layer4
    raise UserError(f"explain: no last stage known for encoder {type(encoder).__name__} (blocks or layer4)")


def _cam_class(method: str):
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM, "scorecam": ScoreCAM}[method]


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    targets: np.ndarray,
    pipeline: ImagePipeline,
    method: str = "gradcam",
    dev: torch.device | str = "cpu",
    batch_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """float32 ``[N, S, S]`` maps in [0, 1] for uint8 ``images`` ``[N, 3, S, S]``, each
    explaining class ``targets[i]`` of ``model`` (a module returning logits), on the last
    stage of ``model.encoder``. Gradients are needed: inference mode is turned off inside,
    and weights a previous ``inference_mode`` pass turned into inference tensors are copied."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise UserError(f"--method {method}: choose one of {', '.join(METHODS)}")
    dev = torch.device(dev)
    model = model.eval().to(dev)
    pipeline = pipeline.to(dev)
    _without_inference_tensors(model)
    _without_inference_tensors(pipeline)
    # Score-CAM scores every channel of the layer as a mask over the image: [B, C, 3, S, S] at once
    batch_size = batch_size or (2 if method == "scorecam" else 32)
    out = np.zeros((len(images), *images.shape[-2:]), dtype=np.float32)
    cam = _cam_class(method)(model=model, target_layers=[cam_layer(model.encoder)])
    if method == "scorecam":
        cam.batch_size = 64  # masked copies per forward pass
    bar = tqdm(total=len(images), desc=f"{method} maps", unit="image", disable=not progress, leave=False)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for i in range(0, len(images), batch_size):
                x = pipeline(images[i : i + batch_size].to(dev))
                if method in ("gradcam", "gradcam++"):  # a graph through the layer even if weights are frozen
                    x.requires_grad_(True)
                chosen = [ClassifierOutputTarget(int(t)) for t in targets[i : i + batch_size]]
                # Score-CAM draws its own tqdm bar per image, on stderr
                quiet = contextlib.redirect_stderr(io.StringIO()) if method == "scorecam" else contextlib.nullcontext()
                with quiet:
                    out[i : i + len(x)] = cam(input_tensor=x, targets=chosen)
                bar.update(len(x))
    finally:
        cam.activations_and_grads.release()
        bar.close()
        model.zero_grad(set_to_none=True)
    return out


def _without_inference_tensors(model: nn.Module) -> None:
    """Replace, in place, parameters and buffers created under ``torch.inference_mode``
    (``predict_proba`` converts the weights to channels_last there) by ordinary copies:
    autograd refuses to save inference tensors for Grad-CAM's backward pass."""
    with torch.no_grad():
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None and p.is_inference():
                    module._parameters[name] = nn.Parameter(p.clone(), requires_grad=p.requires_grad)
            for name, b in list(module._buffers.items()):
                if b is not None and b.is_inference():
                    module._buffers[name] = b.clone()


def cam_in_lesion(cam: np.ndarray, mask: np.ndarray) -> float:
    """sum(cam * mask) / sum(cam) of one map (>= 0) and one lesion mask (bool or [0, 1])
    of the same shape: the share of the map's mass inside the lesion, in [0, 1]; NaN for
    an all-zero map (which explains nothing). A uniform map gives the lesion's area share."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.shape != np.shape(mask):
        raise ValueError(f"cam {cam.shape} and mask {np.shape(mask)} differ in shape")
    if (cam < 0).any():
        raise ValueError("cam has negative values; clip them first")
    total = cam.sum()
    return float((cam * np.asarray(mask, dtype=np.float64)).sum() / total) if total > 0 else math.nan


def centre_map(size: int, sigma: float = 0.25) -> np.ndarray:
    """A fixed map peaked at the image centre (Gaussian, ``sigma`` x size): the baseline of
    a model that only looks at the centre, where dermoscopy puts the lesion. Its
    ``cam_in_lesion`` is higher than the lesion's area share for centred lesions."""
    r = (np.arange(size) + 0.5 - size / 2) / (sigma * size)
    return np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2)).astype(np.float32)


def read_mask(path: Path, image: str, size: int, resize: str) -> np.ndarray | None:
    """The lesion mask file ``path`` of ``image``, aligned to the model's view of it
    (``fit_mask``, as training aligns masks); None, with a note, when it cannot be read."""
    try:
        with Image.open(path) as m:
            return fit_mask(m, size, resize, decoded_size(image, size))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        print(f"ssl-derm: note: mask {path} unreadable ({type(e).__name__}); skipped", file=sys.stderr)
        return None
