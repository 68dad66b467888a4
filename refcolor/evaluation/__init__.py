"""Model evaluations that reproduce the papers' measurements (refcolor.evaluation.guide_psnr: the
GuidingPainter PSNR-vs-hints curve of Cho et al. 2022; refcolor.evaluation.scft_eval: SCFT's
augmented-self protocol of Lee et al. 2020, with baselines)."""

from refcolor.evaluation.guide_psnr import HintCurve, evaluate_guide_psnr, hinted_outputs, write_report
from refcolor.evaluation.scft_eval import SCFTEvaluation, evaluate_scft

__all__ = ["HintCurve", "SCFTEvaluation", "evaluate_guide_psnr", "evaluate_scft", "hinted_outputs", "write_report"]
