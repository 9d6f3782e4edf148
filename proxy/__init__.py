"""hwnas.proxy: proxy data sets and the proxy trainer that search and NetAdapt share.

``load_dataset`` reads Fashion-MNIST (Debian's package), IDX files or an
ImageFolder tree into tensors at the proxy resolution; ``train.train`` /
``evaluate`` / ``recalibrate_bn`` are the one training recipe.
"""

import hwnas.common  # noqa: F401 (sets OMP_WAIT_POLICY before torch loads)

from .data import DataError, Dataset, load_dataset, load_test_split  # noqa: E402
from .train import NonFiniteLoss, TrainConfig, TrainResult, evaluate, recalibrate_bn  # noqa: E402

__all__ = [
    "DataError", "Dataset", "NonFiniteLoss", "TrainConfig", "TrainResult", "evaluate",
    "load_dataset", "load_test_split", "recalibrate_bn",
]
