"""igpo: Inpainting-Guided Policy Optimization for masked diffusion language models.

The core library. Pure functions and small classes over tensors and tables; it never imports zenml
(``tests/test_layout.py`` enforces it). See SPEC.md section 2 for the building blocks.
"""

__version__ = "0.1.0"
