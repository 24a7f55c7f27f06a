"""Personalized segmentation on real heads (issue 19): one run, baselines beside, Dice matched by segment NAME.

    .venv/bin/python benchmarks/personalized/real_heads.py [--data ../shared/data] [--models personalized-v10,personalized-v9]
        [--skip-colin] [--out results.json]

Cases (all from `--data`; evaluation only, never training):
- SPM oldnorm T1/T2/PD (2 mm, smoothed) and avg152 T1/T2/PD (2 mm), every non-empty subset; truth = oldseg
  grey/white/CSF maps (argmax where the largest is >= 0.5, else background).
- Robustness on oldnorm: a PET-like image (uptake grey 1, white .3, CSF .05, 6 mm blur, rendered from the oldseg maps)
  added to T1; an EPI-like image (oldnorm T2 at 3.5 mm, EPI distortion, drop-out, noise) added to T1 as "T2"; T1 rotated 15 degrees about two axes (truth rotated with it); T1 cropped to the upper 60 % of the head;
  a 2 x 2 x 6 mm anisotropic T1 (every third slice of a 6 mm-smoothed copy) segmented and compared on its own grid;
  the head turned 15 degrees about two axes inside the unchanged grid (anatomy and truth move in world space, so a
  prior that is not registered would be misplaced).
- Colin27 `ch2` (1 mm, 181 x 217 x 181, one individual brain): grey-matter Dice against the union of the AAL regions
  inside `ch2bet` (the prediction is restricted to `ch2bet` too); seconds of `segment_volumes`, and seconds and peak
  memory of `multimodalgen segment` in a fresh process (the speed/memory target; the in-process peak counts this
  benchmark's own data).

Baseline: k-means (k = 3) on the stacked normalised intensities inside an ORACLE brain mask (truth > 0), clusters
assigned to classes by the best permutation against the truth (generous: it sees the truth twice). The fair
baseline beside it: the same k-means inside the first model's own brain mask (its grey + white + CSF), no oracle
(`--no-fair-kmeans` skips it): what intensity clustering adds to the model's brain outline, or loses against it.
The image-free baseline (`--no-atlas-prior` skips it): SPM's tissue probability map (TPM.nii.gz, MNI space)
resampled onto each case's grid, each voxel given its most probable of the six TPM classes. Every case here is in
MNI space, so this row says how much of a score position alone earns; the oldseg truth is itself a population
average, which favours it.

`--atlas` adds the first model with SPM's TPM as its spatial prior (`segment --atlas TPM.nii.gz --atlas-weight W`:
the TPM placed on each case by the package's own affine registration, `personalized.atlas`) in every table, the
robustness cases, Colin27 and the CLI timing; and beside it the same pipeline with the network's answer replaced by
uniform probabilities (`atlas_em_labels`): the placed TPM as the only prior of the intensity refinement and the CSF
shell, i.e. what the atlas and the Gaussian-mixture EM give without the network (SPM's unified segmentation, roughly).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encoder"))   # heldout_contrasts (EPI-like renderer)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # peak_memory

from peak_memory import run_with_peak_memory

CLASSES = ("grey matter", "white matter", "cerebrospinal fluid")
NETWORK_ONLY = " (refine none)"
WITH_ATLAS = " + TPM atlas"   # the model with `segment --atlas TPM.nii.gz` (SPM's TPM placed by our registration)
ATLAS_EM = "TPM atlas + EM (no network)"   # SPM-style baseline: the placed TPM as the only prior of the refinement
KMEANS_MODEL_MASK = "k-means (brain mask of "   # + model name + ")": the fair baseline, no oracle
ATLAS_PRIOR = "TPM atlas (no image)"   # SPM's tissue probability map in MNI space, argmax: what position alone gives
MODALITIES = ("T1", "T2", "PD")


def canonical(name: str) -> str:
    """Segment name -> the canonical class name (legacy GM/WM/CSF spellings accepted)."""
    from multimodalgen.terminology import canonical_name

    return canonical_name(name)


def truth_labels(spm: Path):
    """oldseg -> label Volume with values 1 grey, 2 white, 3 CSF (names in metadata)."""
    from multimodalgen.io import read_volume
    from multimodalgen.volume import Volume

    maps = [read_volume(spm / f"oldseg_{t}.nii.gz") for t in ("grey", "white", "csf")]
    stack = np.stack([m.array for m in maps])
    labels = np.where(stack.max(0) >= 0.5, stack.argmax(0) + 1, 0).astype(np.uint8)
    return Volume(labels, maps[0].affine, "LABEL"), stack


def dice_by_name(pred, pred_names: dict[int, str], truth: np.ndarray) -> dict[str, float]:
    """Dice per class of CLASSES; `pred_names` maps label value -> segment name; truth values 1..3 = CLASSES."""
    out = {}
    for t, cls in enumerate(CLASSES, start=1):
        values = [v for v, n in pred_names.items() if canonical(n) == cls]
        p = np.isin(pred, values) if values else np.zeros_like(truth, bool)
        g = truth == t
        denom = p.sum() + g.sum()
        out[cls] = float(2 * (p & g).sum() / denom) if denom else float("nan")
    return out


def names_of(label_volume) -> dict[int, str]:
    segs = label_volume.metadata.get("segments")
    if segs:
        return {int(s["label"]): s["name"] for s in segs}
    return {int(k): v for k, v in label_volume.metadata["labels"].items() if int(k) > 0}


def kmeans_in_mask(images: dict, truth: np.ndarray, seed: int = 0, mask: np.ndarray | None = None) -> np.ndarray:
    """k-means (k=3) inside a brain mask (default: the ORACLE mask, truth > 0), clusters matched to classes by the
    best permutation against the truth."""
    from sklearn.cluster import KMeans

    from multimodalgen.intensity import normalize

    mask = truth > 0 if mask is None else mask
    feats = np.stack([normalize(v.array, m)[mask] for m, v in images.items()], 1)
    km = KMeans(3, n_init=4, random_state=seed).fit(feats)
    best, best_score = None, -1.0
    for perm in itertools.permutations(range(3)):
        lab = np.zeros_like(truth)
        lab[mask] = np.asarray(perm)[km.labels_] + 1
        score = np.mean([2 * ((lab == c) & (truth == c)).sum() / max(1, (lab == c).sum() + (truth == c).sum())
                         for c in (1, 2, 3)])
        if score > best_score:
            best, best_score = lab, score
    return best


def outer_rim(truth: np.ndarray) -> np.ndarray:
    """The truth brain's outermost voxel layer (brain minus its 6-connected erosion), bool like `truth`.

    On oldnorm it holds 79 % of the oldseg truth's CSF: a population prior's CSF is mostly where the average
    brain meets the skull, a layer the smoothed template images show as partial volume (there oldnorm T2 is
    darker than grey matter). k-means with the oracle brain mask is handed that layer; a model must find it."""
    from scipy import ndimage

    brain = truth > 0
    return brain & ~ndimage.binary_erosion(brain)


def tpm_on_grid(tpm_path: Path, reference) -> np.ndarray:
    """SPM's TPM read by the product's checked reader (`personalized.atlas.read_tissue_atlas`) and resampled
    (linear) onto the grid of the Volume `reference`: `(6, I, J, K)` float32, TPM order (grey, white, CSF, bone, soft
    tissue, air)."""
    from multimodalgen.personalized.atlas import read_tissue_atlas
    from multimodalgen.resample import resample_like
    from multimodalgen.volume import Volume

    atlas = read_tissue_atlas(tpm_path)
    return np.stack([resample_like(Volume(volume, atlas.affine, "T1"), reference).array for volume in atlas.maps])


def atlas_prior_labels(spm: Path, reference) -> np.ndarray:
    """The image-free baseline on `reference`'s grid (`tpm_on_grid`): labels like the truth's (1 grey, 2 white,
    3 CSF, 0 the rest) by argmax over the six TPM classes."""
    best = tpm_on_grid(spm / "TPM.nii.gz", reference).argmax(0)
    return np.where(best < 3, best + 1, 0).astype(np.uint8)


def subset_table(model, spm: Path, prefix: str, truth, seg, segmented: dict | None = None) -> tuple[dict, dict]:
    """Dice per subset and class: (everywhere, away from the truth brain's outer rim `outer_rim`).

    `segmented` keeps each model's label map per (prefix, subset, model), so the fair k-means row reuses the
    segmentation its model's row already made instead of running the network again."""
    segmented = {} if segmented is None else segmented
    from multimodalgen.io import read_volume

    pattern = {"oldnorm": "oldnorm_{}.nii.gz", "avg152": "avg152{}.nii.gz"}[prefix]
    images = {m: read_volume(spm / pattern.format(m), m) for m in MODALITIES}
    out, interior = {}, {}
    atlas = atlas_prior_labels(spm, images["T1"]) if model == ATLAS_PRIOR else None   # one grid for every subset
    rim = outer_rim(truth.array)
    inner_truth = np.where(rim, 0, truth.array)
    for r in range(1, 4):
        for subset in itertools.combinations(MODALITIES, r):
            key = "+".join(subset)
            if model == ATLAS_PRIOR:
                pred = atlas
                names = dict(enumerate(CLASSES, start=1))
            elif model == "k-means (oracle mask)":
                pred = kmeans_in_mask({m: images[m] for m in subset}, truth.array)
                names = dict(enumerate(CLASSES, start=1))
            elif model.startswith(KMEANS_MODEL_MASK):   # "k-means (brain mask of MODEL)": no oracle
                owner = model[len(KMEANS_MODEL_MASK):-1]
                labels = segmented.get((prefix, key, owner))
                if labels is None:
                    labels = seg({m: images[m] for m in subset}, owner)
                brain = np.isin(labels.array, [v for v, n in names_of(labels).items() if canonical(n) in CLASSES])
                pred = kmeans_in_mask({m: images[m] for m in subset}, truth.array, mask=brain)
                names = dict(enumerate(CLASSES, start=1))
            else:
                labels = segmented[(prefix, key, model)] = seg({m: images[m] for m in subset}, model)
                pred, names = labels.array, names_of(labels)
            out[key] = dice_by_name(pred, names, truth.array)
            interior[key] = dice_by_name(np.where(rim, 0, pred), names, inner_truth)
    return out, interior


def robustness(model, spm: Path, truth, stack, seg, knows) -> dict[str, dict[str, float]]:
    """PET added, rotated, cropped and anisotropic copies of oldnorm T1 (see module docstring)."""
    import torch

    from multimodalgen.io import read_volume
    from multimodalgen.resample import resample_like
    from multimodalgen.synthesis.fields import gaussian_blur
    from multimodalgen.volume import Volume

    t1 = read_volume(spm / "oldnorm_T1.nii.gz", "T1")
    lab = seg({"T1": t1}, model)
    out = {"T1": dice_by_name(lab.array, names_of(lab), truth.array)}
    uptake = 1.0 * stack[0] + 0.3 * stack[1] + 0.05 * stack[2]
    pet = gaussian_blur(torch.from_numpy(uptake.astype(np.float32)), (6 / 2.355 / 2,) * 3).numpy()
    pet_vol = Volume(pet, t1.affine, "PET")
    if "PET" in knows(model):
        lab = seg({"T1": t1, "PET": pet_vol}, model)
        out["T1+PET"] = dice_by_name(lab.array, names_of(lab), truth.array)
    # EPI-like (a T2*-weighted functional run's mean image) given as T2: oldnorm T2 at 3.5 mm with EPI distortion
    # (<= 1 voxel along A-P), drop-out near the skull base and Rician noise (benchmarks/encoder/heldout_contrasts.py)
    if "T2" in knows(model):
        from heldout_contrasts import blur_mm, epi_distort, rician

        rng = np.random.default_rng(0)
        t2 = read_volume(spm / "oldnorm_T2.nii.gz", "T2").array.astype(np.float32)
        epi = rician(epi_distort(blur_mm(t2 / t2.max(), 3.5), rng, 1.0, 0.8), rng, 0.03)
        lab = seg({"T1": t1, "T2": Volume(epi, t1.affine, "T2")}, model)
        out["T1+EPI (as T2)"] = dice_by_name(lab.array, names_of(lab), truth.array)
    # rotated: the image is resampled onto a rotated grid; the truth is resampled onto the same grid
    grid = rotated_grid(t1)
    t1_rot = resample_like(t1, grid, order="linear")
    truth_rot = resample_like(truth, grid, order="nearest")
    lab = seg({"T1": t1_rot}, model)
    out["T1 rotated 15/15 deg"] = dice_by_name(lab.array, names_of(lab), truth_rot.array)
    t1_crop, truth_crop = cropped_upper(t1, truth.array)
    lab = seg({"T1": t1_crop}, model)
    out["T1 cropped (upper 60 %)"] = dice_by_name(lab.array, names_of(lab), truth_crop)
    # anisotropic: 6 mm slices along K
    thick = gaussian_blur(torch.from_numpy(t1.array.astype(np.float32)), (0, 0, 6 / 2.355 / 2)).numpy()[:, :, ::3]
    an_aff = t1.affine.copy()
    an_aff[:3, 2] *= 3
    lab = seg({"T1": Volume(thick.copy(), an_aff, "T1")}, model)
    out["T1 2x2x6 mm"] = dice_by_name(lab.array, names_of(lab), truth.array[:, :, ::3])
    from atlas_registration_probe import turned

    t1_turned, truth_turned = turned(t1, truth)
    lab = seg({"T1": t1_turned}, model)
    out["T1 head turned in its grid"] = dice_by_name(lab.array, names_of(lab), truth_turned)
    return out


def rotated_grid(image, degrees: float = 15.0):
    """An empty Volume of `image`'s shape whose grid is `image`'s turned by `degrees` about the I and then the K axis
    around the grid centre (world mm). Resampling onto it rotates the grid; see `atlas_registration_probe.turned` for
    the content rotated inside the same grid."""
    from multimodalgen.volume import Volume

    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rot = rot @ np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    centre_index = (np.array(image.shape3d) - 1) / 2
    affine = image.affine.copy()
    affine[:3, :3] = rot @ image.affine[:3, :3]
    affine[:3, 3] = (image.affine @ np.append(centre_index, 1))[:3] - affine[:3, :3] @ centre_index
    return Volume(np.zeros(image.shape3d, np.float32), affine, image.modality)


def cropped_upper(image, truth: np.ndarray, keep: float = 0.6):
    """`image` (a Volume) cut to the upper `keep` of its K (superior) axis, with the affine moved so every kept
    voxel stays where it was in world space, and `truth` (same grid, array) cut the same way: (Volume, array)."""
    from multimodalgen.volume import Volume

    k0 = int(image.shape3d[2] * (1.0 - keep))
    affine = image.affine.copy()
    affine[:3, 3] = (image.affine @ np.array([0, 0, k0, 1]))[:3]
    return Volume(image.array[:, :, k0:].copy(), affine, image.modality), truth[:, :, k0:]


def colin_case(data: Path):
    """Colin27: (the 1 mm T1 `ch2` as a Volume, the `ch2bet` brain mask, the grey-matter truth = the union of the
    AAL regions inside `ch2bet`), masks bool on the T1's grid."""
    from multimodalgen.io import read_volume

    t1 = read_volume(data / "colin27_mricron" / "ch2.nii.gz", "T1")
    bet = read_volume(data / "colin27_mricron" / "ch2bet.nii.gz").array > 0
    truth = (read_volume(data / "colin27_mricron" / "aal.nii.gz").array > 0) & bet
    return t1, bet, truth


def grey_dice(grey: np.ndarray, bet: np.ndarray, truth: np.ndarray) -> float:
    """Colin27's score: Dice of a grey-matter mask restricted to `ch2bet` against the AAL truth (`colin_case`)."""
    pred = grey & bet
    return float(2 * (pred & truth).sum() / max(1, pred.sum() + truth.sum()))


def colin(model, data: Path, seg) -> dict:
    t1, bet, truth = colin_case(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    lab = seg({"T1": t1}, model)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    names = names_of(lab)
    gm_values = [v for v, n in names.items() if canonical(n) == "grey matter"]
    dice = grey_dice(np.isin(lab.array, gm_values), bet, truth)
    quality = lab.metadata.get("quality") or {}
    return {"gm_dice_vs_aal": dice, "seconds": round(seconds, 1), "peak_rss_gb": round(peak / 1e6, 2),
            "peak_rss_gb_before": round(before / 1e6, 2), "volumes_ml": quality.get("volumes_ml"),
            "confidence": quality.get("confidence"), "warnings": quality.get("warnings", [])}


def colin_atlas(data: Path) -> dict:
    """The image-free baseline on Colin27: TPM's grey matter (argmax, `atlas_prior_labels`) scored as `colin`
    scores a model."""
    t1, bet, truth = colin_case(data)
    return {"gm_dice_vs_aal": grey_dice(atlas_prior_labels(data / "spm_templates", t1) == 1, bet, truth)}


def colin_cli(model: str, data: Path, threads: int, work: Path, extra: tuple[str, ...] = ()) -> dict:
    """`multimodalgen segment` on Colin27's 1 mm T1 in a fresh process: wall seconds and the child's own peak RSS
    (`run_with_peak_memory`; the in-process figure of `colin` also counts this benchmark's own images and models)."""
    work.mkdir(parents=True, exist_ok=True)
    cli = Path(sys.executable).with_name("multimodalgen")
    cmd = [str(cli) if cli.exists() else "multimodalgen", "--threads", str(threads), "segment", "--base-model", model,
           "--image", f"T1={data / 'colin27_mricron' / 'ch2.nii.gz'}", "--out", str(work / "ch2.seg.nrrd"), *extra]
    code, stderr, seconds, peak_gb = run_with_peak_memory(cmd)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}: {stderr.strip()[-500:]}")
    return {"seconds": round(seconds, 1), "peak_rss_gb": round(peak_gb, 2)}


def adapter_run(base: str, spm: Path, work: Path, truth, steps: int) -> tuple[str, dict]:
    """MoR adapter fine-tuned on avg152 T1/T2/PD with the truth as a named `.seg.nrrd` (grey matter, white matter,
    cerebrospinal fluid): returns (adapter folder, {seconds, bytes})."""
    from multimodalgen.io import read_volume, write_label, write_volume
    from multimodalgen.personalized.finetune import FinetuneConfig, finetune
    from multimodalgen.terminology import BRAIN_TISSUES, segments_from_labels
    from multimodalgen.volume import Volume

    work.mkdir(parents=True, exist_ok=True)
    for m in MODALITIES:
        write_volume(read_volume(spm / f"avg152{m}.nii.gz", m), work / f"avg152{m}.nii.gz")
    named = Volume(truth.array, truth.affine, "LABEL", {"segments": segments_from_labels(BRAIN_TISSUES)})
    write_label(named, work / "truth.seg.nrrd")
    (work / "cases.csv").write_text("case,T1,T2,PD,label\navg152,avg152T1.nii.gz,avg152T2.nii.gz,avg152PD.nii.gz,"
                                    "truth.seg.nrrd\n")
    out = work / "adapter"
    t0 = time.perf_counter()
    finetune(work / "cases.csv", out, FinetuneConfig(steps=steps, crop=48, val_fraction=0.0), base_model=base)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return str(out), {"seconds": round(seconds, 1), "bytes": size, "steps": steps}


def atlas_em_labels(images: dict, model, atlas, weight: float):
    """`segment_volumes` with the network's probabilities replaced by uniform ones (the network still runs; its
    output is ignored) and the placement check off: the placed atlas at power `weight` is the refinement's only
    prior. A baseline, not a product path."""
    import torch

    from multimodalgen.personalized import atlas as atlas_module
    from multimodalgen.personalized import inference

    real_grid, real_check = inference.to_image_grid, atlas_module.check_placement
    inference.to_image_grid = lambda outputs, size, native: torch.zeros((1, outputs.shape[1], *native))
    atlas_module.check_placement = lambda agreement, source: None     # a uniform network has no brain to agree with
    try:
        return inference.segment_volumes(images, model=model, resample=True, atlas=atlas, atlas_weight=weight)
    finally:
        inference.to_image_grid, atlas_module.check_placement = real_grid, real_check


def base_name(method: str) -> str:
    """The loaded model behind a row: `method` without its network-only or atlas suffix."""
    return method.replace(NETWORK_ONLY, "").replace(WITH_ATLAS, "")


def mean3(d: dict[str, float]) -> float:
    return float(np.nanmean([d[c] for c in CLASSES]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    p.add_argument("--models", default="personalized-v10,personalized-v9")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sets", default="oldnorm,avg152", help="template sets to run (oldnorm, avg152; empty: none, "
                   "only the robustness cases and Colin27)")
    p.add_argument("--skip-colin", action="store_true")
    p.add_argument("--skip-robustness", action="store_true")
    p.add_argument("--adapter-steps", type=int, default=0, help="also fine-tune a MoR adapter on avg152 (this many "
                   "steps) and test it on oldnorm beside its base model (0 = skip)")
    p.add_argument("--ttp-steps", type=int, default=0, help="also report the base model with this many test-time "
                   "personalization steps on oldnorm (0 = skip)")
    p.add_argument("--network-only", action="store_true", help="also report the first model without the intensity "
                   "refinement (segment --refine none) in every table")
    p.add_argument("--no-fair-kmeans", action="store_true", help="skip the k-means row inside the first model's "
                   "own brain mask (the baseline without an oracle; one extra segmentation per subset)")
    p.add_argument("--no-atlas-prior", action="store_true", help="skip the image-free baseline (SPM's TPM in MNI "
                   "space, argmax) on oldnorm, avg152 and Colin27")
    p.add_argument("--atlas", action="store_true", help="also report the first model with SPM's TPM as its atlas "
                   "prior (segment --atlas; placed by affine registration)")
    p.add_argument("--atlas-weight", type=float, default=None, help="the atlas's power (default: the package's)")
    p.add_argument("--work", default="/tmp/real_heads_work")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from multimodalgen.personalized.inference import segment_volumes
    from multimodalgen.personalized.weights import load_model

    data = Path(a.data)
    spm = data / "spm_templates"
    truth, stack = truth_labels(spm)
    loaded = {name: load_model(name)[0] for name in a.models.split(",") if name}
    first_loaded = next(iter(loaded))

    atlas = None
    if a.atlas:
        from multimodalgen.personalized.atlas import DEFAULT_ATLAS_WEIGHT, read_tissue_atlas

        atlas = read_tissue_atlas(spm / "TPM.nii.gz")
        a.atlas_weight = DEFAULT_ATLAS_WEIGHT if a.atlas_weight is None else a.atlas_weight

    def seg(images, model):
        if model == ATLAS_EM:
            return atlas_em_labels(images, loaded[first_loaded], atlas, a.atlas_weight)
        if model.endswith(WITH_ATLAS):
            return segment_volumes(images, model=loaded[model[: -len(WITH_ATLAS)]], resample=True, atlas=atlas,
                                   atlas_weight=a.atlas_weight)
        if model.endswith("+TTP"):
            return segment_volumes(images, model=loaded[model[:-4]], resample=True, ttp_steps=a.ttp_steps)
        if model.endswith(NETWORK_ONLY):
            return segment_volumes(images, model=loaded[model[: -len(NETWORK_ONLY)]], resample=True, refine="none")
        return segment_volumes(images, model=loaded[model], resample=True)

    segmented: dict = {}      # (prefix, subset, model) -> label map, shared by a model's row and its k-means row
    results: dict = {"oldnorm": {}, "avg152": {}, "oldnorm away from rim": {}, "avg152 away from rim": {},
                     "robustness": {}, "colin27": {}, "adapter": None}
    methods = list(loaded) + ["k-means (oracle mask)"]
    first_model = methods[0]
    if not a.no_fair_kmeans:
        methods.append(f"{KMEANS_MODEL_MASK}{first_model})")
    if not a.no_atlas_prior:
        methods.append(ATLAS_PRIOR)
    if a.adapter_steps:
        from multimodalgen.personalized.inference import load_with_adapter

        folder, info = adapter_run(first_model, spm, Path(a.work), truth, a.adapter_steps)
        loaded[f"{first_model}+MoR(avg152)"] = load_with_adapter(folder, first_model)[0]
        results["adapter"] = info
        methods.insert(1, f"{first_model}+MoR(avg152)")
        print(f"MoR adapter fine-tuned on avg152 in {info['seconds']} s, {info['bytes'] / 1e3:.0f} kB", flush=True)
    if a.ttp_steps:
        methods.insert(1, f"{first_model}+TTP")
    if a.network_only:
        methods.insert(1, first_model + NETWORK_ONLY)
    if a.atlas:
        methods.insert(1, first_model + WITH_ATLAS)
        methods.append(ATLAS_EM)
    subsets = ["+".join(s) for r in (1, 2, 3) for s in itertools.combinations(MODALITIES, r)]
    for prefix in [name for name in a.sets.split(",") if name]:
        for method in methods:
            if prefix != "oldnorm" and ("+TTP" in method or "+MoR" in method):
                continue
            tables = subset_table(method, spm, prefix, truth, seg, segmented)
            results[prefix][method], results[prefix + " away from rim"][method] = tables
        print(f"\n{prefix} T1/T2/PD (2 mm), mean Dice over grey/white/CSF matched by segment name")
        print(f"{'method':<24}" + "".join(f"{s:>10}" for s in subsets) + f"{'mean':>8}{'worst':>8}")
        for method in [m for m in methods if m in results[prefix]]:
            vals = [mean3(results[prefix][method][s]) for s in subsets]
            print(f"{method:<24}" + "".join(f"{v:10.3f}" for v in vals) + f"{np.mean(vals):8.3f}{min(vals):8.3f}")
        best = methods[0]
        per_class = {c: np.mean([results[prefix][best][s][c] for s in subsets]) for c in CLASSES}
        print(f"  {best} per class (mean over subsets): " + ", ".join(f"{c} {v:.3f}" for c, v in per_class.items()),
              flush=True)
        truth_csf = truth.array == CLASSES.index("cerebrospinal fluid") + 1     # truth values: CLASSES from 1
        rim_share = float((outer_rim(truth.array) & truth_csf).sum() / truth_csf.sum())
        print(f"  diagnostic, the same Dice away from the truth brain's outer voxel rim (which holds "
              f"{rim_share:.0%} of the truth's CSF):")
        for method in [m for m in methods if m in results[prefix]]:
            inner = results[prefix + " away from rim"][method]
            csf = np.mean([inner[s]["cerebrospinal fluid"] for s in subsets])
            print(f"  {method:<22}" + "".join(f"{mean3(inner[s]):10.3f}" for s in subsets)
                  + f"{np.mean([mean3(inner[s]) for s in subsets]):8.3f}   CSF {csf:.3f}", flush=True)
    # robustness and Colin27: the base models and their network-only rows (no adapter, no test-time steps)
    whole_models = [m for m in methods if (m in loaded and "+MoR" not in m) or m.endswith((NETWORK_ONLY, WITH_ATLAS))
                    or m == ATLAS_EM]
    if not a.skip_robustness:
        print("\nRobustness on oldnorm (mean Dice grey/white/CSF)")
        for method in whole_models:
            results["robustness"][method] = robustness(method, spm, truth, stack, seg,
                                                       lambda m: loaded.get(base_name(m), loaded[first_loaded]).config.modalities)
            print(f"{method:<24}" + "  ".join(f"{k}: {mean3(v):.3f}" for k, v in results["robustness"][method].items()))
    if not a.skip_colin:
        print("\nColin27 ch2 (1 mm, 181x217x181): grey matter vs union of AAL regions inside ch2bet")
        for method in whole_models:
            results["colin27"][method] = colin(method, data, seg)
            r = results["colin27"][method]
            print(f"{method:<24} GM Dice {r['gm_dice_vs_aal']:.3f}  {r['seconds']} s  benchmark-process peak RSS {r['peak_rss_gb']} GB"
                  f"  volumes (mL) {r['volumes_ml']}  confidence {r['confidence']}  warnings: {len(r['warnings'])}")
            for w in r["warnings"]:
                print(f"    warning: {w}")
        if not a.no_atlas_prior:
            results["colin27"][ATLAS_PRIOR] = r = colin_atlas(data)
            print(f"{ATLAS_PRIOR:<24} GM Dice {r['gm_dice_vs_aal']:.3f}")
        first_model = whole_models[0]
        if first_model in loaded and not first_model.endswith(NETWORK_ONLY):
            results["colin27_cli"] = {first_model: colin_cli(first_model, data, a.threads, Path(a.work) / "cli")}
            r = results["colin27_cli"][first_model]
            print(f"{first_model:<24} CLI end to end in a fresh process ({a.threads} threads): {r['seconds']} s, "
                  f"peak RSS {r['peak_rss_gb']} GB (targets <= 120 s, <= 4 GB)")
            if a.atlas:
                name = first_model + WITH_ATLAS
                results["colin27_cli"][name] = r = colin_cli(
                    first_model, data, a.threads, Path(a.work) / "cli",
                    ("--atlas", str(spm / "TPM.nii.gz"), "--atlas-weight", str(a.atlas_weight)))
                print(f"{name:<24} CLI end to end in a fresh process ({a.threads} threads): {r['seconds']} s, "
                      f"peak RSS {r['peak_rss_gb']} GB (targets <= 120 s, <= 4 GB)")
    first = methods[0]
    if first in results["oldnorm"]:   # the targets are stated on oldnorm; `--sets avg152` alone has none to check
        km = [mean3(results["oldnorm"]["k-means (oracle mask)"][s]) for s in subsets]
        print("\nTargets (oldnorm):")
        rows = [first] + ([first_model + WITH_ATLAS] if a.atlas else [])
        for row in rows:
            scores = [mean3(results["oldnorm"][row][s]) for s in subsets]
            print(f"  {row} mean {np.mean(scores):.3f} (>= .80): {'MET' if np.mean(scores) >= 0.8 else 'MISSED'}; "
                  f"vs k-means {np.mean(km):.3f} + .05: "
                  f"{'MET' if np.mean(scores) >= np.mean(km) + 0.05 else 'MISSED'}; worst subset {min(scores):.3f} "
                  f"within .03 of T1+T2+PD {scores[-1]:.3f}: {'MET' if scores[-1] - min(scores) <= 0.03 else 'MISSED'}")
            if ATLAS_PRIOR in results["oldnorm"]:
                atlas = mean3(results["oldnorm"][ATLAS_PRIOR][subsets[0]])
                print(f"    beside the image-free {ATLAS_PRIOR}: {atlas:.3f}; {row} is {np.mean(scores) - atlas:+.3f} "
                      f"on the mean and beats it on {sum(v > atlas for v in scores)} of {len(scores)} subsets")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
