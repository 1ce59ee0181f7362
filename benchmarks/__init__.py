"""Side-by-side benchmarks against captum and shap (run with `make bench`)."""
