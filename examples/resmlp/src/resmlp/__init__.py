"""A residual MLP for tabular classification: an example of a model package of one's own."""

from resmlp.model import ResidualMLP, build

__all__ = ["ResidualMLP", "build"]
__version__ = "0.3.0"
