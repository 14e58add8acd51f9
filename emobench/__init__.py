"""emobench: how big, how costly, how fast, and how far a mobile network sees.

Models come from the zoo (``zoo/*.toml``)::

    import emobench
    emobench.list_models("emo_*")
    model = emobench.create_model("emo_5m", checkpoint="net.pth")
    fast = emobench.fuse(model)          # channels-last inference form, same outputs
    official = emobench.formulate(model, "official")   # any formulation (emobench.nn.forms), same outputs
"""

from .checkpoint import load_checkpoint
from .errors import EmobenchError
from .models import create_model
from .nn import fuse
from .nn.forms import formulate
from .zoo import get_entry, list_models

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "load_checkpoint", "fuse", "formulate", "get_entry", "EmobenchError", "__version__"]
