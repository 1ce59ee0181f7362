"""Drawing: heatmaps in pure numpy, matplotlib figures, notebook HTML. No model knowledge."""
