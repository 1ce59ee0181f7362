"""Our DeepLIFT engine (rescale rule at the level of torch functions): see engine.py."""
