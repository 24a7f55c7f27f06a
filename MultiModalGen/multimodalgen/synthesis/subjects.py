"""synth-2 subjects: one individual head anatomy rendered as several modalities of that same subject.

    sample_head_subject(sources, seed, shape, spacing, modalities)
        -> HeadSubject(images {modality: (I, J, K) float32 physical units}, classes (I, J, K) int64, affine)

SynthSeg's recipe (real label maps, random geometry, contrast and resolution) extended to multimodal subjects: the
anatomy (`head.render_head`) and the tissue properties (`physics.sample_tissue_properties`) are drawn once per
subject, each modality gets its own acquisition (`physics.sample_acquisition`). With probability `p_partial` the
field of view is cut by one or two random planes (partial heads, slabs): outside it the images are 0 and the classes
background, as a scanner's field of view would leave them. Deterministic given the seed.

Template-like subjects (synth-2.1, probability `p_template`): every modality is smoothed with one Gaussian of FWHM
4-10 mm, as population templates and heavily smoothed research images are, and the classes are labelled *at that
resolution*: the argmax of the one-hot class map smoothed with the same Gaussian. This is how SPM defines the tissue
maps of its smoothed templates (a voxel belongs to the tissue that dominates its neighbourhood); with sharp labels
the network had to guess a cortical ribbon the image cannot show and called the whole blurred cortex white matter.
Sharp images (the other subjects) keep sharp labels, and per-modality smoothing (a blurry PET beside a sharp T1)
keeps them too, since the other modalities still show the anatomy.

Population templates (synth-2.3): 60 % of the template-like subjects are averages of 4-8 *members*, as MNI templates
are averages of affinely aligned brains. The members share the pose, the tissue properties and the acquisition (each
its own noise), and differ in everything individual (elastic displacement, folding, cortical thickness, ventricles,
sulcal and extracerebral CSF, skull). Images are the mean of the members' images; classes are the argmax of the
members' mean one-hot map (smoothed like the images, FWHM 0 or 4-10 mm), which is how SPM's a-priori tissue maps of
its templates are made. Where sulci and the subarachnoid space fall at a different place in every member, grey matter
dominates: the template's grey-matter band is broad and its CSF is mostly the ventricles (SPM oldseg: 1050 mL grey,
190 mL CSF). A single smoothed subject keeps its thin ribbon and its CSF shell, so a network trained on those alone put
a template's cortex one band outward, in the blurred CSF/skull band.

SPM's brain rule (synth-2.4, `template_brain_share` > 0, off by default): SPM's templates call a voxel grey, white or
CSF only where that tissue holds at least half of it (the oldseg truth: argmax of grey/white/CSF where the largest is
>= .5); at the brain's edge, where the averaged or smoothed map mixes brain with CSF-poor scalp, skull and air, a
voxel whose brain tissue falls short of `template_brain_share` takes the largest non-brain class instead. Measured
(`benchmarks/personalized/boundary_profile.py`): with the plain argmax the template subjects' outer brain layer was 47 %
CSF, the SPM truth's 27 %, and a network trained on them put the template's brain surface one voxel outward.
Inside the brain (non-brain share <= 5 %) the plain argmax is kept, so the rule makes no holes.
Measured: a network trained with it lost CSF Dice at the real templates' edge (benchmarks/personalized/README.md).

Template sulcal CSF (synth-2.4, `template_sulcal_csf_shift` < 0, off by default): every member of a population
template gets this added to its sulcal-CSF log-bias (`head.HeadParams.sulcal_csf`, drawn in -0.5..0.8), as SPM's
oldseg shows almost no CSF inside the cortical band (0-2 % two to four voxels in, our templates 7-14 %).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from multimodalgen.synthesis.fields import gaussian_blur
from multimodalgen.synthesis.head import (CSF, GREY, MAX_OFFSET_MM, WHITE, HeadParams, brain_centre, render_head,
                                          sample_head_params)
from multimodalgen.synthesis.label_sources import LabelSources
from multimodalgen.synthesis.physics import (MODALITIES, render_modality, sample_acquisition,
                                             sample_tissue_properties)

SYNTH2_VERSION = "synth-2.4"


@dataclasses.dataclass
class HeadSubject:
    """One rendered subject (see module docstring); `affine` is its grid's voxel -> RAS mm."""

    images: dict[str, torch.Tensor]
    classes: torch.Tensor
    affine: np.ndarray
    subclasses: torch.Tensor | None = None     # texture sub-class per voxel (head.subclass_map)
    table: object | None = None                 # the subject's physics.TissueTable (to render more images)


class HeadSubjectSampler:
    """Holds the tissue map on a device and draws subjects from it (the map is read once)."""

    def __init__(self, sources: LabelSources, device: torch.device | str = "cpu") -> None:
        if sources.tissue is None:
            from multimodalgen.errors import UserInputError

            raise UserInputError(f"label folder {sources.folder} has no tissue probability map",
                                 expected="tissue_probabilities.nii.gz (SPM TPM)",
                                 fix="run prepare-labels on a data folder that holds spm_templates/TPM.nii.gz")
        self.tissue = torch.as_tensor(sources.tissue, dtype=torch.float32, device=device)
        self.affine = sources.tissue_affine
        self.centre = brain_centre(sources.tissue, sources.tissue_affine)
        self.device = torch.device(device)

    def sample(self, seed: int, shape: tuple[int, int, int], spacing: float, modalities: tuple[str, ...],
               p_partial: float = 0.2, p_epi: float = 0.1, p_template: float = 0.0,
               max_offset_mm: float = MAX_OFFSET_MM, template_brain_share: float = 0.0,
               template_sulcal_csf_shift: float = 0.0) -> HeadSubject:
        """One subject (module docstring); `max_offset_mm`: the grid's centre is drawn uniformly within this distance
        of the brain's centre on each axis (the shape's field of view sees more of the head's periphery when larger);
        `template_brain_share`: SPM's brain rule for the classes of template-like subjects (0 = plain argmax);
        `template_sulcal_csf_shift`: added to every population-template member's sulcal-CSF log-bias (0 = off)."""
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown:
            raise ValueError(f"no synth-2 renderer for {unknown}; known: {MODALITIES}")
        rng = np.random.default_rng(int(seed))
        params = sample_head_params(rng, shape, spacing, max_offset_mm=max_offset_mm)
        classes, subclasses, affine = render_head(self.tissue, self.affine, params, self.centre)
        table = sample_tissue_properties(rng, params.subclasses)
        template = p_template > 0 and rng.random() < p_template
        template_fwhm = float(rng.uniform(4.0, 10.0)) if template else 0.0
        acquisitions = {m: sample_acquisition(rng, m, p_epi=p_epi) for m in modalities}
        if template:
            acquisitions = {m: dataclasses.replace(a, smooth_fwhm_mm=template_fwhm, slice_mm=spacing, epi=False)
                            for m, a in acquisitions.items()}
        members = [(classes, subclasses)]
        if template and rng.random() < 0.6:                 # a population template (see module docstring)
            if rng.random() < 0.3:
                template_fwhm = 0.0
                acquisitions = {m: dataclasses.replace(a, smooth_fwhm_mm=0.0) for m, a in acquisitions.items()}
            if template_sulcal_csf_shift:   # the first member again, shifted (drawn before the template choice)
                first = dataclasses.replace(params, sulcal_csf=params.sulcal_csf + template_sulcal_csf_shift)
                members = [render_head(self.tissue, self.affine, first, self.centre)[:2]]
            for _ in range(int(rng.integers(3, 8))):
                member = member_params(rng, params)
                member = dataclasses.replace(member, sulcal_csf=member.sulcal_csf + template_sulcal_csf_shift)
                members.append(render_head(self.tissue, self.affine, member, self.centre)[:2])
        images = {m: torch.stack([render_modality(c, s, table, dataclasses.replace(acq, seed=acq.seed + k), spacing)
                                  for k, (c, s) in enumerate(members)]).mean(0)
                  for m, acq in acquisitions.items()}
        if template:
            classes = population_classes([c for c, _ in members], template_fwhm, spacing, template_brain_share)
        if rng.random() < p_partial:
            keep = _field_of_view(rng, tuple(shape), self.device)
            classes = torch.where(keep, classes, torch.zeros_like(classes))
            subclasses = torch.where(keep, subclasses, torch.zeros_like(subclasses))
            images = {m: torch.where(keep, v, torch.full_like(v, -1000.0 if m == "CT" else 0.0))
                      for m, v in images.items()}
        return HeadSubject(images, classes, affine, subclasses, table)


def _field_of_view(rng: np.random.Generator, shape: tuple[int, int, int], device) -> torch.Tensor:
    """Bool `(I, J, K)`: inside one or two random axis-aligned cuts (each keeps 40-90 % of its axis)."""
    keep = torch.ones(shape, dtype=torch.bool, device=device)
    for _ in range(int(rng.integers(1, 3))):
        axis = int(rng.integers(3))
        n = shape[axis]
        cut = int(round(n * rng.uniform(0.4, 0.9)))
        idx = torch.arange(n, device=device)
        inside = idx < cut if rng.random() < 0.5 else idx >= n - cut
        view = [1, 1, 1]
        view[axis] = n
        keep = keep & inside.view(view)
    return keep


def smoothed_classes(classes: torch.Tensor, fwhm_mm: float, spacing: float) -> torch.Tensor:
    """Classes labelled at a coarser resolution: argmax over the one-hot map `(C, I, J, K)` smoothed with a Gaussian
    of `fwhm_mm` (grid spacing `spacing` mm). `(I, J, K)` int64 in, same shape and values out."""
    return population_classes([classes], fwhm_mm, spacing)


def population_classes(members: list[torch.Tensor], fwhm_mm: float, spacing: float,
                       brain_share: float = 0.0) -> torch.Tensor:
    """Classes of an average of subjects: argmax over the members' mean one-hot map `(C, I, J, K)`, smoothed with a
    Gaussian of `fwhm_mm` (0 = not smoothed; grid spacing `spacing` mm). Members are `(I, J, K)` int64 class maps on
    one grid (HEAD_CLASSES values); out: `(I, J, K)`, their dtype. Ties go to the lower class value.

    `brain_share` > 0 applies SPM's brain rule (module docstring): where the non-brain classes hold more than 5 % of
    a voxel and no brain tissue (grey, white, CSF) holds `brain_share` of it, the voxel takes the largest non-brain
    class (background, skull, soft tissue)."""
    n = int(max(int(c.max()) for c in members)) + 1
    mean = torch.stack([torch.stack([(c == k).float() for k in range(n)]) for c in members]).mean(0)
    if fwhm_mm > 0:
        sigma = fwhm_mm / (2.0 * (2.0 * np.log(2.0)) ** 0.5) / spacing
        mean = torch.stack([gaussian_blur(m, (sigma, sigma, sigma)) for m in mean])
    out = mean.argmax(dim=0)
    if brain_share > 0:
        brain = torch.zeros(n, dtype=torch.bool, device=mean.device)
        brain[[k for k in (GREY, WHITE, CSF) if k < n]] = True
        outside = mean[~brain]
        short = (outside.sum(0) > 0.05) & (mean[brain].max(0).values < brain_share)
        non_brain = torch.nonzero(~brain).flatten()
        out = torch.where(short, non_brain[outside.argmax(0)], out)
    return out.to(members[0].dtype)


def member_params(rng: np.random.Generator, first: HeadParams) -> HeadParams:
    """Another member of a population template: `first`'s pose, grid and texture sub-classes (the template's members
    are aligned and imaged alike), everything individual drawn anew, with the inter-subject elastic variability that
    an affine alignment leaves (coarse 2-6 mm, fine 0.5-2 mm)."""
    own = sample_head_params(rng, first.shape, first.spacing)
    return dataclasses.replace(own, rotation_deg=first.rotation_deg, scale=first.scale, shear=first.shear,
                               flip_lr=first.flip_lr, centre_offset_mm=first.centre_offset_mm,
                               subclasses=first.subclasses,
                               elastic_mm=(float(rng.uniform(2.0, 6.0)), float(rng.uniform(0.5, 2.0))))
