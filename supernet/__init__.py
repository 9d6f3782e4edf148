"""hwnas.supernet: a weight-sharing supernet of a search space, as an accuracy estimator.

One set of weights holds every architecture of a space (``mobilenetv3``,
``mnasnet``) as a path: elastic kernel, expansion, filters and depth by slicing,
op types with their own weights, SE, activation and skip (see ``model.py``).
Trained once per settings and cached under ``$HWNAS_HOME/supernets/<id>/``.

>>> from hwnas.supernet import find_or_train
>>> sn = find_or_train("mobilenetv3", "fashion-mnist", proxy_resolution=32, seed=0)  # doctest: +SKIP
>>> sn.estimate(arch), sn.extract(arch)  # doctest: +SKIP

What the search calls: :func:`find_or_train` (or :func:`find_supernet` +
:func:`load_supernet`), then :meth:`Supernet.estimate` per candidate,
:meth:`Supernet.extract` for the winner, and :func:`invisible_decisions` before
the run. docs/supernet.md has the recipe, the cache and the measured fidelity.
"""

import hwnas.common  # noqa: F401  (OMP_WAIT_POLICY before torch loads)
from hwnas.space.visibility import invisible_decisions

from .api import Supernet, find_or_train, find_supernet, load_supernet
from .model import SuperNet
from .store import list_supernets, supernet_id, supernets_root, train_supernet
from .train import RECIPES, SupernetConfig

__all__ = [
    "RECIPES", "SuperNet", "Supernet", "SupernetConfig", "find_or_train", "find_supernet",
    "invisible_decisions", "list_supernets", "load_supernet", "supernet_id", "supernets_root",
    "train_supernet",
]
