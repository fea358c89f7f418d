"""NumPy 1.x/2.x compatibility: the few helpers whose home moved in NumPy 2.0.

fastxent supports NumPy >= 1.26 (see pyproject.toml). Everything that differs between 1.26 and 2.x
is imported from here, so that a grep for ``_compat`` finds every place that depends on the version.
"""

from numpy.exceptions import AxisError  # NumPy >= 1.25

try:  # NumPy >= 2.0
    from numpy.lib.array_utils import byte_bounds, normalize_axis_index, normalize_axis_tuple
except ImportError:  # NumPy 1.26
    from numpy import byte_bounds
    from numpy.core.multiarray import normalize_axis_index
    from numpy.core.numeric import normalize_axis_tuple

__all__ = ["AxisError", "byte_bounds", "normalize_axis_index", "normalize_axis_tuple"]
