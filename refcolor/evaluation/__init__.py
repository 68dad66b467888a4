"""Model evaluations that reproduce the papers' measurements (refcolor.evaluation.guide_psnr: the
GuidingPainter PSNR-vs-hints curve of Cho et al. 2022)."""
from refcolor.evaluation.guide_psnr import HintCurve, evaluate_guide_psnr, hinted_outputs, write_report

__all__ = ["HintCurve", "evaluate_guide_psnr", "hinted_outputs", "write_report"]
