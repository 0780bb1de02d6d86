"""The model zoo; importing this package registers every architecture."""
from .mgiad import MGiaD, SiC, channel_levels
from .mgic import MGIC
from .mgnet import MgNet
from .resnet import ResNet, resnet18, resnet20

__all__ = ["MGiaD", "SiC", "channel_levels", "MGIC", "MgNet", "ResNet", "resnet18", "resnet20"]
