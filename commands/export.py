"""``ssl-derm export``: a classifier or an encoder others can run without ssl-derm.

``--checkpoint`` is a ``model.ckpt`` (classifier: image in, scores out) or an
``ssl.ckpt`` (encoder: image in, pooled features out: the global average of the
last feature map, what the classifier's head sees).  Three formats:

* ``torchscript``: ``torch.jit.trace`` of the model on a ``[2, 3, S, S]`` batch,
  saved with ``torch.jit.save``; ``torch.jit.load(FILE)(x)`` runs it with torch
  alone.  TorchScript is deprecated in recent torch (2.9+) but still reads and
  runs everywhere; its deprecation warnings are silenced here, nothing else.
  Tracing fixes the image size: feed ``S x S``.
* ``onnx``: ``torch.onnx.export`` (the ``torch.export``-based exporter, in one file,
  no external data) with a dynamic batch axis; input ``image`` ``[batch, 3, S, S]``,
  one output named as the sidecar's ``output`` (``logits``, ``log_probabilities``
  or ``pooled_features``).  Needs the ``export`` extra (``pip install
  "ssl-derm[export]"``: onnx, onnxruntime, onnxscript); without it the command
  stops at once with that hint.
* ``safetensors``: the weights under the plain names of the architecture, timm's
  ``tf_efficientnet_lite0`` or torchvision's ``resnet18/34/50``.  ssl-derm pools
  the encoder's last block directly, so for EfficientNet-Lite0 the timm model
  loses its ``conv_head`` and ``bn2`` (1x1 conv to 1280 channels + BN + ReLU6,
  which ssl-derm never had) and its ``classifier`` becomes ``Linear(320, K)``::

      model = timm.create_model("tf_efficientnet_lite0", num_classes=0)
      model.conv_head, model.bn2 = torch.nn.Identity(), torch.nn.Identity()
      model.classifier = torch.nn.Linear(320, K)  # a classifier; an encoder keeps num_classes=0
      model.load_state_dict(load_file(FILE))      # strict
      model.eval()  # model(x): logits [B, K], or pooled features [B, 320]

  (an encoder's keys also load strictly into ``timm.create_model(
  "tf_efficientnet_lite0", features_only=True)``, whose last map, averaged, is
  the same features).  A ResNet is torchvision's own: ``resnet18(num_classes=K)``
  for a classifier (head in ``fc``), ``resnet18()`` with ``fc = Identity()`` for
  an encoder.  A two-stage head has no plain counterpart: its tensors stay as
  ``head.stage1.*`` / ``head.stage2.*`` beside the encoder, and the snippet in
  the sidecar pops them before the strict load and combines them into the
  K-class log-probabilities as ssl-derm does.

Every format writes ``FILE`` and its sidecar ``FILE.json``: the input (size,
mean, std, the resize mode: ``crop`` = short side to S then the centre square,
``squash`` = straight to S x S; RGB in [0, 1], then ``(x - mean) / std``), the
class names of a classifier, what the output means (``logits``, or
``log_probabilities`` for a two-stage head: a softmax of either gives
probabilities; ``pooled_features`` for an encoder), the architecture, the Python
that loads a safetensors file, the ssl-derm version and the source
checkpoint's task.  torchscript and onnx take a float batch that is already
normalised.

Everything runs on the CPU.  Before anything lands at ``FILE`` the written file
is read back with its own runtime (``torch.jit.load``, onnxruntime, or the plain
timm / torchvision model built by executing the sidecar's snippet) and run on a
fixed batch of another size than the traced one; beyond ``TOLERANCE`` of
ssl-derm's own output it is deleted and the export refused (``UserError``).
Files are written to a temporary name in ``FILE``'s folder and renamed, so a
kill never leaves half a file; nothing is written outside ``FILE`` and
``FILE.json`` (and ``FILE``'s folder, created when missing); an existing one is
kept unless ``--overwrite``; ``--out`` is never the checkpoint itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ssl_derm import __version__
from ssl_derm.checkpoint import checkpoint_file, is_checkpoint
from ssl_derm.commands.common import LoadedModel, load_model
from ssl_derm.encoders import feature_dim, pooled_features
from ssl_derm.errors import UserError
from ssl_derm.finetune.classifier import TwoStageHead

FORMATS = ("torchscript", "onnx", "safetensors", "init")
TOLERANCE = 1e-4
HALF_TOLERANCE = 0.05  # --half: pooled features (ReLU6, up to 6) after rounding the weights to fp16
ONNX_MODULES = ("onnx", "onnxruntime", "onnxscript")
# ssl-derm encoder name -> (library, model name) of the plain architecture
ARCHITECTURES = {
    "efficientnet-lite0": ("timm", "tf_efficientnet_lite0"),
    "resnet18": ("torchvision", "resnet18"),
    "resnet34": ("torchvision", "resnet34"),
    "resnet50": ("torchvision", "resnet50"),
}
RESIZE_MEANING = {
    "crop": "short side to image_size (PIL bilinear), then the centre image_size x image_size square",
    "squash": "straight to image_size x image_size (PIL bilinear), aspect ratio not kept",
}


class PooledFeatures(nn.Module):
    """An encoder as a function of the image: ``[B, 3, S, S]`` -> ``[B, D]`` pooled features."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.encoder, x)


# ---------------------------------------------------------------- what is exported


def _head(loaded: LoadedModel) -> nn.Module | None:
    return None if loaded.classifier is None else loaded.classifier.head


def _output_kind(loaded: LoadedModel) -> str:
    head = _head(loaded)
    if head is None:
        return "pooled_features"
    return "log_probabilities" if isinstance(head, TwoStageHead) else "logits"


def _linear(head: nn.Module) -> nn.Linear:
    if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
        return head[-1]
    raise UserError(f"export: unknown classifier head {type(head).__name__}")


def _module(loaded: LoadedModel, fmt: str = "") -> nn.Module:
    """The exported function: the classifier of a model.ckpt, else (and for ``init``) the encoder."""
    if loaded.classifier is not None and fmt != "init":
        return loaded.classifier.eval()
    return PooledFeatures(loaded.encoder).eval()


def _example(size: int, batch: int, seed: int) -> torch.Tensor:
    """A fixed batch of the scale of normalised images (trace and check inputs)."""
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- safetensors


def plain_state_dict(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    """The weights under the plain timm / torchvision names (see the module docstring)."""
    library, _ = _architecture(loaded)
    state = loaded.encoder.state_dict()
    if library == "timm":  # smp keeps the timm model at ``encoder.model``
        state = {k.removeprefix("model."): v for k, v in state.items()}
    head = _head(loaded)
    if isinstance(head, TwoStageHead):
        state.update({f"head.{k}": v for k, v in head.state_dict().items()})
    elif head is not None:
        linear = _linear(head)
        prefix = "classifier" if library == "timm" else "fc"
        state.update({f"{prefix}.weight": linear.weight, f"{prefix}.bias": linear.bias})
    return {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}


def _architecture(loaded: LoadedModel) -> tuple[str, str]:
    name = loaded.ckpt["encoder_name"]
    if name not in ARCHITECTURES:
        raise UserError(f"export: no plain architecture known for encoder {name!r}")
    return ARCHITECTURES[name]


def _py(text: str) -> str:
    """A Python string literal (a JSON string is one), in double quotes."""
    return json.dumps(text)


def load_snippet(loaded: LoadedModel, file_name: str) -> str:
    """Python that rebuilds the plain model and loads ``file_name`` (strict keys)."""
    library, arch = _architecture(loaded)
    head, dim = _head(loaded), feature_dim(loaded.encoder)
    k = len(loaded.classes) if loaded.classes else 0
    two_stage = isinstance(head, TwoStageHead)
    lines = ["import timm", "import torch"] if library == "timm" else ["import torch", "import torchvision"]
    lines += ["from safetensors.torch import load_file", ""]
    if library == "timm":
        lines += [
            f"model = timm.create_model({_py(arch)}, num_classes=0)",
            f"model.conv_head, model.bn2 = torch.nn.Identity(), torch.nn.Identity()  # pool the {dim} channels",
        ]
        if head is not None and not two_stage:
            lines.append(f"model.classifier = torch.nn.Linear({dim}, {k})")
    else:
        if head is not None and not two_stage:
            lines.append(f"model = torchvision.models.{arch}(num_classes={k})")
        else:
            lines += [f"model = torchvision.models.{arch}()", "model.fc = torch.nn.Identity()"]
    if not two_stage:
        what = f"pooled features [B, {dim}]" if head is None else f"logits [B, {k}] of {file_name}.json's class_names"
        return "\n".join(
            [
                *lines,
                f"model.load_state_dict(load_file({_py(file_name)}))  # strict",
                f"model.eval()  # model(x): {what}",
            ]
        )
    others = [i for i in range(k) if i != head.first]
    return "\n".join(
        [
            *lines,
            f"state = load_file({_py(file_name)})",
            'head = {n.removeprefix("head."): state.pop(n) for n in list(state) if n.startswith("head.")}',
            f"model.load_state_dict(state)  # strict; model(x): pooled features [B, {dim}]",
            "model.eval()",
            "",
            "",
            f"def log_probabilities(x):  # [B, {k}]; a softmax of them gives the probabilities",
            "    f = model(x)",
            '    lp1 = torch.log_softmax(f @ head["stage1.weight"].T + head["stage1.bias"], 1)  # first class, rest',
            '    lp2 = torch.log_softmax(f @ head["stage2.weight"].T + head["stage2.bias"], 1)  # the others',
            f"    out = torch.empty(len(f), {k})",
            f"    out[:, {head.first}] = lp1[:, 0]",
            f"    out[:, {others}] = lp1[:, 1:] + lp2",
            "    return out",
        ]
    )


def run_plain(loaded: LoadedModel, path: Path, x: torch.Tensor) -> torch.Tensor:
    """Load ``path`` into the plain model exactly as ``load_snippet`` says and run it on ``x``."""
    namespace: dict = {}
    exec(compile(load_snippet(loaded, str(path)), "<export snippet>", "exec"), namespace)  # our own text
    with torch.no_grad():
        return namespace.get("log_probabilities", namespace["model"])(x)


# ---------------------------------------------------------------- writers


def _write_torchscript(module: nn.Module, path: Path, example: torch.Tensor, check: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.* is deprecated"
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # sizes become constants: input is S x S
        with torch.no_grad():
            traced = torch.jit.trace(module, example, check_trace=False)  # checked below, on another batch
        torch.jit.save(traced, str(path))
        reloaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return reloaded(check)


def _write_onnx(module: nn.Module, path: Path, example: torch.Tensor, check: torch.Tensor, output: str) -> torch.Tensor:
    import onnxruntime

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["image"],
            output_names=[output],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"image": check.numpy()})[0])


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))


def _write_safetensors(loaded: LoadedModel, path: Path, check: torch.Tensor, info: dict) -> torch.Tensor:
    from safetensors.torch import save

    path.write_bytes(save(plain_state_dict(loaded), metadata={"format": "pt", "ssl_derm": json.dumps(info)}))
    return run_plain(loaded, path, check)


# ---------------------------------------------------------------- an encoder file for --init


def _write_init(loaded: LoadedModel, path: Path, check: torch.Tensor, half: bool) -> torch.Tensor:
    """The checkpoint's encoder and its record of seen images as an encoder file, read back as
    ``--init`` reads it (``load_checkpoint``) and run on ``check``."""
    from ssl_derm.checkpoint import write_encoder_file
    from ssl_derm.encoders import build_encoder

    write_encoder_file(loaded.ckpt, path, half=half)
    back = build_encoder(loaded.ckpt["encoder_name"], path).eval()
    with torch.no_grad():
        return pooled_features(back, check)


def _onnx_available() -> None:
    missing = [m for m in ONNX_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f'--format onnx needs {", ".join(missing)}: pip install "ssl-derm[export]"')


# ---------------------------------------------------------------- the command


def _check_out(out: Path, sidecar: Path, checkpoint: str, overwrite: bool) -> None:
    for path in (out, sidecar):
        if path.is_dir():
            raise UserError(f"--out {out}: {path} is a folder; give the file to write, e.g. {path / 'model.onnx'}")
        if path.exists() and not overwrite:
            raise UserError(f"--out {out}: {path} exists; pass --overwrite to replace it")
        if path.exists() and path.resolve() == checkpoint_file(checkpoint).resolve():
            raise UserError(f"--out {out}: would replace the checkpoint {checkpoint} itself")
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"--out {out}: {out.parent} is not a folder")


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def run_export(checkpoint: str, fmt: str, out: str, overwrite: bool = False, half: bool = False) -> dict:
    """Export ``checkpoint`` as ``fmt`` to ``out`` (+ ``out.json``); return the sidecar's content
    with ``file``, ``sidecar`` and the check's ``max_abs_diff``. ``init``: an encoder file that
    ``--init`` takes (``half``: fp16 weights)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose {', '.join(FORMATS)}")
    if half and fmt != "init":
        raise UserError("--half rounds an encoder file's weights to fp16: it goes with --format init")
    if fmt == "init" and Path(out).suffix != ".safetensors":
        raise UserError(f"--out {out}: an encoder file ends in .safetensors (ssl-derm reads it by that suffix)")
    if not is_checkpoint(checkpoint):
        raise UserError(
            f"--checkpoint {checkpoint}: no such file; export needs a model.ckpt (ssl-derm finetune) "
            "or an ssl.ckpt (ssl-derm pretrain)"
        )
    out_path = Path(out)
    sidecar = out_path.with_name(out_path.name + ".json")
    _check_out(out_path, sidecar, checkpoint, overwrite)
    if fmt == "onnx":
        _onnx_available()
    loaded = load_model(checkpoint)
    library, arch = _architecture(loaded)
    module = _module(loaded, fmt)
    output = "pooled_features" if fmt == "init" else _output_kind(loaded)
    size = loaded.image_size
    example, check = _example(size, 2, 0), _example(size, 3, 1)  # two batch sizes: the batch axis stays free
    with torch.no_grad():
        expected = module(check)
    info = {
        "format": fmt,
        "file": out_path.name,
        "task": "classifier" if loaded.classifier is not None and fmt != "init" else "encoder",
        "source_checkpoint": str(checkpoint),
        "source_task": loaded.ckpt["task"],
        "encoder": loaded.ckpt["encoder_name"],
        "architecture": {"library": library, "model": arch},
        "input": {
            "name": "image",
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "layout": "NCHW, RGB",
            "image_size": size,
            "resize": loaded.resize,
            "resize_meaning": RESIZE_MEANING.get(loaded.resize, loaded.resize),
            "mean": list(loaded.normalization["mean"]),
            "std": list(loaded.normalization["std"]),
            "normalisation": "RGB scaled to [0, 1], then (x - mean) / std per channel",
        },
        "output": output,
        "output_shape": ["batch", feature_dim(loaded.encoder) if output == "pooled_features" else len(loaded.classes)],
        "class_names": loaded.classes if output != "pooled_features" else None,
        "ssl_derm_version": __version__,
        "torch_version": str(torch.__version__),
    }
    if output == "log_probabilities":
        info["two_stage_first_class"] = loaded.classes[loaded.classifier.head.first]
    if fmt == "safetensors":
        info["load"] = load_snippet(loaded, out_path.name)
    if fmt == "init":
        seen = loaded.ckpt["seen_images"]
        info["precision"] = "fp16" if half else "fp32"
        info["seen_images"] = len(seen["sha1"])
        info["init_chain"] = loaded.ckpt.get("init_chain") or loaded.ckpt["task"]
        info["load"] = f"ssl-derm finetune --init {out_path.name} ...  (or benchmark --inits ...,{out_path.name})"
    if fmt == "onnx":
        import onnxruntime

        info["onnxruntime_checked_with"] = str(onnxruntime.__version__)

    new_folders = [p for p in [out_path.parent, *out_path.parent.parents] if not p.exists()]
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create its folder ({e.strerror})") from None
    tmp, done = _temporary(out_path), False
    try:
        if fmt == "torchscript":
            got = _write_torchscript(module, tmp, example, check)
        elif fmt == "onnx":
            got = _write_onnx(module, tmp, example, check, output)
            info["onnx_opset"] = _opset(tmp)
        elif fmt == "init":
            got = _write_init(loaded, tmp.with_suffix(".safetensors"), check, half)
            tmp.with_suffix(".safetensors").replace(tmp)
        else:
            got = _write_safetensors(loaded, tmp, check, info)
        diff = float((got.float() - expected.float()).abs().max())
        tolerance = HALF_TOLERANCE if half else TOLERANCE
        if not diff <= tolerance:
            raise UserError(
                f"export check failed: the {fmt} model differs from ssl-derm by {diff:.2e} (> {tolerance:g}) "
                f"on a test batch; nothing written"
            )
        info["check"] = {"max_abs_diff": diff, "tolerance": tolerance, "batch": list(check.shape)}
        tmp_sidecar = _temporary(sidecar)
        tmp_sidecar.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, out_path)
        os.replace(tmp_sidecar, sidecar)
        done = True
    finally:
        for t in (tmp, tmp.with_suffix(".safetensors"), _temporary(sidecar)):
            t.unlink(missing_ok=True)
        for folder in [] if done else new_folders:  # a failed export leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
    what = f"{info['task']} ({output}, {info['output_shape'][1]})"
    print(f"exported {what} of {checkpoint} as {fmt} to {out_path} (+ {sidecar.name}); max diff {diff:.1e}")
    return {**info, "file": str(out_path), "sidecar": str(sidecar)}
