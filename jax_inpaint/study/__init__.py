"""Robustness analysis: metrics, classical baselines, the evaluation and its report."""
