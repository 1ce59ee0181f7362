"""Attribution methods. Importing this package registers them all."""

from . import cam, gradient_shap, integrated_gradients, kernel_shap, saliency  # noqa: F401  (registration side effect)
