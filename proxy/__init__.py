"""hwnas.proxy: proxy data sets and the proxy trainer that search and NetAdapt share.

``load_dataset`` reads Fashion-MNIST (Debian's package), IDX files or an
ImageFolder tree (held in memory when small, else streamed through a
DataLoader with workers); ``train.train`` / ``evaluate`` / ``recalibrate_bn``
are the one training recipe and accept both. ``save_split_manifest`` records
the train/held-out split in a run folder.
"""

import hwnas.common  # noqa: F401 (sets OMP_WAIT_POLICY before torch loads)

from .data import DataError, Dataset, load_dataset, load_test_split  # noqa: E402
from .split import load_split_manifest, save_split_manifest  # noqa: E402
from .stream import ImageView, StreamingDataset  # noqa: E402
from .train import (  # noqa: E402
    NonFiniteLoss,
    TrainConfig,
    TrainResult,
    evaluate,
    recalibrate_bn,
    resolve_device,
)

__all__ = [
    "DataError", "Dataset", "ImageView", "NonFiniteLoss", "StreamingDataset", "TrainConfig",
    "TrainResult", "evaluate", "load_dataset", "load_split_manifest", "load_test_split",
    "recalibrate_bn", "resolve_device", "save_split_manifest",
]
