"""torch.nn modules built on refcolor's fused ops."""

from refcolor.nn.hint_generator import HintGenerator, num_hints_pmf
from refcolor.nn.random_tps import RandomTPS
from refcolor.nn.scft import SCFT, SCFTOutput

__all__ = ["SCFT", "HintGenerator", "RandomTPS", "SCFTOutput", "num_hints_pmf"]
