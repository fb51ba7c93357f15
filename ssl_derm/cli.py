"""``ssl-derm``: thin argparse front end; each sub-command parses, builds its
config and calls one function.  Exit codes: 0 success, 2 bad input or usage
(one line on stderr, no traceback), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ssl_derm import __version__
from ssl_derm.errors import UserError
from ssl_derm.pretext.registry import task_names, task_summaries  # reads the source: no torch import

EPILOG = """\
typical session (defaults use the bundled 316-image HAM10000 sample):
  ssl-derm data inspect ../shared/data/ham10000
  ssl-derm pretrain --task context_restore --out runs/cr
  ssl-derm finetune --init runs/cr/ssl.ckpt --out runs/ft
  ssl-derm finetune --target segmentation --init runs/cr/ssl.ckpt --out runs/seg
  ssl-derm evaluate --checkpoint runs/ft/model.ckpt --out runs/ev
  ssl-derm benchmark --inits random,imagenet,runs/cr/ssl.ckpt --out runs/bench
  ssl-derm predict --checkpoint runs/ft/model.ckpt --data new_images.zip --out runs/pred
  ssl-derm explain --checkpoint runs/ft/model.ckpt --out runs/explain
  ssl-derm embed --checkpoint runs/cr/ssl.ckpt --out runs/embed
  ssl-derm export --checkpoint runs/ft/model.ckpt --format onnx --out runs/model.onnx
  tensorboard --logdir runs

settings: YAML defaults (--config FILE), then flags, then --set key=value.
exit codes: 0 ok, 2 bad input (one line on stderr), 1 unexpected failure.
"""


def _engine_flags(p: argparse.ArgumentParser, data_help: str) -> None:
    g = p.add_argument_group("data and run folder")
    g.add_argument("--data", help=data_help)
    g.add_argument("--out", help="run folder (default: runs/<command>-<timestamp>)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--cache-dir", dest="cache_dir", help="decode cache (default ~/.cache/ssl-derm or $SSL_DERM_CACHE)")
    g.add_argument("--strict", action="store_true", default=None, help="unreadable images are an error, not skipped")
    g.add_argument("--seed", type=int, help="seed for splits, sampling and corruption (default 0)")
    m = p.add_argument_group("model and optimisation")
    m.add_argument("--encoder", help="efficientnet-lite0 (default), resnet18, resnet34, resnet50")
    m.add_argument("--image-size", dest="image_size", type=int, help="working size in px, multiple of 32")
    m.add_argument("--batch-size", dest="batch_size", type=int)
    m.add_argument("--epochs", type=int)
    m.add_argument("--max-steps", dest="max_steps", type=int, help="stop after this many steps (overrides epochs)")
    m.add_argument("--lr", type=float, help="learning rate (AdamW, warm-up + cosine)")
    h = p.add_argument_group("hardware (Lightning)")
    h.add_argument("--accelerator", help="auto (default), cpu, gpu")
    h.add_argument("--devices", help="auto (default) or a count; >1 runs DDP")
    h.add_argument("--num-nodes", dest="num_nodes", type=int)
    h.add_argument("--precision", help="32-true (default), bf16-mixed, 16-mixed (GPU)")
    c = p.add_argument_group("configuration")
    c.add_argument("--config", help="YAML file of settings (see configs/)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any setting; repeatable")
    c.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bars")


def _output_flags(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--out", help=f"output folder (default runs/{command}-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--cache-dir", dest="cache_dir", help="decode cache (default ~/.cache/ssl-derm or $SSL_DERM_CACHE)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _finetune_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--focal-gamma", dest="focal_gamma", type=float, help="focal loss gamma (default 1.0; 0 = CE)")
    g.add_argument(
        "--class-weights",
        dest="class_weights",
        choices=["auto", "none", "balanced", "median"],
        help="focal alpha per class (default auto: balanced, or none with --balanced-sampler)",
    )
    g.add_argument(
        "--label-fraction",
        dest="label_fraction",
        type=float,
        help="train on this lesion-grouped, stratified fraction of the training split",
    )
    g.add_argument("--splits", help="a splits.csv to reuse (columns image,label,group,split)")
    g.add_argument(
        "--freeze-epochs",
        dest="freeze_epochs",
        type=int,
        help="epochs with the encoder frozen first (LP-FT); then it trains, BatchNorm statistics included",
    )
    g.add_argument(
        "--freeze-bn",
        dest="freeze_bn",
        action="store_true",
        default=None,
        help="keep the init's BatchNorm running statistics for the whole run (affine weights still train)",
    )
    g.add_argument(
        "--freeze-blocks",
        dest="freeze_blocks",
        type=int,
        help="keep the first N encoder stages frozen the whole run, BatchNorm statistics included "
        "(EfficientNet-Lite0: stem, blocks.0-6; ResNet: stem, layer1-4); for sequential fine-tuning",
    )
    g.add_argument("--mixup", type=float, help="mixup alpha (e.g. 0.2): mix image pairs and their labels; 0 = off")
    g.add_argument("--cutmix", type=float, help="CutMix alpha (e.g. 1.0): paste a box of another image; 0 = off")
    g.add_argument(
        "--ema",
        type=float,
        help="decay of an exponential moving average of the weights (e.g. 0.999), validated and kept; 0 = off",
    )
    g.add_argument(
        "--logit-adjust",
        dest="logit_adjust",
        type=float,
        help="post-hoc logit adjustment tau (e.g. 1.0): logits - tau*log(class prior), for balanced accuracy",
    )
    g.add_argument(
        "--two-stage",
        dest="two_stage",
        action="store_true",
        default=None,
        help="two classifiers on one encoder: nevus (two_stage_class) vs the rest, then the other "
        "diagnoses among the rest, combined into ordinary class probabilities",
    )
    g.add_argument(
        "--balanced-sampler",
        dest="balanced_sampler",
        action="store_true",
        default=None,
        help="draw training images class-balanced (then class weights default to none)",
    )
    g.add_argument(
        "--linear-probe",
        dest="linear_probe",
        action="store_true",
        default=None,
        help="train the head only (encoder frozen throughout)",
    )
    s = p.add_argument_group(
        "lesion segmentation (--target segmentation)",
        "A U-Net whose encoder comes from --init and, from a context-restoration checkpoint,\n"
        "whose decoder too; Dice + BCE on lesion masks (HAM10000: masks/<image_id>_segmentation.png;\n"
        "CSV: a mask column), early-stopped on validation Dice. Focal loss, class weights and dropout\n"
        "do not apply; mixup, cutmix, two-stage, logit adjustment and the balanced sampler are refused.",
    )
    s.add_argument(
        "--target",
        choices=["classification", "segmentation"],
        help="what to fine-tune for (default classification)",
    )
    s.add_argument(
        "--init-decoder",
        dest="init_decoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start the U-Net decoder from the --init checkpoint's restored decoder when it has one "
        "(default on; --no-init-decoder trains it from scratch, to compare)",
    )
    s.add_argument(
        "--skip-missing-masks",
        dest="skip_missing_masks",
        action="store_true",
        default=None,
        help="leave out (and count) images whose mask is missing or unreadable, instead of stopping",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ssl-derm",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Self-supervised pretraining and fine-tuning for dermoscopy images.",
    )
    p.add_argument("--version", action="version", version=f"ssl-derm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("data", help="inspect a source or write its lesion-grouped splits")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    di = dsub.add_parser("inspect", help="images, classes, groups and unreadable files of a source")
    di.add_argument("path", nargs="?", help="HAM10000 folder, CSV, ImageFolder, or an unlabelled archive")
    di.add_argument("--json", action="store_true", help="print one JSON object")
    ds = dsub.add_parser("split", help="write DIR/splits.csv (group-aware, stratified)")
    ds.add_argument("path", nargs="?", help="labelled source (default: bundled sample)")
    ds.add_argument("--out", required=True)
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("--fractions", default="0.7,0.15,0.15", help="train,val,test (default 0.7,0.15,0.15)")
    ds.add_argument("--overwrite", action="store_true")

    tasks = "\n".join(f"  {name:16s}{line}" for name, line in task_summaries().items())
    pt = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of an encoder",
        description="Train an encoder with a pretext task on the training split of --data "
        "plus every --unlabeled archive. Writes OUT/ssl.ckpt, config.yaml, TensorBoard logs.",
        epilog=f"tasks:\n{tasks}\n\na task's own settings: --set <task>.<key>=value, or a YAML section <task>:\n"
        "  e.g. --set context_restore.swaps=10, --set simclr.temperature=0.2,\n"
        "       --task multitask --set multitask.parts=context_restore,rotation --set multitask.weights=1,0.5\n"
        "  (configs/pretrain/default.yaml lists every setting)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pt.add_argument("--task", choices=task_names(), help="pretext task (default context_restore; see below)")
    pt.add_argument("--init", help="random (default), imagenet, or an ssl-derm checkpoint to continue from")
    pt.add_argument(
        "--unlabeled",
        action="append",
        metavar="PATH",
        help="extra unlabelled images: folder, .zip, .tar[.gz], glob or .txt list; repeatable. Files that "
        "copy a validation/test image of --data (by content) are dropped and listed in OUT/duplicates.txt",
    )
    pt.add_argument(
        "--splits",
        help="a splits.csv (e.g. from ssl-derm data split): the pool takes its train rows; "
        "fine-tune later with the same file so no validation/test image was pretrained on",
    )
    _engine_flags(
        pt,
        "labelled source whose training split joins the pool (default: the bundled sample; with "
        "--unlabeled and no --data, the archives alone: no labelled images, no kNN monitor)",
    )

    ft = sub.add_parser(
        "finetune",
        help="train a focal-loss classifier (or a lesion-segmentation U-Net) on a (pretrained) encoder",
        description="Attach pooling + dropout + linear head to the encoder from --init and fine-tune\n"
        "with focal loss; or, with --target segmentation, a U-Net trained on lesion masks.\n"
        "Writes OUT/model.ckpt, metrics.json (test split), splits.csv.",
        epilog="examples:\n  ssl-derm finetune --init runs/cr/ssl.ckpt --data ../shared/data/ham10000 --out runs/ft\n"
        "  ssl-derm finetune --target segmentation --init runs/cr/ssl.ckpt --data ../shared/data/ham10000 "
        "--out runs/seg\n  ssl-derm finetune --target segmentation --init runs/cr/ssl.ckpt --no-init-decoder "
        "--out runs/seg-enc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ft.add_argument("--init", help="imagenet (default), random, or PATH/ssl.ckpt")
    _engine_flags(ft, "labelled source (default: bundled sample)")
    _finetune_flags(ft)

    ev = sub.add_parser(
        "evaluate",
        help="metrics and predictions of a fine-tuned model on a source",
        description="Score a model.ckpt on a labelled source. A classifier: OUT/metrics.json and "
        "predictions.csv (probabilities per class). A segmenter (finetune --target segmentation): "
        "OUT/metrics.json (Dice, Jaccard, Jaccard thresholded at 0.65, pixel accuracy; mean and per "
        "image), predictions.csv and the predicted masks as OUT/masks/<image>.png (0/255, working size).",
    )
    ev.add_argument("--checkpoint", required=True, help="model.ckpt written by finetune")
    ev.add_argument(
        "--data",
        help="labelled source (default: bundled sample); one that holds none of the model's train/val/test "
        "images is an external set, scored whole",
    )
    ev.add_argument(
        "--split",
        choices=["all", "train", "val", "test"],
        default="test",
        help="images to score: test (default), val or train of the split the model was trained with "
        "(recorded in model.ckpt), or all images of --data. Images the model or its pretraining "
        "saw are refused for every split but train",
    )
    ev.add_argument("--splits", help="take train/val/test from this splits.csv instead")
    ev.add_argument("--tta", action="store_true", help="average over the 8 flips and 90-degree rotations")
    ev.add_argument(
        "--skip-missing-masks",
        dest="skip_missing_masks",
        action="store_true",
        help="a segmenter: leave out (and count) images whose mask is missing or unreadable",
    )
    _output_flags(ev, "evaluate")

    bm = sub.add_parser(
        "benchmark",
        help="finetune every init x label fraction x seed on the same splits",
        description="Compare initialisations on one lesion-grouped split. Writes results.csv,\n"
        "results.md, label_efficiency.png, confusion matrices (classification). Finished runs are\n"
        "skipped on re-run. --target segmentation compares U-Nets on lesion masks (Dice, Jaccard,\n"
        "thresholded Jaccard, pixel accuracy; label_efficiency.png plots Dice).",
        epilog="segmentation inits: a checkpoint with a U-Net decoder (context restoration) may be named\n"
        "twice: PATH:encoder transfers the encoder only (named e.g. context_restore), PATH:decoder the\n"
        "encoder and the decoder (context_restore+decoder); a plain PATH follows --init-decoder.\n"
        "example:\n  ssl-derm benchmark --target segmentation --data ../shared/data/ham10000 --out runs/segbench \\\n"
        "    --inits random,imagenet,runs/cr/ssl.ckpt:encoder,runs/cr/ssl.ckpt:decoder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bm.add_argument(
        "--inits",
        help="comma list of random, imagenet, checkpoint paths (default random,imagenet); "
        "segmentation: PATH:encoder / PATH:decoder choose the decoder transfer per init",
    )
    bm.add_argument("--seeds", type=int, help="seeds per init and fraction (default 2)")
    bm.add_argument("--label-fractions", dest="label_fractions", help="comma list in (0,1] (default 0.1,1.0)")
    bm.add_argument(
        "--folds",
        type=int,
        help="lesion-grouped stratified K-fold (K >= 3): fold i tests on part i, validates on part i+1; "
        "mean ± std over folds and seeds (default 0: one split)",
    )
    bm.add_argument(
        "--select-on",
        dest="select_on",
        choices=["none", "val"],
        help="val: per init, fraction and fold, try every --select-grid point on a selection seed of its "
        "own (test never scored), keep the best validation score, and run every reported seed with it",
    )
    bm.add_argument(
        "--select-grid",
        dest="select_grid",
        help="key=v1,v2;key=v1,v2 over fine-tuning settings (default encoder_lr=0.0001,0.0003,0.001;freeze_epochs=0,1)",
    )
    bm.add_argument(
        "--select-extend",
        dest="select_extend",
        type=int,
        help="with --select-on val: while the winning encoder_lr is the lowest or highest tried, try one more "
        "step beyond it (the grid's own ratio), at most N times (default 0: the grid alone)",
    )
    bm.add_argument(
        "--budget-doublings",
        dest="budget_doublings",
        type=int,
        help="a run whose kept (best validation) epoch is the last of its budget runs again from scratch "
        "with twice the epochs, --min-steps and --min-epochs (patience unchanged), at most N times; the "
        "longer run replaces it in selection and tables (default 0: the budget as set)",
    )
    bm.add_argument(
        "--tta",
        action="store_true",
        default=None,
        help="also keep each run's test predictions with the 8 flips and 90-degree rotations "
        "(test_predictions_tta.csv) and report TTA's gain per init with a paired interval (classification)",
    )
    bm.add_argument(
        "--cam-in-lesion",
        dest="cam_in_lesion",
        action="store_true",
        default=None,
        help="also keep, per test image, the share of each run's Grad-CAM map inside the lesion mask "
        "(test_cam_in_lesion.csv; data with masks/) and compare the inits with paired intervals (classification)",
    )
    bm.add_argument(
        "--report-only",
        dest="report_only",
        action="store_true",
        help="train nothing: rewrite every table of the benchmark in --out from its finished runs "
        "(settings from its config.yaml; no other flag is read)",
    )
    _engine_flags(bm, "labelled source (default: bundled sample)")
    _finetune_flags(bm)

    source_help = (
        "images: a folder, .zip, .tar[.gz], glob or .txt list, or a labelled source (HAM10000 folder, "
        "CSV, ImageFolder) whose labels are then used where they help; repeatable (default: bundled sample)"
    )
    pr = sub.add_parser(
        "predict",
        help="classify (or segment) new images with a fine-tuned model",
        description="Run a model.ckpt over every image of --data. Writes OUT/predictions.csv (image, source, "
        "predicted label, one probability column per class) and OUT/skipped.txt for unreadable files. "
        "A segmentation model.ckpt (finetune --target segmentation) writes OUT/masks/<image>.png instead "
        "(255 = lesion, at the model's working size) and each image's predicted lesion area.",
        epilog="examples:\n  ssl-derm predict --checkpoint runs/ft/model.ckpt "
        "--data ../shared/data/isic_unlabeled.zip --tta --out runs/pred\n"
        "  ssl-derm predict --checkpoint runs/seg/model.ckpt --data new_images/ --out runs/masks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pr.add_argument("--checkpoint", required=True, help="model.ckpt written by finetune")
    pr.add_argument("--data", action="append", metavar="SOURCE", help=source_help)
    pr.add_argument("--tta", action="store_true", help="average over the 8 flips and 90-degree rotations (8x slower)")
    _output_flags(pr, "predict")
    pr.add_argument("--batch-size", dest="batch_size", type=int, default=128)

    xp = sub.add_parser(
        "explain",
        help="Grad-CAM heat maps: where the fine-tuned model looks",
        description="Class activation maps (pytorch-grad-cam) on the encoder's last stage for --n images of "
        "--data: OUT/images/*.png (image, overlay, labels), OUT/grid_<class>.png, OUT/explain.csv and a "
        "TensorBoard image summary. With labels, the worst mistakes come first; with lesion masks "
        "(HAM10000's masks/ folder), the share of the map inside the lesion is reported.",
        epilog="example:\n  ssl-derm explain --checkpoint runs/ft/model.ckpt --data ../shared/data/ham10000 "
        "--split test --n 32 --out runs/explain",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    xp.add_argument("--checkpoint", required=True, help="model.ckpt written by finetune")
    xp.add_argument("--data", action="append", metavar="SOURCE", help=source_help)
    xp.add_argument("--n", type=int, default=16, help="images to explain (default 16; 0 = all)")
    xp.add_argument(
        "--target",
        default="predicted",
        help="the class each map explains: predicted (default), true (needs labels) or a class name",
    )
    xp.add_argument(
        "--method",
        choices=["gradcam", "gradcam++", "eigencam", "scorecam"],
        default="gradcam",
        help="CAM method (default gradcam)",
    )
    xp.add_argument(
        "--split",
        choices=["all", "train", "val", "test"],
        default="all",
        help="for a labelled --data: only this split of the model's training run (default all)",
    )
    xp.add_argument("--masks", help="folder of lesion masks <image_id>_segmentation.png (default: SOURCE/masks)")
    _output_flags(xp, "explain")

    em = sub.add_parser(
        "embed",
        help="encoder features of every image, a 2-D map of them, kNN / linear-probe scores",
        description="Pooled encoder features of every image of --data (and --unlabeled): OUT/features.npy, "
        "OUT/embeddings.csv (image, source, label, x, y), scatter plots coloured by label and by source, "
        "TensorBoard projector files, and with labels the kNN and linear-probe balanced accuracy.",
        epilog="example:\n  ssl-derm embed --checkpoint runs/cr/ssl.ckpt --data ../shared/data/ham10000 "
        "--unlabeled ../shared/data/isic_unlabeled.zip --method tsne --out runs/embed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    em.add_argument(
        "--checkpoint", required=True, help="ssl.ckpt, model.ckpt, imagenet or random (then --encoder, --image-size)"
    )
    em.add_argument("--data", action="append", metavar="SOURCE", help=source_help)
    em.add_argument("--unlabeled", action="append", metavar="SOURCE", help="more sources, shown by source; repeatable")
    em.add_argument(
        "--method", choices=["tsne", "umap", "pca"], default="tsne", help="2-D map (umap: pip install umap-learn)"
    )
    em.add_argument("--encoder", help="for imagenet/random: efficientnet-lite0 (default), resnet18, ...")
    em.add_argument("--image-size", dest="image_size", type=int, help="default: the checkpoint's, else 128")
    em.add_argument("--seed", type=int, default=0, help="seed of t-SNE/UMAP and of the probe's folds")
    _output_flags(em, "embed")
    em.add_argument("--batch-size", dest="batch_size", type=int, default=128)

    ex = sub.add_parser(
        "export",
        help="a classifier or encoder others can run without ssl-derm",
        description="Export a model.ckpt (classifier: normalised image in, logits out) or an ssl.ckpt "
        "(encoder: pooled features out). torchscript and onnx take a float [B, 3, S, S] batch already "
        "normalised with the checkpoint's mean/std (written beside the file as FILE.json); safetensors "
        "holds the weights under the plain timm / torchvision names of the architecture.",
        epilog="examples:\n  ssl-derm export --checkpoint runs/ft/model.ckpt --format onnx --out model.onnx\n"
        "  ssl-derm export --checkpoint runs/cr/ssl.ckpt --format safetensors --out encoder.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("--checkpoint", required=True, help="model.ckpt or ssl.ckpt")
    ex.add_argument("--format", required=True, choices=["torchscript", "onnx", "safetensors"])
    ex.add_argument("--out", required=True, help="file to write (its folder is created)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing file")

    sp = sub.add_parser("bench-speed", help="images/s of every stage against a plain PyTorch loop")
    sp.add_argument("--out", help="output folder (default runs/bench-speed-<timestamp>)")
    sp.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    sp.add_argument("--data", help="labelled source (default: bundled sample)")
    sp.add_argument("--overwrite", action="store_true")
    sp.add_argument("--image-size", type=int, help="px, multiple of 32 (default 128; --quick 64)")
    sp.add_argument("--batch-size", type=int, help="pretraining batch (default 32; --quick 16)")
    sp.add_argument("--finetune-batch-size", type=int, help="fine-tuning and loader batch (default: --batch-size)")
    sp.add_argument("--steps", type=int, help="timed steps per stage, after the warm-up (default 10; --quick 3)")
    sp.add_argument(
        "--precision",
        default="32-true",
        choices=["32-true", "bf16-mixed", "16-mixed"],
        help="32-true (default), bf16-mixed, 16-mixed (GPU); the plain loop autocasts (and scales) alike",
    )
    sp.add_argument("--no-archive-probe", action="store_true", help="skip the archive-streaming memory probe")
    sp.add_argument(
        "--sync-report",
        action="store_true",
        help="GPU: instead of timing, count the calls that make the host wait for the GPU per training step, by line",
    )
    sp.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the command line below on its lines
    sp.epilog = (
        "the GPU profile's sizes:\n"
        "  ssl-derm bench-speed --image-size 224 --batch-size 256 --finetune-batch-size 64 \\\n"
        "    --precision bf16-mixed --steps 30 --no-archive-probe"
    )
    return p


def _settings(args: argparse.Namespace, cls: type):
    """The command's settings: ``cls``'s defaults, then ``--config``, then every flag that names a
    field of ``cls`` (the others, such as --overwrite, steer the command), then ``--set``."""
    from dataclasses import fields

    from ssl_derm.config import build_config, load_yaml, parse_set

    names = {f.name for f in fields(cls)}
    flags = {k: v for k, v in vars(args).items() if v is not None and k in names}
    if "unlabeled" in flags:
        flags["unlabeled"] = tuple(flags["unlabeled"])
    base = load_yaml(args.config) if args.config else {}
    return build_config(cls, base, flags, parse_set(args.set))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "data":
        from ssl_derm.commands.data import inspect_command, split_command

        if args.data_command == "inspect":
            return inspect_command(args.path, args.json)
        if args.data_command == "split":
            return split_command(args.path, args.out, args.seed, args.fractions, args.overwrite)
        raise UserError("data: choose an action: inspect or split (see ssl-derm data --help)")
    if args.command == "pretrain":
        from ssl_derm.config import PretrainConfig
        from ssl_derm.pretext.train import run_pretrain

        run_pretrain(_settings(args, PretrainConfig), overwrite=args.overwrite, resume=args.resume)
        return 0
    if args.command == "finetune":
        from ssl_derm.config import FinetuneConfig
        from ssl_derm.finetune.train import run_finetune

        run_finetune(_settings(args, FinetuneConfig), overwrite=args.overwrite, resume=args.resume)
        return 0
    if args.command == "evaluate":
        from ssl_derm.finetune.evaluate import run_evaluate

        run_evaluate(
            args.checkpoint,
            args.data,
            args.out,
            args.split,
            args.splits,
            args.overwrite,
            args.cache_dir,
            args.tta,
            skip_missing_masks=args.skip_missing_masks,
            progress=args.progress,
        )
        return 0
    if args.command == "predict":
        from ssl_derm.commands.predict import run_predict

        run_predict(
            args.checkpoint,
            args.data,
            args.out,
            args.tta,
            args.overwrite,
            args.cache_dir,
            args.batch_size,
            args.progress,
        )
        return 0
    if args.command == "explain":
        from ssl_derm.commands.explain import run_explain

        run_explain(
            args.checkpoint,
            args.data,
            args.out,
            n=args.n,
            target=args.target,
            method=args.method,
            split=args.split,
            masks=args.masks,
            overwrite=args.overwrite,
            cache_dir=args.cache_dir,
            progress=args.progress,
        )
        return 0
    if args.command == "embed":
        from ssl_derm.commands.embed import run_embed

        run_embed(
            args.checkpoint,
            args.data,
            args.unlabeled,
            args.out,
            method=args.method,
            encoder=args.encoder,
            image_size=args.image_size,
            seed=args.seed,
            overwrite=args.overwrite,
            cache_dir=args.cache_dir,
            batch_size=args.batch_size,
            progress=args.progress,
        )
        return 0
    if args.command == "export":
        from ssl_derm.commands.export import run_export

        run_export(args.checkpoint, args.format, args.out, args.overwrite)
        return 0
    if args.command == "benchmark":
        from ssl_derm.config import BenchmarkConfig
        from ssl_derm.finetune.benchmark import report_benchmark, run_benchmark

        if args.report_only:
            if not args.out:
                raise UserError("--report-only: name the benchmark folder with --out")
            report_benchmark(args.out)
            return 0

        run_benchmark(_settings(args, BenchmarkConfig), overwrite=args.overwrite, resume=args.resume)
        return 0
    if args.command == "bench-speed":
        from ssl_derm.commands.bench_speed import run_bench_speed

        run_bench_speed(
            args.out,
            args.quick,
            args.data,
            args.overwrite,
            image_size=args.image_size,
            batch_size=args.batch_size,
            finetune_batch_size=args.finetune_batch_size,
            steps=args.steps,
            precision=args.precision,
            archive=not args.no_archive_probe,
            sync_report=args.sync_report,
        )
        return 0
    build_parser().print_help()
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="pytorch_lightning")
    from ssl_derm.engine import RunFailed

    try:
        return _dispatch(args)
    except UserError as e:
        print(f"ssl-derm: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"ssl-derm: run stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ssl-derm: interrupted; continue with the same command and --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
