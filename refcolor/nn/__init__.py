"""torch.nn modules built on refcolor's fused ops."""
from refcolor.nn.hint_generator import HintGenerator, num_hints_pmf
from refcolor.nn.random_tps import RandomTPS

__all__ = ["HintGenerator", "RandomTPS", "num_hints_pmf"]
