"""The parts of :mod:`explainer.metrics.findings`: result types, detection of candidates,
counterfactual effects, and the words that report them."""
