"""The model zoo: architectures, their registry and factory, naming, and loading trained weights.

Importing this package registers every architecture. ``_registry`` is the leaf (builders);
``_factory.create_model`` sits above it and ``_pretrained`` (shipped weights), ``_hub``
(safetensors folders) and ``_load`` (``load_model``: any saved model) beside it.
"""
from ._factory import create_model
from ._features import FeatureInfo
from ._hub import load_weights, save_pretrained
from ._load import from_pretrained, initialize_from, load_model, source_architecture
from ._pretrained import list_pretrained, pretrained_cfg
from ._registry import list_models, model_arguments, register_model
from .base import ImageClassifier, param_groups_weight_decay
from .mgiad import MGiaD, SiC, channel_levels
from .mgic import MGIC
from .mgnet import MgNet
from .resnet import ResNet, resnet18, resnet20

__all__ = ["create_model", "list_models", "list_pretrained", "model_arguments", "register_model",
           "load_model", "from_pretrained", "initialize_from", "source_architecture",
           "save_pretrained", "load_weights", "pretrained_cfg",
           "FeatureInfo", "ImageClassifier", "param_groups_weight_decay",
           "MGiaD", "SiC", "channel_levels", "MGIC", "MgNet", "ResNet", "resnet18", "resnet20"]
