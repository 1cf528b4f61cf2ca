"""labutils: the small helper package of Open Models Lab (开源模型实验课).

One module per concern: ``device``, ``seed``, ``plot``, ``data``, ``models``,
``train``, ``check`` (exercises) and ``student`` (the student edition).
Nothing here downloads anything.
"""

from labutils.check import check
from labutils.device import device_report, get_device
from labutils.seed import seed_everything

__version__ = "0.1.0"
__all__ = ["check", "device_report", "get_device", "seed_everything"]
