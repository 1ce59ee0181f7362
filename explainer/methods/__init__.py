"""Attribution methods. Importing this package registers them all."""

from . import (  # noqa: F401  (registration side effect)
    attention_rollout,
    cam,
    gradient_shap,
    integrated_gradients,
    kernel_shap,
    layer_attribution,
    saliency,
)
