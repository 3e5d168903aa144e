"""nnspaces: signal spaces, residual spaces and inverse maps of neural networks.

A reproduction of R. Pattichis and M. S. Pattichis, "Understanding Neural Network Systems for
Image Analysis using Vector Spaces and Inverse Maps", IEEE SSIAI 2024 (arXiv 2402.00261).
Modules, in the direction data flows: ``data`` -> ``models`` / ``training`` -> ``spaces`` ->
``inversion`` -> ``plots`` / ``widgets``; ``run`` executes the notebooks.
"""

__version__ = "0.1.0"
