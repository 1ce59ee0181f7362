"""Integrated-gradients engine: quadrature rules, adaptive panels and their refinement."""
