"""softkm: k-means clustering with hard, soft and Gumbel-softmax assignment modes."""

__version__ = "0.1.0"
