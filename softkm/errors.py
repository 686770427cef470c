"""Exceptions and warnings that softkm raises for its users.

Every failure caused by the input, the options or a model file is a ``SoftkmError``.
The command-line interface prints its message as one line on stderr and exits with
code 1. Degenerate but survivable situations are warnings of class ``SoftkmWarning``.
"""


class SoftkmError(Exception):
    """A user-facing failure: the message names the value, the rule and the fix."""


# Invalid input and options are also ValueErrors, as in NumPy and scikit-learn, so code
# that catches ValueError around a fit catches them too.
class InputError(SoftkmError, ValueError):
    """The input table cannot be read or contains invalid values."""


class OptionError(SoftkmError, ValueError):
    """An option value is invalid for the data it is applied to."""


class ModelError(SoftkmError):
    """A model file is missing, damaged or of an unsupported format version."""


class NotFittedError(SoftkmError, ValueError, AttributeError):
    """An estimator was used before ``fit``; scikit-learn's exception of that name is
    also both a ValueError and an AttributeError.
    """


class OutputError(SoftkmError):
    """An output file cannot be written."""


class EngineError(SoftkmError):
    """The compute engine failed: a Dask cluster cannot be reached or lost its workers."""


class SoftkmWarning(UserWarning):
    """A degenerate but survivable situation during a fit."""


class ConvergenceWarning(SoftkmWarning):
    """The fit stopped at max_iter before meeting its tolerance."""


class EmptyClusterWarning(SoftkmWarning):
    """A cluster lost all its points and was relocated."""


class DegenerateDataWarning(SoftkmWarning):
    """The data has fewer distinct points than clusters, or another degenerate shape."""


class InputWarning(SoftkmWarning):
    """The input table looks suspicious but was read."""
