"""Keras-style layers on PyTorch, channels-first: (N, C, L), (N, C, H, W); sequences (N, T, F)."""

from kiln.layers import _activations as activations
from kiln.layers import _initializers as initializers
from kiln.layers._augment import RandomCrop, RandomFlip, RandomTranslation
from kiln.layers._base import Layer
from kiln.layers._conv import Conv1D, Conv2D, Conv2DTranspose
from kiln.layers._core import Activation, Dense, Dropout, Flatten, Reshape
from kiln.layers._embedding import Embedding
from kiln.layers._lambda import Lambda
from kiln.layers._merge import Add, Concatenate
from kiln.layers._normalization import BatchNorm, LayerNorm, Normalization
from kiln.layers._pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from kiln.layers._recurrent import GRU, LSTM
from kiln.layers._symbolic import Input, SymbolicTensor

__all__ = [
    "GRU",
    "LSTM",
    "Activation",
    "Add",
    "AvgPool2D",
    "BatchNorm",
    "Concatenate",
    "Conv1D",
    "Conv2D",
    "Conv2DTranspose",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAvgPool2D",
    "Input",
    "Lambda",
    "Layer",
    "LayerNorm",
    "MaxPool2D",
    "Normalization",
    "RandomCrop",
    "RandomFlip",
    "RandomTranslation",
    "Reshape",
    "SymbolicTensor",
    "activations",
    "initializers",
]
