"""Every private torchvision name the project uses, in one place (torchvision is pinned in
pyproject.toml; tests/test_compat.py and tests/model/test_roi_align.py fail when an upgrade moves or
changes one).

trainables/model/roi_align.py builds a ``MultiScaleRoIAlign`` that pools like torchvision's own and
needs the pooler's helpers for it: RoIs as one (K, 5) tensor, the features of the pooled
levels, and the levels' scales inferred from the feature and image sizes.
"""

from __future__ import annotations

from torchvision.ops.poolers import _convert_to_roi_format as convert_to_roi_format
from torchvision.ops.poolers import _filter_input as filter_input
from torchvision.ops.poolers import _setup_scales as setup_scales

__all__ = ["convert_to_roi_format", "filter_input", "setup_scales"]
