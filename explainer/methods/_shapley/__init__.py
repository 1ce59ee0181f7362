"""Shapley engine: coalition planning, constrained regression, the GP estimator and its designs."""
