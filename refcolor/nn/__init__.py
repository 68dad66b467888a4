"""torch.nn modules built on refcolor's fused ops."""
from refcolor.nn.hint_generator import HintGenerator, num_hints_pmf

__all__ = ["HintGenerator", "num_hints_pmf"]
