from __future__ import annotations

import pytest

from tfopt.errors import TfoptError
from tfopt.registry import Registry


def test_register_get_and_errors() -> None:
    reg: Registry = Registry("transform")
    reg.register("prune")(1)
    reg.register("cluster")(2)
    assert reg.get("prune") == 1 and list(reg) == ["cluster", "prune"] and "prune" in reg
    with pytest.raises(ValueError, match="Duplicate"):
        reg.register("prune")(3)
    with pytest.raises(TfoptError) as e:
        reg.get("prun")
    assert (
        str(e.value)
        == "Unknown transform 'prun'. Did you mean 'prune'? Known: cluster, prune. Received: transform='prun'"
    )
