"""`ldseg reproduce`: the paper's Sections V–VI side by side.

Trains LDSeg and every comparison model on the same data with the same input
pipeline (or reuses models trained earlier in the same output folder), runs the
experiments and writes `report.md`, CSV tables and PNG figures:

- Tables I-III (`accuracy.csv`): DSC / IoU (and HD95 / ASSD in pixels of the
  model's input grid) per class, mean ± sd over test cases, for LDSeg, the
  two-stage latent diffusion (LSegDiff-style), the pixel-space diffusion
  (MedSegDiff-style, simplified) and the ResUNet.
- Table IV (`speed.csv`): seconds per image with T (the paper: 1000) and with 2
  DDIM steps, and the speed-up.
- Fig. 5 (`steps.csv`, `fig5_steps.png`): DSC vs number of DDIM steps.
- Fig. 6(b) (`sizes.csv`, `fig6b_sizes.png`): seconds per image and peak memory
  vs image size for LDSeg, two-stage and pixel diffusion (untrained weights: the
  cost of sampling does not depend on them).
- Fig. 8 (`noise.csv`, `fig8_noise.png`): DSC vs Gaussian noise added to the
  normalized test images, LDSeg vs ResUNet.
- Table V (`ablation.csv`): label encoder / image encoder / both replaced by
  parameter-free down-sampling.
- Fig. 10 (`uncertainty.csv`, `fig10_uncertainty.png`,
  `fig10_error_vs_sd.png`): mean and SD maps from N samples, error rate per SD
  decile and the AUROC of the SD as a detector of errors.

Profiles: `tiny` (synthetic data, minutes, what the tests run), `cpu` (a
benchmark on DRIVE / the GlaS and knee samples; target: under 1 h on 2 CPU
cores), `paper` (the paper's sizes, T = 1000, long GPU training).

Modules: `profiles` (models compared, budgets, configs), `models` (training and
caching), `measure`, `figures`, `report` (rendering), `context` (what an
experiment reads), `suite` (the experiments and their `REGISTRY`), `runner`
(`run`). A new experiment is a function `fn(ctx) -> Outcome` added to `REGISTRY`.
"""

from ldseg_tf.experiments.profiles import MODELS, PROFILES, Profile, base_config, model_config
from ldseg_tf.experiments.runner import make_datasets, run
from ldseg_tf.experiments.suite import EXPERIMENTS, REGISTRY, Experiment, Outcome

__all__ = ["EXPERIMENTS", "MODELS", "PROFILES", "REGISTRY", "Experiment", "Outcome", "Profile",
           "base_config", "make_datasets", "model_config", "run"]
