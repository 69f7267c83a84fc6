"""Site datasets for federated GAN training: embedded phantoms, image folders, MedMNIST .npz."""

from client.data.augment import augment_batch
from client.data.partition import partition_indices
from client.data.phantoms import CLASS_NAMES
from client.data.site_data import DataError, SiteData
from client.data.sources import SUPPORTED_IMAGE_SIZES, load_site_dataset

__all__ = [
    "CLASS_NAMES",
    "DataError",
    "SUPPORTED_IMAGE_SIZES",
    "SiteData",
    "augment_batch",
    "load_site_dataset",
    "partition_indices",
]
