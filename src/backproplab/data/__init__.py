"""Data sets, preprocessing and minibatches.

* :func:`load_dataset` reads CIFAR-10 (official python batches, its archive, or an image folder
  of PNG / JPEG, possibly in a ``.tar.gz``), Fashion-MNIST (IDX files) or scikit-learn's 8x8
  digits into a :class:`Dataset` of uint8 NHWC images and int64 labels. Decoded images are cached
  in :func:`default_cache_dir`.
* :func:`to_float` and :class:`Normalizer` turn images into model inputs (NHWC, NCHW or flat).
* :class:`BatchIterator` and :func:`iterate_minibatches` give index arrays for training and
  evaluation.
* :func:`check_finite` and :func:`check_labels` validate arrays.

Every problem with the data raises :class:`~backproplab.errors.DataError` (or
:class:`~backproplab.errors.NonFiniteError` for NaN / inf) with a one-line message.
"""

from backproplab.data.batches import BatchIterator, iterate_minibatches
from backproplab.data.cache import default_cache_dir
from backproplab.data.dataset import Dataset
from backproplab.data.download import download_url, md5_file
from backproplab.data.extract import extract_tar_atomic
from backproplab.data.load import DATASETS, load_dataset
from backproplab.data.preprocess import Normalizer, to_float
from backproplab.data.validate import check_finite, check_labels

__all__ = [
    "DATASETS",
    "BatchIterator",
    "Dataset",
    "Normalizer",
    "check_finite",
    "check_labels",
    "default_cache_dir",
    "download_url",
    "extract_tar_atomic",
    "iterate_minibatches",
    "load_dataset",
    "md5_file",
    "to_float",
]
