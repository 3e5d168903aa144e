"""Signal and residual spaces: the SVD of a layer, what each layer keeps and throws away, the
exact operators of convolutions, and :func:`analyze` for any torch model.

``layer`` (one weight matrix) -> ``residuals`` (projections of images) -> ``operators``
(convolutions as matrix-free operators) -> ``lanczos`` (certified extreme eigenvalues of a Gram
map), ``conv_fft`` (the circular spectrum by FFT) -> ``conv_spectra`` (convolutions at real
input sizes, labelled values) -> ``conv_table`` (every convolution of a
model) -> ``analysis`` (every layer of a model).
"""

from .analysis import analyze, attention_heads, head_matrices, layernorm_reach
from .conv_spectra import circular_spectrum, kernel_norm, layer_spectrum
from .conv_table import conv_table
from .layer import (
    LayerSpaces,
    condition_number,
    conv_as_matrix,
    layer_spaces,
    rank_tolerance,
    singular_values,
)
from .operators import ConvOperator, Spectrum, spectrum, spectrum_and_energy
from .residuals import (
    class_residuals,
    energy_kept,
    energy_kept_per_layer,
    null_space_residual,
    row_space_projection,
)

__all__ = [
    "ConvOperator",
    "LayerSpaces",
    "Spectrum",
    "analyze",
    "attention_heads",
    "circular_spectrum",
    "class_residuals",
    "condition_number",
    "conv_table",
    "conv_as_matrix",
    "energy_kept",
    "energy_kept_per_layer",
    "head_matrices",
    "kernel_norm",
    "layer_spaces",
    "layer_spectrum",
    "layernorm_reach",
    "null_space_residual",
    "rank_tolerance",
    "row_space_projection",
    "singular_values",
    "spectrum",
    "spectrum_and_energy",
]
