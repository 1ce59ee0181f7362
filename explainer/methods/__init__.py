"""Attribution methods. Importing this package registers them all."""

from . import integrated_gradients, kernel_shap, saliency, shap  # noqa: F401  (registration side effect)
