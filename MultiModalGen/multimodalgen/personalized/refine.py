"""Subject-specific intensity refinement of a tissue segmentation (SPM-style, the network as the spatial prior).

    refine_with_intensities(probabilities, images, classes, iterations=10, prior_power=0.5, ...) -> probabilities
    refine_tissues(probabilities, images, modalities, label_names, mode) -> (probabilities, description)

The network knows anatomy (where the brain, the skull and the ventricles are) but was trained on synthetic contrasts,
so on a real scan its boundary between two tissues of similar brightness can sit in the wrong place. The scan itself
says where that boundary is: each tissue has its own intensity distribution in *this* image. This module fits that
distribution by expectation-maximisation, with the network's probabilities as a per-voxel prior, as SPM's unified
segmentation does with its tissue probability maps (Ashburner & Friston 2005):

    r_ic  ∝  p_ic ** prior_power  ×  Σ_k w_ck N(x_i ; μ_ck, Σ_ck)

- `x_i` is the vector of the present modalities' normalised intensities at voxel i (`prepare.stack_images`);
- `p_ic` is the network's probability of class c; `prior_power` < 1 softens it so the image can move a boundary the
  network placed with false confidence (0 = intensities only, 1 = the network's posterior taken as the prior);
- every refined class gets a mixture of `components` Gaussians with full covariance over the present modalities
  (partial volume at the tissue edges makes one Gaussian too narrow);
- EM starts from the network's own split, from intensity clusters named by the modality's known tissue order
  (`tissue_contrast`), or from both with the two posteriors averaged (`init`, "both" in `segment`).

Only a group of classes is refined (`segment` refines grey matter, white matter and CSF): each voxel keeps the
network's total probability of the group, so where the brain ends stays the network's decision, and the result has
the network's shape `(C, I, J, K)`, float32, rows summing to 1.
"""

from __future__ import annotations

import itertools
import math

import torch

MIN_VARIANCE = 1e-4           # normalised intensity units squared (a standard deviation of 1 % of the range)


def refine_with_intensities(probabilities: torch.Tensor, images: torch.Tensor, classes: tuple[int, ...] | None = None,
                            iterations: int = 10, prior_power: float = 0.5, components: int | tuple[int, ...] = 1,
                            min_mass: float = 0.02, init: str = "clusters", brightness: torch.Tensor | None = None,
                            max_fit_voxels: int = 300_000, chunk: int = 500_000) -> torch.Tensor:
    """Refine network class probabilities with a per-image Gaussian-mixture intensity model (module docstring).

    Only the classes in `classes` (a group, e.g. grey matter, white matter and CSF) are refined: each voxel keeps the
    network's total probability `w_i` of the group and only its split inside the group changes, so the boundary
    between the group and the other classes (brain vs skull and scalp) stays the network's.

    Args:
        probabilities: `(C, I, J, K)` softmax output on the images' grid (rows sum to 1).
        images: `(M, I, J, K)` present modalities only, normalised intensities on the same grid.
        classes: class indices refined together (None = all classes).
        iterations: EM iterations (each is one E and one M step).
        prior_power: exponent on the network prior (0..1).
        components: Gaussians per refined class (>= 1): one number for all, or one per entry of `classes`.
        min_mass: voxels whose group probability `w_i` is below this keep the network's answer.
        init: where the mixture starts. "clusters": k-means of the intensities (one cluster per class), each cluster
            named one-to-one by the permutation that best agrees with `brightness` (the expected intensity order of
            the classes in each modality) and, second, with the network's probabilities; robust when the network's
            split is poor but its anatomy is right. "network": the network's own split. "both": one fit from each
            start, their posteriors averaged. Each start fails on some inputs (the network start lets white matter
            collapse on a cropped T1, the cluster start mistakes partial volume for a tissue on T2+PD templates);
            choosing between them by likelihood or by the tissue order picked the failed fit as often as not,
            averaging never did (benchmarks/personalized/results/refine_select_2026-12-03.txt).
        brightness: `(M, G)` expected relative brightness of each refined class in each image channel (NaN where the
            modality's order is unknown), e.g. T1 (grey .6, white 1, CSF 0); None = name clusters by the network only.
        max_fit_voxels: the mixture is fitted on at most this many refined voxels (an even stride through them,
            weighted by `w_i`); the final posterior is computed for every refined voxel, `chunk` voxels at a time.
    Returns:
        `(C, I, J, K)` float32 refined probabilities (rows still sum to 1).
    """
    if init not in ("network", "clusters", "both"):
        raise ValueError(f"init must be network, clusters or both, got {init!r}")
    if probabilities.dim() != 4 or images.dim() != 4 or probabilities.shape[1:] != images.shape[1:]:
        raise ValueError(f"expected probabilities (C, I, J, K) and images (M, I, J, K) on one grid, got "
                         f"{tuple(probabilities.shape)} and {tuple(images.shape)}")
    c_count = probabilities.shape[0]
    group = list(range(c_count)) if classes is None else [int(c) for c in classes]
    per_class = (components,) * len(group) if isinstance(components, int) else tuple(int(k) for k in components)
    if (not 0.0 <= prior_power <= 1.0 or iterations < 0 or len(per_class) != len(group) or min(per_class) < 1
            or len(group) < 2 or len(set(group)) != len(group) or not all(0 <= c < c_count for c in group)):
        raise ValueError(f"expected >= 2 distinct classes of {c_count}, prior_power in [0, 1], iterations >= 0 and "
                         f"components >= 1 (one, or one per class); got classes {classes}, {prior_power}, "
                         f"{iterations}, {components}")
    flat_p = probabilities.reshape(c_count, -1).float()
    mass = flat_p[group].sum(0)                                                # (V,) the group's probability
    index = torch.nonzero(mass >= min_mass)[:, 0]
    if iterations == 0 or len(index) < 10 * sum(per_class):
        return probabilities.float().clone()
    fit = index[:: max(1, math.ceil(len(index) / max_fit_voxels))]             # deterministic stride subsample
    w_fit, p_fit, x_fit = _voxels(flat_p, images, group, fit)
    log_prior = _log_prior(p_fit, prior_power)
    fits = []
    for how in (("network", "clusters") if init == "both" else (init,)):
        start = _cluster_start(p_fit, x_fit, w_fit, brightness) if how == "clusters" else p_fit
        fits.append(_fit(x_fit, w_fit, log_prior, _split_components(start, x_fit, per_class), iterations))
    out = flat_p.clone()
    for start in range(0, len(index), chunk):                                  # final E step over every voxel
        part = index[start: start + chunk]
        w_part, p_part, x_part = _voxels(flat_p, images, group, part)
        log_prior_part = _log_prior(p_part, prior_power)
        split = sum(_e_step(x_part, log_prior_part, params).sum(2) for params in fits) / len(fits)   # (n, G)
        out[torch.tensor(group)[:, None], part[None, :]] = (w_part[:, None] * split).T.float()
    return out.reshape(probabilities.shape)


def _fit(x: torch.Tensor, w: torch.Tensor, log_prior: torch.Tensor, resp: torch.Tensor, iterations: int):
    """EM from responsibilities `resp` `(N, G, K)` (voxels weighted by their group mass `w`): the mixture parameters
    after `iterations` E and M steps."""
    active = resp.sum(0) > 0                                                  # (G, K)
    params = _m_step(x, resp * w[:, None, None], active)
    for _ in range(iterations):
        params = _m_step(x, _e_step(x, log_prior, params) * w[:, None, None], active)
    return params


def _split_components(p: torch.Tensor, x: torch.Tensor, per_class: tuple[int, ...]) -> torch.Tensor:
    """Initial responsibilities `(N, C, K)`, K = max(per_class): class c's posterior split over its `per_class[c]`
    components by intensity rank along the first principal direction of its voxels (deterministic); components a
    class does not use stay 0 (inactive)."""
    n, c_count = p.shape
    resp = torch.zeros(n, c_count, max(per_class), dtype=p.dtype)
    for c, components in enumerate(per_class):
        w = p[:, c]
        total = w.sum()
        if components == 1 or total <= 0:
            resp[:, c, 0] = w
            continue
        mean = (w[:, None] * x).sum(0) / total
        centred = x - mean
        cov = (w[:, None] * centred).T @ centred / total
        direction = torch.linalg.eigh(cov + 1e-9 * torch.eye(len(cov), dtype=cov.dtype))[1][:, -1]
        score = centred @ direction
        edges = score[_weighted_quantile_index(score, w, [(k + 1) / components for k in range(components - 1)])]
        bucket = torch.bucketize(score, edges)
        resp[torch.arange(n), c, bucket] = w
    return resp


def _cluster_start(p: torch.Tensor, x: torch.Tensor, w: torch.Tensor, brightness: torch.Tensor | None = None,
                   spare: int = 1, iterations: int = 25) -> torch.Tensor:
    """Start `(N, G)` from intensity clusters.

    Weighted k-means with G + `spare` clusters (intensities standardised per modality, deterministic start at
    quantiles of the first principal direction) on the voxels the network gives the group >= .5; every voxel then
    goes to its nearest cluster. G of the clusters are named one-to-one after the classes by the assignment with the
    best score: the rank correlation between the clusters' mean intensities and the classes' expected `brightness`,
    summed over the channels where it is known, plus 0.5 x the mean Dice between each class's cluster and the
    network's probability of that class (the tie-breaker, and the only term without `brightness`). The spare
    clusters absorb what is neither (partial volume at the brain's edge, meninges): their voxels start from the
    network's split. Rows of the result sum to 1.
    """
    n, g = p.shape
    k_count = g + spare
    core = w >= 0.5 if int((w >= 0.5).sum()) >= 10 * k_count else torch.ones_like(w, dtype=torch.bool)
    xc, wc = x[core], w[core]
    mean = (wc[:, None] * xc).sum(0) / wc.sum()
    sd = ((wc[:, None] * (xc - mean) ** 2).sum(0) / wc.sum()).sqrt().clamp_min(1e-6)
    z, zc = (x - mean) / sd, (xc - mean) / sd
    cov = (wc[:, None] * zc).T @ zc / wc.sum()
    score = zc @ torch.linalg.eigh(cov)[1][:, -1]
    centres = zc[_weighted_quantile_index(score, wc, [(k + 0.5) / k_count for k in range(k_count)])]
    for _ in range(iterations):
        assign = torch.cdist(zc, centres).argmin(1)
        for k in range(k_count):
            sel = assign == k
            if sel.any():
                centres[k] = (wc[sel, None] * zc[sel]).sum(0) / wc[sel].sum()
    assign = torch.cdist(z, centres).argmin(1)
    member = torch.nn.functional.one_hot(assign, k_count).to(p.dtype) * w[:, None]    # (N, K)
    overlap = member.T @ (p * w[:, None])                                               # (K, G)
    dice = 2 * overlap / (member.sum(0)[:, None] + (p * w[:, None]).sum(0)[None] + 1e-9)
    cluster_mean = (member.T @ x) / member.sum(0)[:, None].clamp_min(1e-9)            # (K, M)

    def score_of(chosen: tuple[int, ...]) -> float:                 # chosen[c] = the cluster named class c
        total = 0.5 * sum(float(dice[k, c]) for c, k in enumerate(chosen)) / g
        if brightness is not None:
            for j in range(x.shape[1]):
                known = ~torch.isnan(brightness[j])
                if int(known.sum()) >= 2:                # classes without a known order in channel j are skipped
                    total += _rank_correlation(cluster_mean[list(chosen), j][known], brightness[j][known].double())
        return total

    chosen = max(itertools.permutations(range(k_count), g), key=score_of)
    start = p.clone()                                                # spare clusters keep the network's split
    for c, k in enumerate(chosen):
        start[assign == k] = torch.nn.functional.one_hot(torch.tensor(c), g).to(p.dtype)
    return start


def _rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman correlation of two short vectors (ties get the same rank order as argsort gives)."""
    ra = torch.argsort(torch.argsort(a)).double()
    rb = torch.argsort(torch.argsort(b)).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / ((ra.norm() * rb.norm()) + 1e-12))


def _weighted_quantile_index(score: torch.Tensor, weight: torch.Tensor, levels: list[float]) -> torch.Tensor:
    """Indices of the elements of `score` `(N,)` at the weighted quantiles `levels` (each in (0, 1))."""
    order = torch.argsort(score)
    cumulative = torch.cumsum(weight[order], 0)
    cumulative = cumulative / cumulative[-1]
    cuts = torch.tensor(levels, dtype=cumulative.dtype)
    return order[torch.searchsorted(cumulative, cuts).clamp_max(len(score) - 1)]


def _voxels(flat_p: torch.Tensor, images: torch.Tensor, group: list[int], index: torch.Tensor):
    """For the voxels `index` (flat): the group's mass `(N,)`, the network's split inside the group `(N, G)` (rows sum
    to 1) and the intensities `(N, M)`, float64."""
    p = flat_p[group][:, index].T.double().clamp_min(1e-6)
    w = p.sum(1)
    x = images.reshape(images.shape[0], -1)[:, index].T.double()
    return w, p / w[:, None], x


def _log_prior(p: torch.Tensor, prior_power: float) -> torch.Tensor:
    log_prior = prior_power * torch.log(p)
    return log_prior - torch.logsumexp(log_prior, dim=1, keepdim=True)


def _outer(x: torch.Tensor) -> torch.Tensor:
    """Per-voxel outer products flattened: `(N, M * M)`."""
    return (x[:, :, None] * x[:, None, :]).reshape(len(x), -1)


def _m_step(x: torch.Tensor, resp: torch.Tensor, active: torch.Tensor):
    """Mixture weights `(C, K)` (within each class; 0 for inactive components), means `(C, K, M)` and covariances
    `(C, K, M, M)`."""
    n, c_count, k_count = resp.shape
    m = x.shape[1]
    flat = resp.reshape(n, -1)                                                 # (N, C*K)
    mass = flat.sum(0) + 1e-8
    means = (flat.T @ x) / mass[:, None]
    second = (flat.T @ _outer(x)).reshape(-1, m, m) / mass[:, None, None]
    covs = second - means[:, :, None] * means[:, None, :]
    covs = 0.5 * (covs + covs.transpose(1, 2)) + MIN_VARIANCE * torch.eye(m, dtype=x.dtype)
    mass = mass.reshape(c_count, k_count) * active
    weights = mass / mass.sum(1, keepdim=True)
    return weights, means.reshape(c_count, k_count, m), covs.reshape(c_count, k_count, m, m)


def _e_step(x: torch.Tensor, log_prior: torch.Tensor, params) -> torch.Tensor:
    """Responsibilities `(N, C, K)` from the prior `(N, C)` and the mixture parameters."""
    weights, means, covs = params
    c_count, k_count, m = means.shape
    precision = torch.linalg.inv(covs).reshape(-1, m, m)                      # (C*K, M, M)
    mu = means.reshape(-1, m)
    p_mu = torch.einsum("gml,gl->gm", precision, mu)                            # (C*K, M)
    maha = (_outer(x) @ precision.reshape(-1, m * m).T - 2.0 * x @ p_mu.T
            + (mu * p_mu).sum(1)[None])                                        # (N, C*K)
    log_det = torch.logdet(covs).reshape(-1)
    log_like = -0.5 * (maha + log_det[None] + m * math.log(2 * math.pi)) + torch.log(weights).reshape(-1)[None]
    log_joint = (log_like.reshape(len(x), c_count, k_count) + log_prior[:, :, None]).reshape(len(x), -1)
    return torch.softmax(log_joint, dim=1).reshape(len(x), c_count, k_count)


REFINE_MODES = ("intensity", "none")
#: `segment` refines grey/white/CSF together with 2 Gaussians per class (chosen on the dev benchmark,
#: benchmarks/personalized/README.md, "Real heads and the intensity refinement"). The prior power and the start are
#: the model's (`PersonalizedConfig.refine_prior_power`, `refine_init`); PRIOR_POWER and INIT, the setting of every
#: model up to personalized-v8, are the defaults for callers without a model.
PRIOR_POWER = 0.3
COMPONENTS = 2
INIT = "both"


def check_refine_mode(mode: str) -> None:
    """UserInputError unless `mode` is one of REFINE_MODES (checked before the network runs)."""
    from multimodalgen.errors import UserInputError

    if mode not in REFINE_MODES:
        raise UserInputError(f"unknown refinement {mode!r}", expected=" or ".join(REFINE_MODES), got=str(mode),
                             fix="pass --refine intensity (default) or --refine none")


def refine_tissues(probabilities: torch.Tensor, images: torch.Tensor, modalities: list[str],
                   label_names: tuple[str, ...], mode: str = "intensity", prior_power: float = PRIOR_POWER,
                   init: str = INIT) -> tuple[torch.Tensor, str]:
    """`segment`'s refinement step: the brain tissue classes of `label_names` refined together (shipped setting).

    Args:
        probabilities: `(C, I, J, K)` network softmax on the images' grid; images: `(M, I, J, K)` the present
            modalities (names `modalities`, normalised); label_names: the C class names; prior_power: exponent on
            the network's probabilities and init: where the mixture starts (the model's
            `PersonalizedConfig.refine_prior_power` and `refine_init`).
    Returns:
        (probabilities `(C, I, J, K)` on the input's device, a one-line description for the metadata).
    """
    from multimodalgen.personalized.tissue_contrast import brightness_matrix
    from multimodalgen.terminology import BRAIN_TISSUES, canonical_name

    check_refine_mode(mode)
    if mode == "none":
        return probabilities, "none"
    tissues = {d.name for d in BRAIN_TISSUES}
    group = tuple(i for i, n in enumerate(label_names) if canonical_name(n) in tissues)
    if len(group) < 2:
        return probabilities, "none (the labels are not brain tissues)"
    brightness = brightness_matrix(list(modalities), [label_names[i] for i in group])
    refined = refine_with_intensities(probabilities.detach().cpu(), images.detach().cpu(), classes=group,
                                      prior_power=prior_power, components=COMPONENTS, init=init,
                                      brightness=brightness)
    return refined.to(probabilities.device), (f"intensity (EM over {', '.join(label_names[i] for i in group)}; "
                                             f"prior power {prior_power:g}, {COMPONENTS} Gaussians per class, {init} start)")
