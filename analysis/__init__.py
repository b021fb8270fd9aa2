"""fastinit's analysis layer: theory, fits, figures and reports (reads results, never runs kernels)."""
