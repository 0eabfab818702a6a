"""The dataset readers, one module per dataset (RAF-DB, SFEW, AffectNet, FER2013/FERPlus, ExpW, a
folder of class folders, a CSV manifest) plus the built-in synthetic faces and digits. Each returns
image paths or arrays with canonical labels.

The table below registers every dataset by name with its description; a reader's module (and
numpy) is imported only when the dataset is read, so listing the names and validating a config
stay light. The readers themselves know nothing of the registry.
"""

from lionfer.errors import ConfigError
from lionfer.registry import DATASETS

# name, reader ("module:function" in this package), description, whether it reads data.root
DATASET_TABLE = (
    (
        "synthetic",
        "synthetic:load",
        "procedural faces, 7 expressions, ambiguous labels; built in",
        False,
    ),
    (
        "digits",
        "digits:load",
        "sklearn's bundled 8x8 handwritten digits, 10 classes; built in",
        False,
    ),
    (
        "folder",
        "folder:load",
        "your own images: ROOT/<class>/*.jpg or ROOT/{train,test}/<class>/",
        True,
    ),
    (
        "manifest",
        "manifest:load",
        "images listed in a CSV: path,label[,split,true_label,x,y,w,h]",
        True,
    ),
    (
        "rafdb",
        "rafdb:load",
        "RAF-DB basic: 7 classes, 12,271 train / 3,068 test (official or Ada-CM lists)",
        True,
    ),
    ("sfew", "sfew:load", "SFEW 2.0: 7 classes, Train 958 / Val 436 (Val is the test set)", True),
    (
        "affectnet",
        "affectnet:load",
        "AffectNet: CSV release (face boxes) or pre-cropped .npy release; val set = test",
        True,
    ),
    (
        "fer2013",
        "fer2013:load_fer2013",
        "FER2013: 48x48 grayscale faces from fer2013.csv; PrivateTest = test",
        True,
    ),
    (
        "ferplus",
        "fer2013:load_ferplus",
        "FERPlus: FER2013 images relabelled by 10 annotators (majority vote); 7 or 8 classes",
        True,
    ),
    (
        "expw",
        "expw:load",
        "ExpW: in-the-wild faces (boxes in label.lst); seeded 20% held out",
        True,
    ),
)
for _name, _target, _description, _reads_files in DATASET_TABLE:
    DATASETS.add(_name, f"{__name__}.{_target}", _description)
FILE_DATASETS = frozenset(name for name, _, _, reads_files in DATASET_TABLE if reads_files)

# The data keys that only some datasets read (the others leave them unread): key -> those datasets.
DATASET_KEYS = {
    "root": FILE_DATASETS,
    "variant": frozenset({"affectnet", "rafdb"}),
    "class_map": frozenset({"folder", "manifest"}),
    "label_file": frozenset({"affectnet", "expw", "fer2013", "ferplus", "manifest", "rafdb"}),
    "unlabeled_root": frozenset({"folder"}),
    "allow_outside_root": frozenset({"manifest"}),
    "num_classes": frozenset(name for name, *_ in DATASET_TABLE) - {"digits"},
    "data_seed": frozenset({"digits", "expw", "folder", "manifest", "synthetic"}),
    "num_train": frozenset({"synthetic"}),
    "num_test": frozenset({"synthetic"}),
    "ambiguity": frozenset({"synthetic"}),
    "annotator": frozenset({"synthetic"}),
}


def check_root(data) -> None:
    """A dataset that reads files (FILE_DATASETS) with an empty data.root (data: a config's data
    section): refused from the config alone, before anything is read (by
    lionfer.data.pipeline.read_dataset, and by lionfer.unread.check_inputs for each run a sweep
    would start)."""
    if data.dataset in FILE_DATASETS and not data.root:
        folder = (
            "the face cache `lionfer prepare` made (e.g. data.root=cache/sfew), or a manifest "
            "CSV of your own, or the folder holding it as manifest.csv"
            if data.dataset == "manifest"
            else "the dataset's folder (e.g. data.root=/data/faces)"
        )
        raise ConfigError(
            f"data.root is empty, but the {data.dataset} dataset reads files: set data.root to "
            f"{folder}; `lionfer list datasets` shows the built-in ones that need none"
        )
