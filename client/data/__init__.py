"""Site datasets for federated GAN training: embedded phantoms, image folders, DICOM, MedMNIST .npz."""

from client.data.augment import augment_batch
from client.data.dicom_options import OPTION_KEYS as DICOM_OPTION_KEYS
from client.data.dicom_options import DicomOptions, dicom_options
from client.data.dicom_reader import WINDOW_PRESETS
from client.data.dicom_source import is_dicom_source, load_dicom
from client.data.partition import partition_indices
from client.data.phantoms import CLASS_NAMES
from client.data.site_data import DataError, SiteData
from client.data.sources import SUPPORTED_IMAGE_SIZES, load_site_dataset

__all__ = [
    "CLASS_NAMES",
    "DICOM_OPTION_KEYS",
    "DataError",
    "DicomOptions",
    "SUPPORTED_IMAGE_SIZES",
    "SiteData",
    "WINDOW_PRESETS",
    "augment_batch",
    "dicom_options",
    "is_dicom_source",
    "load_dicom",
    "load_site_dataset",
    "partition_indices",
]
